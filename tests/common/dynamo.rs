//! The DynamoDB-API server the suite runs against (moto, started by `tests/run.sh`, endpoint
//! in `CELLGATE_TEST_DYNAMODB`), and a fresh table of its own for each test.

use cellgate::ops::{self, TableArgs};
use cellgate::placement::dynamo::write::Registry;

/// The local DynamoDB endpoint; the suite runs through `bash tests/run.sh`, which starts it.
pub fn endpoint() -> String {
    std::env::var("CELLGATE_TEST_DYNAMODB").unwrap_or_else(|_| {
        panic!("CELLGATE_TEST_DYNAMODB is not set: run the suite with `bash tests/run.sh`")
    })
}

/// A fresh, initialised table of its own for one test.
pub async fn table(name: &str) -> (TableArgs, Registry) {
    let args = TableArgs {
        table: Some(format!("{name}-{}", fastrand::u32(..))),
        region: Some("us-east-1".to_owned()),
        endpoint_url: Some(endpoint()),
    };
    let reg = ops::registry(&args).await.unwrap();
    ops::registry_command(&reg, ops::RegistryCommand::Init { streams: false })
        .await
        .unwrap();
    (args, reg)
}
