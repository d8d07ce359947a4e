//! The desync classifier over arbitrary client bytes (`desync::head::classify`,
//! `desync::tracker::Tracker`), split into reads at arbitrary points: never a panic; the
//! decisions and the bytes passed do not depend on the split; and every head it passes,
//! httparse reads to the same end (a head hyper would refuse never gets through, so hyper never
//! answers one itself). The same properties as `tests/properties/desync.rs`, over any bytes.
#![no_main]

use cellgate::desync::head::{Limits, Scan, classify};
use cellgate::desync::Mode;
use cellgate::desync::tracker::{self, Followed};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_head: 8192,
    max_headers: 100,
    max_uri: 8192,
};

/// Follows `data` in reads of the given sizes (cycled, at least one byte), as the guard
/// buffers them.
fn follow(data: &[u8], sizes: &[u8]) -> Followed {
    let mut rest = data;
    let mut reads = Vec::new();
    for n in sizes.iter().map(|&s| usize::from(s).max(1)).cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, after) = rest.split_at(n.min(rest.len()));
        reads.push(read);
        rest = after;
    }
    tracker::follow(Mode::Defensive, LIMITS, reads)
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, sizes) = input;
    assert_eq!(follow(&data, &[u8::MAX]), follow(&data, &sizes));
    if let Scan::Complete(h) = classify(&data, &LIMITS) {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        assert_eq!(
            req.parse(&data),
            Ok(httparse::Status::Complete(h.len)),
            "{:?}",
            String::from_utf8_lossy(&data)
        );
    }
});
