//! Usage metering end to end, over real sockets in front of the echo cells, with the JSON Lines
//! sink: every answer a client received counts exactly once for its tenant (refusals included,
//! an unknown tenant's 404 not at all), with the bytes the client sent and received; a window
//! that fills closes early and loses nothing; a sink that fails puts windows in the spool and
//! they are replayed, in order, once it works again; and a graceful restart hands a spool to
//! the next process, which replays it. Kinesis is in `tests/metering_kinesis.rs`.
//!
//! Counts are compared exactly, never "about": the events are summed per tenant after the
//! proxy stopped (its stop flushes the open window), and waits are bounded polls on metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use cellgate::metering::event::UsageEvent;
use common::Harness;
use common::limits::{Tenant, get, metrics, sum, tenant, within};
use common::metering::{
    Received, start_metered, totals, traffic, two_tenants, wait_events, wait_metric,
};

/// `[metering]` with a 1 s window, the spool and the file under `dir`.
fn metering(dir: &Path, extra: &str) -> String {
    format!(
        "[metering]\nwindow = \"1s\"\nnode = \"test-node\"\nspool_dir = \"{}\"\n{extra}\n[metering.file]\npath = \"{}\"\n",
        dir.join("spool").display(),
        dir.join("out/usage.jsonl").display(),
    )
}

/// The proxy with the sink's directory in place.
async fn start(dir: &Path, extra: &str, tenants: &[Tenant<'_>]) -> Harness {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    start_sink_missing(dir, extra, tenants).await
}

/// The proxy with the sink's directory missing: every write fails until it is made.
async fn start_sink_missing(dir: &Path, extra: &str, tenants: &[Tenant<'_>]) -> Harness {
    start_metered(&metering(dir, extra), tenants).await
}

fn events(dir: &Path) -> Vec<UsageEvent> {
    let text = std::fs::read_to_string(dir.join("out/usage.jsonl")).unwrap_or_default();
    let events: Vec<UsageEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert_eq!(e.node, "test-node");
        assert!(e.window_end <= e.window_start + 1, "1 s windows");
    }
    events
}

// Every answer counts exactly once for its tenant, refusals included; an unknown tenant's
// answers count for nobody; bytes in and out are what the client sent and received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_counts_once_for_its_tenant() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let tenants = two_tenants();
        let h = start(dir.path(), "", &tenants).await;
        let mut got = Received::default();
        traffic(&h, &mut got, 6).await;
        // Across a window boundary.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        traffic(&h, &mut got, 2).await;
        h.shutdown().await;

        let ev = events(dir.path());
        let t = totals(&ev);
        assert_eq!(t, got.0, "metered (left) vs received (right)");
        assert_eq!(t["acme"][3], 5, "3 admitted, then 429s");
        assert!(ev.iter().all(|e| e.tenant != "nobody"));
        for e in ev.iter().filter(|e| e.tenant == "globex") {
            assert_eq!(e.cell.as_deref(), Some("cell-2"));
            assert!(e.upstream_ms > 0.0);
            // The POSTs (16 bytes each) are the route class `uploads`, the GETs none.
            match e.route.as_deref() {
                Some("uploads") => assert_eq!(e.bytes_in, 16 * e.requests),
                None => assert_eq!(e.bytes_in, 0),
                other => panic!("route {other:?}"),
            }
        }
        let uploads: u64 = ev
            .iter()
            .filter(|e| e.route.as_deref() == Some("uploads"))
            .map(|e| e.requests)
            .sum();
        assert_eq!(uploads, 8, "one POST per round");
        let windows: HashSet<u64> = ev.iter().map(|e| e.window_start).collect();
        assert!(windows.len() >= 2, "two windows at least: {windows:?}");
    })
    .await;
}

// A window holding max_tenants tenants closes early (counted); nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_closes_early_and_loses_nothing() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ids = ["t1", "t2", "t3", "t4", "t5"];
        let tenants: Vec<Tenant> = ids
            .iter()
            .map(|t| tenant(t, "cell-1", Some("big")))
            .collect();
        let h = start(dir.path(), "max_tenants = 1", &tenants).await;
        let mut got = Received::default();
        for t in ids.iter().chain(&ids) {
            let r = get(&h, t, "/").await;
            got.add(t, &r, 0);
        }
        wait_metric(&h, "cellgate_metering_windows_closed_early_total", &[], 1.0).await;
        h.shutdown().await;
        assert_eq!(totals(&events(dir.path())), got.0);
    })
    .await;
}

// While the sink fails, windows go to the spool; once it works they are replayed, oldest
// first, before anything newer, and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_spools_and_replays_in_order() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        // The sink's directory is missing: every write fails.
        let tenants = two_tenants();
        let h = start_sink_missing(dir.path(), "", &tenants).await;
        let mut got = Received::default();
        traffic(&h, &mut got, 3).await;
        wait_events(&h, "spooled").await;
        let m = metrics(&h).await;
        assert!(sum(&m, "cellgate_metering_sink_errors_total", &[]) >= 1.0);
        assert!(sum(&m, "cellgate_metering_spool_batches", &[]) >= 1.0);
        assert_eq!(
            sum(&m, "cellgate_metering_events_total", &[("result", "sent")]),
            0.0
        );

        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        wait_events(&h, "replayed").await;
        traffic(&h, &mut got, 2).await;
        h.shutdown().await;

        let ev = events(dir.path());
        assert_eq!(totals(&ev), got.0);
        let starts: Vec<u64> = ev.iter().map(|e| e.window_start).collect();
        assert!(
            starts.windows(2).all(|w| w[0] <= w[1]),
            "in order: {starts:?}"
        );
    })
    .await;
}

// A graceful stop with the sink down flushes the open window to the spool; the next process
// on the same spool adopts it and replays it once the sink works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_hands_the_spool_to_the_next_process() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let tenants = two_tenants();
        let mut got = Received::default();
        let first = start_sink_missing(dir.path(), "", &tenants).await;
        traffic(&first, &mut got, 4).await;
        first.shutdown().await;
        let spooled = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
        assert_eq!(spooled, 1, "the first run's spool is left for the next");

        let second = start(dir.path(), "", &tenants).await;
        traffic(&second, &mut got, 2).await;
        wait_events(&second, "replayed").await;
        second.shutdown().await;

        assert_eq!(totals(&events(dir.path())), got.0);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "drained spools are removed: {left:?}");
    })
    .await;
}
