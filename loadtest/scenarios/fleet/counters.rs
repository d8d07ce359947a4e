//! What the fleet scenario reads from the nodes and the machine: each node's own counters at
//! the end (refusals, the fallback, Redis errors, round trips and keys per flush from
//! `cellgate_fleet_*`), and CPU per phase split into the proxies, this driver, Redis and the rest.

use std::net::SocketAddr;

use crate::common::{HttpClient, Scrape};

/// A node's own counters at the end of the load.
pub struct NodeMetrics {
    /// `cellgate_ratelimit_rejections_total`, every series.
    pub rejections: f64,
    /// `cellgate_fleet_refused_total`, every tier.
    pub fleet_refused: f64,
    errors: Vec<(String, f64)>,
    fallback: f64,
    sync_count: f64,
    sync_sum: f64,
    /// (upper bound in seconds, cumulative count).
    sync_buckets: Vec<(f64, f64)>,
    keys_sum: f64,
    keys_count: f64,
}

impl NodeMetrics {
    pub async fn scrape(probe: &HttpClient, admin: SocketAddr) -> Result<Self, String> {
        let s = Scrape::get(probe, admin).await?;
        let mut errors: Vec<(String, f64)> = s
            .series("cellgate_fleet_redis_errors_total")
            .filter(|(_, v)| *v > 0.0)
            .map(|(l, v)| (l.get("kind").cloned().unwrap_or_default(), v))
            .collect();
        errors.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sync_buckets: Vec<(f64, f64)> = s
            .series("cellgate_fleet_sync_seconds_bucket")
            .map(|(l, v)| {
                let le = l
                    .get("le")
                    .map_or(f64::INFINITY, |x| x.parse().unwrap_or(f64::INFINITY));
                (le, v)
            })
            .collect();
        sync_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Self {
            rejections: s.sum("cellgate_ratelimit_rejections_total", "", ""),
            fleet_refused: s.sum("cellgate_fleet_refused_total", "", ""),
            errors,
            fallback: s.sum("cellgate_fleet_fallback_seconds_total", "", ""),
            sync_count: s.sum("cellgate_fleet_sync_seconds_count", "", ""),
            sync_sum: s.sum("cellgate_fleet_sync_seconds_sum", "", ""),
            sync_buckets,
            keys_sum: s.sum("cellgate_fleet_flush_keys_sum", "", ""),
            keys_count: s.sum("cellgate_fleet_flush_keys_count", "", ""),
        })
    }

    /// Fallback, errors, round trips and keys per flush, for a summary line.
    pub fn sync_line(&self) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "fallback {:.2} s; Redis errors: {errors}; round trips {:.0} (mean {:.3} ms, p50 {}, \
             p99 {}); keys per flush {:.2}",
            self.fallback,
            self.sync_count.abs(),
            self.sync_sum / self.sync_count.max(1.0) * 1e3,
            self.sync_quantile(0.5),
            self.sync_quantile(0.99),
            self.keys_sum / self.keys_count.max(1.0)
        )
    }

    pub fn fallback(&self) -> f64 {
        self.fallback
    }

    pub fn keys(&self) -> f64 {
        self.keys_sum.abs()
    }

    /// The bucket bound under which share `q` of the round trips fell.
    fn sync_quantile(&self, q: f64) -> String {
        let want = q * self.sync_count;
        self.sync_buckets
            .iter()
            .find(|(_, c)| *c >= want)
            .map_or("?".to_owned(), |(le, _)| {
                if le.is_finite() {
                    format!("<= {} ms", le * 1e3)
                } else {
                    "> 10 s".to_owned()
                }
            })
    }
}

/// CPU over a phase, in % of one core.
pub struct PhaseCpu {
    /// Nodes 1-3.
    pub proxies: Vec<f64>,
    pub driver: f64,
    pub redis: f64,
    /// The rest of the machine (node-4 in the last phase).
    pub other: f64,
}

impl std::fmt::Display for PhaseCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cpu % of a core: proxies {:.1} ({}), driver+cells {:.1}, redis-server {:.1}, other {:.1}",
            self.proxies.iter().sum::<f64>(),
            self.proxies
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join("/"),
            self.driver,
            self.redis,
            self.other
        )
    }
}
