//! The DynamoDB JSON 1.0 wire forms dynamo-lite speaks: attribute values as JSON
//! (`{"S": ...}`, `{"N": "..."}`, ...), the errors DynamoDB answers with (`__type`, `message`,
//! `CancellationReasons`), and the SDK's `AttributeValue` turned into that JSON, so seeded items
//! are built by the same `schema` conversions the CLI writes with.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Value, json};

/// An item on the wire: attribute name -> `{"TYPE": value}`.
pub type WireItem = Map<String, Value>;

/// A refused request, as DynamoDB words it (HTTP 400 unless `status` says otherwise).
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: &'static str,
    pub message: String,
    /// For `TransactionCanceledException`: one `{"Code": ...}` per action.
    pub reasons: Option<Vec<Value>>,
    pub status: u16,
}

impl Fault {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            reasons: None,
            status: 400,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// Something dynamo-lite does not implement (named, so a caller sees why).
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::validation(format!("dynamo-lite does not implement {what}"))
    }

    pub fn condition_failed() -> Self {
        Self::new(
            "ConditionalCheckFailedException",
            "The conditional request failed",
        )
    }

    pub fn no_table(name: &str) -> Self {
        Self::new(
            "ResourceNotFoundException",
            format!("Requested resource not found: Table: {name} not found"),
        )
    }

    /// The response body.
    pub fn body(&self) -> String {
        let mut v = json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{}", self.kind),
            "message": self.message,
        });
        if let Some(r) = &self.reasons {
            v["Message"] = Value::String(self.message.clone());
            v["CancellationReasons"] = Value::Array(r.clone());
        }
        v.to_string()
    }
}

/// An SDK attribute value as wire JSON.
pub fn attr(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(l) => json!({ "SS": l }),
        AttributeValue::Ns(l) => json!({ "NS": l }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attr).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item(m) }),
        // Binary values: not in the registry's layout.
        _ => json!({ "NULL": true }),
    }
}

/// An SDK item as a wire item.
pub fn item(i: &std::collections::HashMap<String, AttributeValue>) -> WireItem {
    i.iter().map(|(k, v)| (k.clone(), attr(v))).collect()
}

/// The string of an `{"S": ...}` value.
pub fn as_s(v: &Value) -> Option<&str> {
    v.get("S")?.as_str()
}

/// A required field of a request.
pub fn field<'a>(req: &'a Value, name: &str) -> Result<&'a Value, Fault> {
    req.get(name)
        .ok_or_else(|| Fault::validation(format!("{name} is required")))
}

/// A required string field of a request.
pub fn str_field<'a>(req: &'a Value, name: &str) -> Result<&'a str, Fault> {
    field(req, name)?
        .as_str()
        .ok_or_else(|| Fault::validation(format!("{name} must be a string")))
}

/// A required map field (an item or a key).
pub fn map_field<'a>(req: &'a Value, name: &str) -> Result<&'a WireItem, Fault> {
    field(req, name)?
        .as_object()
        .ok_or_else(|| Fault::validation(format!("{name} must be a map")))
}
