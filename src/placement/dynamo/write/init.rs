//! `Registry::init`: creating the registry table (idempotent) and seeding its epoch.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};

use super::super::schema::{EPOCH_KEY, PK, TTL_ATTRIBUTE};
use super::{InitOutcome, Registry, WriteError};

impl Registry {
    /// Creates the table (on-demand billing, `pk` hash key, TTL on change items, optionally a
    /// Stream), waits until it is active, and seeds the epoch. Idempotent.
    pub async fn init(&self, streams: bool) -> Result<InitOutcome, WriteError> {
        let mut create = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| self.other(e))?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| self.other(e))?,
            );
        if streams {
            create = create.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .map_err(|e| self.other(e))?,
            );
        }
        let outcome = match create.send().await {
            Ok(_) => InitOutcome::Created,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                InitOutcome::AlreadyExists
            }
            Err(e) => return Err(self.failed("CreateTable", &e)),
        };
        self.wait_active().await?;
        let ttl = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(|e| self.other(e))?,
            )
            .send()
            .await;
        // Enabling TTL twice is refused; the wanted state is reached either way.
        if let Err(e) = ttl
            && !e.message().is_some_and(|m| m.contains("already enabled"))
        {
            return Err(self.failed("UpdateTimeToLive", &e));
        }
        let seeded = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(EPOCH_KEY.to_owned()))
            .item("epoch", AttributeValue::N("0".to_owned()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        if let Err(e) = seeded
            && !e
                .as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception())
        {
            return Err(self.failed("PutItem", &e));
        }
        Ok(outcome)
    }

    async fn wait_active(&self) -> Result<(), WriteError> {
        for _ in 0..600 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.failed("DescribeTable", &e))?;
            if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(self.other("the table did not become ACTIVE within 60 s"))
    }
}
