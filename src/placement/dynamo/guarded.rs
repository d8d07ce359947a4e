//! Guarded counter updates: the part of a registry write that changes counters on an item
//! rather than replacing it (a cell's `tenants` and `load` when a tenant is placed, moved or
//! offboarded), each `ADD`ed under a condition and with the item's `version` + 1, in the same
//! `TransactWriteItems` as the records ([`super::write::Registry::commit_guarded`]).
//!
//! Why an `ADD` under a condition rather than a whole-item `Put` on the version read: two
//! placements into one cell then both succeed while the condition (room left, the cell still
//! ACTIVE) holds for both, instead of the second failing on the version and starting over; yet
//! no interleaving can take the cell past the condition, which DynamoDB checks against the
//! item as it is when the transaction commits. The version still moves, so a concurrent
//! whole-item write of the cell (`cell put`) fails on its version rather than writing stale
//! counts back.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::schema::PK;

/// One guarded update: `ADD` each delta to its attribute (an absent attribute counts as 0),
/// `version` + 1, `updated_at` set; only if `condition` holds, and never creating the item.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// The item's `pk` (`cell#<id>`).
    pub key: String,
    /// `(attribute, delta)`; a negative delta decrements.
    pub add: Vec<(String, i64)>,
    /// A condition expression over `#a0`, `#a1`, ... (the attributes of `names`) and the
    /// values of `values` (`:name`); `attribute_exists(pk)` is added to it.
    pub condition: Option<String>,
    /// `#placeholder` → attribute name, for `condition`.
    pub names: Vec<(String, String)>,
    /// `:placeholder` → value, for `condition`.
    pub values: Vec<(String, AttributeValue)>,
    /// What the condition means, for the error when it fails (`room for 1 unit ...`).
    pub meaning: String,
}

impl Guarded {
    /// The transaction action on `table`, stamped `updated_at`.
    pub(super) fn action(
        &self,
        table: &str,
        updated_at: &str,
    ) -> Result<TransactWriteItem, aws_sdk_dynamodb::error::BuildError> {
        let mut adds = vec!["#ver :one".to_owned()];
        let mut update = Update::builder()
            .table_name(table)
            .key(PK, AttributeValue::S(self.key.clone()))
            .expression_attribute_names("#ver", "version")
            .expression_attribute_names("#upd", "updated_at")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":upd", AttributeValue::S(updated_at.to_owned()));
        for (i, (attr, delta)) in self.add.iter().enumerate() {
            adds.push(format!("#add{i} :add{i}"));
            update = update
                .expression_attribute_names(format!("#add{i}"), attr)
                .expression_attribute_values(
                    format!(":add{i}"),
                    AttributeValue::N(delta.to_string()),
                );
        }
        let condition = match &self.condition {
            Some(c) => format!("attribute_exists({PK}) AND ({c})"),
            None => format!("attribute_exists({PK})"),
        };
        for (k, v) in &self.names {
            update = update.expression_attribute_names(k, v);
        }
        for (k, v) in &self.values {
            update = update.expression_attribute_values(k, v.clone());
        }
        let update = update
            .update_expression(format!("SET #upd = :upd ADD {}", adds.join(", ")))
            .condition_expression(condition)
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
