//! A lock-free histogram for the request path.
//!
//! prometheus-client's own `Histogram` takes a lock on every observation; this one is a fixed
//! array of atomic bucket counters plus an atomic sum in nanoseconds, so recording a latency is
//! a few relaxed atomic adds. It encodes as an ordinary OpenMetrics histogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds: 100 µs to 10 s, roughly x2.5 apart.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
const BUCKET_NANOS: [u64; 14] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

#[derive(Debug, Default)]
struct Inner {
    /// One counter per bucket plus the `+Inf` overflow.
    counts: [AtomicU64; 15],
    sum_nanos: AtomicU64,
}

/// A latency histogram with fixed buckets; clones share the same counters.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<Inner>);

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idx = BUCKET_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKET_NANOS.len());
        self.0.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder makes them cumulative itself.
        let mut buckets = [(0.0, 0u64); 15];
        let mut total = 0;
        for (i, slot) in buckets.iter_mut().enumerate() {
            let n = self.0.counts[i].load(Ordering::Relaxed);
            total += n;
            *slot = (LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n);
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum in seconds needs no nanosecond precision"
        )]
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
