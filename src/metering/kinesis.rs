//! The Amazon Kinesis Data Streams sink: events as records of one stream, `PutRecords` in
//! batches, the tenant as the partition key (one tenant's events stay in order on one shard).
//!
//! Each record is one event as a JSON line (with its newline, so a Firehose delivery that
//! concatenates records writes JSON Lines). A request carries at most 500 records and 4 MiB
//! (the service's limits are 500 and 5 MiB). `PutRecords` is not all-or-nothing: the records
//! the service refused (throttled, an internal error) are sent again, alone, with a short
//! back-off, until all are in or `timeout` has passed; then the whole batch counts as failed
//! and the emitter spools it. A record that went in before the failure goes in again on
//! replay: its idempotency key lets a consumer drop the copy.
//!
//! The SDK is async; the emitter is a plain thread. The sink owns a small current-thread
//! runtime and blocks on it, so nothing of the proxy's runtimes ever waits for Kinesis.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::emit::Sink;
use super::event::UsageEvent;

/// Records per `PutRecords` request, at most (the service's limit).
const MAX_RECORDS: usize = 500;
/// Bytes per `PutRecords` request, at most (under the service's 5 MiB).
const MAX_BYTES: usize = 4 << 20;

/// How records of `sizes` bytes split into requests of at most `max_records` records and
/// `max_bytes` bytes (a record alone in its request whatever its size), in order: the
/// `(start, end)` of each.
fn requests(sizes: &[usize], max_records: usize, max_bytes: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let (mut end, mut bytes) = (start, 0);
        while end < sizes.len() && end - start < max_records {
            if end > start && bytes + sizes[end] > max_bytes {
                break;
            }
            bytes += sizes[end];
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// Sends events to a Kinesis data stream.
#[derive(Debug)]
pub struct KinesisSink {
    rt: tokio::runtime::Runtime,
    client: Client,
    stream: String,
    timeout: Duration,
}

impl KinesisSink {
    /// A sink for `stream`; builds its runtime and the SDK client (no request is made yet).
    pub fn new(
        stream: String,
        region: Option<&str>,
        endpoint_url: Option<&str>,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let config = rt.block_on(crate::aws::sdk_config(region, endpoint_url));
        Ok(Self {
            rt,
            client: Client::new(&config),
            stream,
            timeout,
        })
    }

    async fn put_all(&self, batch: &[UsageEvent]) -> Result<(), String> {
        let mut records = Vec::with_capacity(batch.len());
        for e in batch {
            let mut data = serde_json::to_vec(e).map_err(|e| format!("encoding: {e}"))?;
            data.push(b'\n');
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(data))
                .partition_key(e.tenant.clone())
                .build()
                .map_err(|e| e.to_string())?;
            records.push(entry);
        }
        let sizes: Vec<usize> = records
            .iter()
            .map(|r| r.data().as_ref().len() + r.partition_key().len())
            .collect();
        for (start, end) in requests(&sizes, MAX_RECORDS, MAX_BYTES) {
            self.put(records[start..end].to_vec()).await?;
        }
        Ok(())
    }

    /// One request's records, the refused ones sent again until none is left.
    async fn put(&self, mut records: Vec<PutRecordsRequestEntry>) -> Result<(), String> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let out = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(records.clone()))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "PutRecords to {}: {}",
                        self.stream,
                        aws_sdk_kinesis::error::DisplayErrorContext(&e)
                    )
                })?;
            if out.failed_record_count().unwrap_or(0) == 0 {
                return Ok(());
            }
            let mut reason = String::new();
            records = records
                .into_iter()
                .zip(out.records())
                .filter_map(|(rec, res)| {
                    res.error_code().map(|code| {
                        reason.clear();
                        reason.push_str(code);
                        rec
                    })
                })
                .collect();
            tracing::debug!(stream = %self.stream, refused = records.len(), reason = %reason, "PutRecords refused some records; sending them again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

impl Sink for KinesisSink {
    fn send(&mut self, batch: &[UsageEvent]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let timeout = self.timeout;
        self.rt
            .block_on(async { tokio::time::timeout(timeout, self.put_all(batch)).await })
            .map_err(|_| {
                format!(
                    "PutRecords to {}: no answer within {timeout:?}",
                    self.stream
                )
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_by_count_and_by_bytes_in_order() {
        assert_eq!(
            requests(&[400; 1200], MAX_RECORDS, MAX_BYTES),
            [(0, 500), (500, 1000), (1000, 1200)]
        );
        assert_eq!(requests(&[], MAX_RECORDS, MAX_BYTES), []);
        // By bytes, greedily: 3 | 3 + 2 | 2 | 9 (alone, over the limit).
        assert_eq!(
            requests(&[3, 3, 2, 2, 9], 500, 5),
            [(0, 1), (1, 3), (3, 4), (4, 5)],
            "a record over the limit still goes, alone"
        );
    }
}
