//! Batched writes and the DynamoDB source's core (paginated parallel load, epoch poll, delta
//! over `key` and `keys` change items) against two DynamoDB-API servers: moto (started by
//! `tests/run.sh`, endpoint in `CELLGATE_TEST_DYNAMODB`: API fidelity) and dynamo-lite
//! (`loadtest/dynamo_lite`, started here: the server the million-item loadtests run on, so it
//! must answer the same calls the same way).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../loadtest/dynamo_lite/mod.rs"]
mod dynamo_lite;

use std::sync::{Arc, Mutex};

use cellgate::config::DynamoSettings;
use cellgate::placement::dynamo::DynamoSource;
use cellgate::placement::dynamo::schema::{Item, tenant_item};
use cellgate::placement::dynamo::write::{MAX_BATCH, Registry, WriteError};
use cellgate::placement::{PlacementSource, TenantRecord, TenantStatus};

fn record(i: usize, cell: &str, version: u64) -> TenantRecord {
    TenantRecord {
        id: format!("t-{i:04}"),
        cell: cell.to_owned(),
        status: TenantStatus::Active,
        tier: "standard".to_owned(),
        version,
        issuers: Vec::new(),
        limits: cellgate::ratelimit::TenantLimits::default(),
        arm: None,
        entitlements: Vec::new(),
    }
}

fn write(i: usize, cell: &str, version: u64) -> (Item, Option<u64>) {
    let expected = (version > 1).then(|| version - 1);
    (tenant_item(&record(i, cell, version), "t"), expected)
}

/// The same steps on either server: 250 tenants written in batches, loaded by the source in
/// 3 segments of 40-item pages, 98 moved by one batch and one by a single write, followed by
/// one delta; a stale batch is refused whole, naming its record.
async fn core(endpoint: &str, reg: &Registry) {
    reg.init(false).await.unwrap();
    let all: Vec<usize> = (0..250).collect();
    for chunk in all.chunks(MAX_BATCH) {
        let writes = chunk.iter().map(|&i| write(i, "cell-1", 1)).collect();
        reg.commit_batch(writes).await.unwrap();
    }
    assert_eq!(reg.epoch().await.unwrap(), 3);
    let source = DynamoSource::new(DynamoSettings {
        table: reg.table().to_owned(),
        region: Some("us-east-1".to_owned()),
        endpoint_url: Some(endpoint.to_owned()),
        scan_segments: 3,
        scan_page_size: Some(40),
    })
    .await;
    let data = source.load().await.unwrap();
    assert_eq!(data.tenant_count(), 250);
    assert!(!source.changed().await.unwrap());

    let moves = (0..MAX_BATCH).map(|i| write(i, "cell-2", 2)).collect();
    reg.commit_batch(moves).await.unwrap();
    reg.commit(write(200, "cell-3", 2).0, Some(1))
        .await
        .unwrap();
    assert!(source.changed().await.unwrap());
    let delta = source
        .delta()
        .await
        .unwrap()
        .expect("a delta, not a reload");
    assert_eq!(delta.tenants.len(), MAX_BATCH + 1);
    for (id, t) in &delta.tenants {
        let want = if id == "t-0200" { "cell-3" } else { "cell-2" };
        assert_eq!(t.as_ref().unwrap().cell, want, "{id}");
    }
    assert!(!source.changed().await.unwrap());

    // t-0005 is at version 2 now: a batch expecting 1 fails whole, naming it.
    let stale = vec![write(240, "cell-3", 2), write(5, "cell-3", 2)];
    match reg.commit_batch(stale).await {
        Err(WriteError::Conflict { key, found, .. }) => {
            assert_eq!((key.as_str(), found), ("tenant#t-0005", Some(2)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let untouched = reg.get("tenant#t-0240").await.unwrap().unwrap();
    assert_eq!(
        cellgate::placement::dynamo::schema::tenant_from_item(&untouched)
            .unwrap()
            .version,
        1
    );
    let too_many = (0..=MAX_BATCH).map(|i| write(i, "cell-1", 3)).collect();
    assert!(reg.commit_batch(too_many).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_and_deltas_on_moto() {
    let endpoint = std::env::var("CELLGATE_TEST_DYNAMODB").unwrap_or_else(|_| {
        panic!("CELLGATE_TEST_DYNAMODB is not set: run the suite with `bash tests/run.sh`")
    });
    let client = dynamo_lite::sdk_client(&endpoint).await;
    let reg = Registry::new(client, format!("batch-{}", fastrand::u32(..)));
    core(&endpoint, &reg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_and_deltas_on_dynamo_lite() {
    let store = Arc::new(Mutex::new(dynamo_lite::store::Store::default()));
    let addr = dynamo_lite::spawn_thread(store, 0).unwrap();
    let endpoint = format!("http://{addr}");
    let reg = Registry::new(dynamo_lite::sdk_client(&endpoint).await, "batch");
    core(&endpoint, &reg).await;
}
