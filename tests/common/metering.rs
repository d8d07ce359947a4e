//! Shared helpers for the usage metering tests (`tests/metering.rs`, `tests/metering_kinesis.rs`):
//! a proxy with `[metering]` in front of the echo cells, traffic with refusals and bodies, what
//! the clients received and what the events say, summed per tenant the same way, and bounded
//! polls on the metering metrics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use cellgate::demo::spawn_cells;
use cellgate::metering::event::UsageEvent;
use http::{Request, StatusCode};
use http_body_util::Full;

use super::cells::{eventually, metric};
use super::limits::{Tenant, get, registry_text, tenant};
use super::{Harness, Reply, base_config, cell_list};

/// Two tiers: `standard` admits 3 and then refuses (one request per 10 s), `big` admits all;
/// POSTs are the route class `uploads` (which refuses nothing).
pub const LIMITS: &str = "[limits]\n[limits.tiers.standard]\nrate = 0.1\nburst = 3\n[limits.tiers.big]\nrate = 1000\nburst = 1000\n[[limits.routes]]\nname = \"uploads\"\nmethods = [\"POST\"]\nrate = 1000\nburst = 1000\n";

/// acme (standard, cell-1) and globex (big, cell-2).
pub fn two_tenants() -> [Tenant<'static>; 2] {
    [
        tenant("acme", "cell-1", Some("standard")),
        tenant("globex", "cell-2", Some("big")),
    ]
}

/// The proxy in front of three echo cells with `metering` (a whole `[metering]` section) and
/// [`LIMITS`].
pub async fn start_metered(metering: &str, tenants: &[Tenant<'_>]) -> Harness {
    let cells = spawn_cells(3, 2).await.unwrap();
    let text = registry_text(&cell_list(&cells), &[], tenants);
    let config = base_config(&format!("{LIMITS}\n{metering}"));
    Harness::start_raw(&config, &text, cells).await
}

/// Per tenant: requests, 2xx, 4xx, 429s, bytes in, bytes out; every key once.
pub fn totals(events: &[UsageEvent]) -> BTreeMap<String, [u64; 6]> {
    let keys: HashSet<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), events.len(), "every event has its own key");
    let mut t: BTreeMap<String, [u64; 6]> = BTreeMap::new();
    for e in events {
        assert!(e.window_start <= e.window_end);
        let s = t.entry(e.tenant.clone()).or_default();
        for (a, b) in s.iter_mut().zip([
            e.requests,
            e.status_2xx,
            e.status_4xx,
            e.rate_limited,
            e.bytes_in,
            e.bytes_out,
        ]) {
            *a += b;
        }
    }
    t
}

pub async fn post(h: &Harness, tenant: &str, body: &'static [u8]) -> Reply {
    let req = Request::post(format!("http://{}/upload", h.addr))
        .header("host", format!("{tenant}.app.test"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    h.send(req).await
}

/// What clients received, per tenant, as [`totals`] counts it.
#[derive(Default)]
pub struct Received(pub BTreeMap<String, [u64; 6]>);

impl Received {
    pub fn add(&mut self, tenant: &str, r: &Reply, sent: u64) {
        let s = self.0.entry(tenant.to_owned()).or_default();
        s[0] += 1;
        match r.status.as_u16() {
            200..=299 => s[1] += 1,
            429 => {
                s[2] += 1;
                s[3] += 1;
            }
            400..=499 => s[2] += 1,
            _ => {}
        }
        s[4] += sent;
        s[5] += r.body.len() as u64;
    }
}

/// `rounds` of: acme GET (3 admitted, then 429s), globex GET and POST (16 bytes), an unknown
/// tenant's GET (404, metered for nobody).
pub async fn traffic(h: &Harness, got: &mut Received, rounds: usize) {
    for _ in 0..rounds {
        let r = get(h, "acme", "/").await;
        got.add("acme", &r, 0);
        let r = get(h, "globex", "/a/b").await;
        assert_eq!(r.status, StatusCode::OK);
        got.add("globex", &r, 0);
        let r = post(h, "globex", b"0123456789abcdef").await;
        assert_eq!(r.status, StatusCode::OK);
        got.add("globex", &r, 16);
        let r = get(h, "nobody", "/").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

/// Waits (bounded) until the sum of `name`'s series with `labels` reaches `at_least`.
pub async fn wait_metric(h: &Harness, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let what = format!("{name}{labels:?} >= {at_least}");
    eventually(Duration::from_secs(15), &what, || async {
        metric(h, name, labels).await >= at_least
    })
    .await;
}

/// Waits (bounded) until some usage event had `result` (`sent`, `spooled`, `replayed`).
pub async fn wait_events(h: &Harness, result: &str) {
    wait_metric(
        h,
        "cellgate_metering_events_total",
        &[("result", result)],
        1.0,
    )
    .await;
}
