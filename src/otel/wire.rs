//! A protobuf writer for the few OTLP messages cellgate sends: fields written straight into
//! one buffer, each nested message's length filled in when it closes.
//!
//! Why not the generated `prost` types: building them costs a `String` per attribute key and
//! value, and `prost` computes a nested message's length at every level it is nested in; for a
//! span with its two dozen attributes that was about 27,000 instructions in the exporter, most
//! of a sampled request's cost. The generated types still decode what is written here, in the
//! unit tests and in the test receiver, so the two cannot drift apart.

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// An encoder over one growing buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    /// Where each open message's one-byte length placeholder is.
    open: Vec<usize>,
}

impl Writer {
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
            open: Vec::with_capacity(8),
        }
    }

    /// The encoded bytes (every message opened must be closed).
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        debug_assert!(self.open.is_empty(), "an unclosed message");
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// Bytes already encoded as a message's fields, as that message.
    pub fn message(&mut self, field: u32, encoded: &[u8]) {
        self.bytes(field, encoded);
    }

    /// A `uint32`/`uint64`/enum field (also an `int64` that is not negative).
    pub fn uint(&mut self, field: u32, v: u64) {
        self.tag(field, VARINT);
        self.varint(v);
    }

    /// An `int64` field (a negative value takes ten bytes, as protobuf says).
    pub fn int64(&mut self, field: u32, v: i64) {
        self.tag(field, VARINT);
        self.varint(v as u64);
    }

    pub fn boolean(&mut self, field: u32, v: bool) {
        self.uint(field, u64::from(v));
    }

    pub fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn fixed32(&mut self, field: u32, v: u32) {
        self.tag(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Opens a nested message; [`Writer::end`] closes it.
    pub fn begin(&mut self, field: u32) {
        self.tag(field, LEN);
        self.open.push(self.buf.len());
        self.buf.push(0);
    }

    /// Closes the innermost open message, writing its length (moving its bytes only when the
    /// length needs more than one byte).
    pub fn end(&mut self) {
        let Some(at) = self.open.pop() else {
            return;
        };
        let len = self.buf.len() - at - 1;
        if len < 0x80 {
            self.buf[at] = len as u8;
            return;
        }
        let mut prefix = [0u8; 10];
        let (mut n, mut v) = (0, len as u64);
        while v >= 0x80 {
            prefix[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        prefix[n] = v as u8;
        self.buf.splice(at..=at, prefix[..=n].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use prost::Message;

    use super::*;

    #[test]
    fn nested_messages_of_any_length_decode() {
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let value = "v".repeat(len);
            let mut w = Writer::default();
            w.string(1, "key");
            w.begin(2);
            w.string(1, &value);
            w.end();
            let kv = KeyValue::decode(w.finish().as_slice()).unwrap();
            assert_eq!(kv.key, "key");
            assert_eq!(
                kv.value,
                Some(AnyValue {
                    value: Some(any_value::Value::StringValue(value))
                })
            );
        }
        for (i, want) in [(-1i64, -1i64), (i64::MAX, i64::MAX), (300, 300)] {
            let mut w = Writer::default();
            w.int64(3, i);
            let v = AnyValue::decode(w.finish().as_slice()).unwrap();
            assert_eq!(v.value, Some(any_value::Value::IntValue(want)));
        }
    }
}
