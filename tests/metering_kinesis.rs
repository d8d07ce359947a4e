//! Usage metering to Amazon Kinesis Data Streams (moto, started by `tests/run.sh`), read back by
//! a consumer: the events' sums per tenant equal what the clients received, exactly, across a
//! sink outage (windows spooled, then replayed) that spans a graceful restart (the first
//! process flushes its open window into its spool, the second adopts and replays it). The
//! consumer drops replays by idempotency key, as a billing pipeline would; each record's
//! partition key is its tenant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use cellgate::metering::event::UsageEvent;
use common::dynamo::endpoint;
use common::limits::{metrics, sum, within};
use common::metering::{Received, start_metered, totals, traffic, two_tenants, wait_events};
use common::toggle::Toggle;

async fn client() -> Client {
    Client::new(&cellgate::aws::sdk_config(Some("us-east-1"), Some(&endpoint())).await)
}

async fn create_stream(k: &Client, name: &str) {
    k.create_stream()
        .stream_name(name)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        let s = k
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap();
        if s.stream_description_summary().map(|d| d.stream_status()) == Some(&StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} never became active");
}

/// Every record of every shard, from the start: (partition key, event).
async fn read_all(k: &Client, name: &str) -> Vec<(String, UsageEvent)> {
    let shards = k.list_shards().stream_name(name).send().await.unwrap();
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let page = k.get_records().shard_iterator(&it).send().await.unwrap();
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                let line = std::str::from_utf8(r.data().as_ref()).unwrap();
                assert!(line.ends_with('\n'), "a record is one JSON line");
                let e: UsageEvent = serde_json::from_str(line).unwrap();
                out.push((r.partition_key().to_owned(), e));
            }
            match page.next_shard_iterator() {
                Some(next) => it = next.to_owned(),
                None => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_sums_match_the_clients_across_an_outage_and_a_restart() {
    within(async {
        let k = client().await;
        let stream = format!("usage-{}", fastrand::u32(..));
        create_stream(&k, &stream).await;
        let moto: std::net::SocketAddr = endpoint().trim_start_matches("http://").parse().unwrap();
        let gate = Toggle::start(moto).await;
        let dir = tempfile::tempdir().unwrap();
        let metering = format!(
            "[metering]\nwindow = \"1s\"\nnode = \"kin-node\"\nspool_dir = \"{}\"\n\
             [metering.kinesis]\nstream = \"{stream}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\ntimeout = \"1s\"\n",
            dir.path().join("spool").display(),
            gate.url(),
        );
        let tenants = two_tenants();
        let mut got = Received::default();

        // The sink works.
        let first = start_metered(&metering, &tenants).await;
        traffic(&first, &mut got, 3).await;
        wait_events(&first, "sent").await;

        // An outage: windows go to the spool, and the graceful stop flushes the open one there.
        gate.set(false);
        traffic(&first, &mut got, 3).await;
        wait_events(&first, "spooled").await;
        assert!(
            sum(
                &metrics(&first).await,
                "cellgate_metering_sink_errors_total",
                &[]
            ) >= 1.0
        );
        traffic(&first, &mut got, 1).await;
        first.shutdown().await;

        // The next process adopts the spool; the sink comes back; it replays, then goes on.
        let second = start_metered(&metering, &tenants).await;
        traffic(&second, &mut got, 2).await;
        gate.set(true);
        wait_events(&second, "replayed").await;
        traffic(&second, &mut got, 2).await;
        second.shutdown().await;

        let records = read_all(&k, &stream).await;
        for (key, e) in &records {
            assert_eq!(key, &e.tenant, "the tenant is the partition key");
            assert_eq!(e.node, "kin-node");
        }
        // A consumer keeps the first copy of each key.
        let mut seen: HashMap<String, UsageEvent> = HashMap::new();
        for (_, e) in records {
            seen.entry(e.idempotency_key.clone()).or_insert(e);
        }
        let events: Vec<UsageEvent> = seen.into_values().collect();
        assert_eq!(totals(&events), got.0, "metered (left) vs received (right)");
    })
    .await;
}
