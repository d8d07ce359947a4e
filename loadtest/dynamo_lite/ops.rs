//! dynamo-lite's operations: the subset of the DynamoDB API cellgate calls, each taking the
//! request's JSON and answering the response body or a [`Fault`] as DynamoDB words it.
//!
//! Implemented: `CreateTable`, `DescribeTable`, `UpdateTimeToLive` (what `registry init`
//! calls), `GetItem`, `BatchGetItem`, `PutItem`, `DeleteItem`, `UpdateItem`, `Scan`
//! (`Segment`/`TotalSegments`, `Limit`, `ExclusiveStartKey`, the 1 MB page, `FilterExpression`)
//! and `TransactWriteItems` (`Put`, `Update`, `Delete`, `ConditionCheck`; every condition
//! checked first, then all applied, or `TransactionCanceledException` with one
//! `CancellationReasons` entry per action). Every other operation is an
//! `UnknownOperationException`.

use serde_json::{Value, json};

use super::expr::{self, Bindings};
use super::store::{Store, Table};
use super::wire::{Fault, WireItem, field, map_field, str_field};

/// Keys per `BatchGetItem`, actions per `TransactWriteItems` (DynamoDB's limits).
const MAX_BATCH_GET: usize = 100;
const MAX_TRANSACT: usize = 100;

/// Runs operation `op` on `store`.
pub fn call(store: &mut Store, op: &str, req: &Value) -> Result<String, Fault> {
    match op {
        "CreateTable" => create_table(store, req),
        "DescribeTable" => {
            let name = str_field(req, "TableName")?;
            Ok(json!({ "Table": store.table(name)?.describe(name) }).to_string())
        }
        "UpdateTimeToLive" => update_ttl(store, req),
        "GetItem" => get_item(store, req),
        "BatchGetItem" => batch_get(store, req),
        "PutItem" => {
            let table = store.table_mut(str_field(req, "TableName")?)?;
            let item = map_field(req, "Item")?;
            let pk = table.key_of(item)?;
            check(table, &pk, req)?;
            table.put(item)?;
            Ok("{}".to_owned())
        }
        "DeleteItem" => {
            let table = store.table_mut(str_field(req, "TableName")?)?;
            let pk = table.key_of(map_field(req, "Key")?)?;
            check(table, &pk, req)?;
            table.delete(&pk);
            Ok("{}".to_owned())
        }
        "UpdateItem" => {
            let table = store.table_mut(str_field(req, "TableName")?)?;
            let pk = table.key_of(map_field(req, "Key")?)?;
            check(table, &pk, req)?;
            let item = updated(table, &pk, req)?;
            table.put(&item)?;
            Ok("{}".to_owned())
        }
        "Scan" => scan(store, req),
        "TransactWriteItems" => transact(store, req),
        other => Err(Fault::new(
            "UnknownOperationException",
            format!("dynamo-lite does not implement the operation {other}"),
        )),
    }
}

fn create_table(store: &mut Store, req: &Value) -> Result<String, Fault> {
    let name = str_field(req, "TableName")?;
    let schema = field(req, "KeySchema")?
        .as_array()
        .ok_or_else(|| Fault::validation("KeySchema must be a list"))?;
    let [hash] = schema.as_slice() else {
        return Err(Fault::unsupported("tables with a sort key"));
    };
    let key = hash
        .get("AttributeName")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::validation("KeySchema: AttributeName is required"))?;
    if store.tables.contains_key(name) {
        return Err(Fault::new(
            "ResourceInUseException",
            format!("Table already exists: {name}"),
        ));
    }
    let table = Table::new(key);
    let description = table.describe(name);
    store.tables.insert(name.to_owned(), table);
    Ok(json!({ "TableDescription": description }).to_string())
}

fn update_ttl(store: &mut Store, req: &Value) -> Result<String, Fault> {
    let table = store.table_mut(str_field(req, "TableName")?)?;
    let spec = field(req, "TimeToLiveSpecification")?;
    let enabled = spec.get("Enabled").and_then(Value::as_bool) == Some(true);
    let attribute = spec
        .get("AttributeName")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::validation("TimeToLiveSpecification: AttributeName is required"))?;
    match (&table.ttl, enabled) {
        (Some(_), true) => return Err(Fault::validation("TimeToLive is already enabled")),
        (None, false) => return Err(Fault::validation("TimeToLive is already disabled")),
        (_, true) => table.ttl = Some(attribute.to_owned()),
        (_, false) => table.ttl = None,
    }
    Ok(json!({ "TimeToLiveSpecification": spec }).to_string())
}

fn get_item(store: &Store, req: &Value) -> Result<String, Fault> {
    let table = store.table(str_field(req, "TableName")?)?;
    let pk = table.key_of(map_field(req, "Key")?)?;
    Ok(match table.get_text(&pk) {
        Some(text) => format!("{{\"Item\":{text}}}"),
        None => "{}".to_owned(),
    })
}

fn batch_get(store: &Store, req: &Value) -> Result<String, Fault> {
    let wanted = map_field(req, "RequestItems")?;
    let count: usize = wanted
        .values()
        .map(|t| t.get("Keys").and_then(Value::as_array).map_or(0, Vec::len))
        .sum();
    if count > MAX_BATCH_GET {
        return Err(Fault::validation(
            "Too many items requested for the BatchGetItem call",
        ));
    }
    let mut responses = serde_json::Map::new();
    for (name, spec) in wanted {
        let table = store.table(name)?;
        let keys = spec
            .get("Keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Fault::validation("RequestItems: Keys is required"))?;
        let mut found = Vec::with_capacity(keys.len());
        for k in keys {
            let key = k
                .as_object()
                .ok_or_else(|| Fault::validation("a key must be a map"))?;
            if let Some(item) = table.get(&table.key_of(key)?)? {
                found.push(Value::Object(item));
            }
        }
        responses.insert(name.clone(), Value::Array(found));
    }
    Ok(json!({ "Responses": responses, "UnprocessedKeys": {} }).to_string())
}

fn scan(store: &Store, req: &Value) -> Result<String, Fault> {
    let name = str_field(req, "TableName")?;
    let table = store.table(name)?;
    let num = |f: &str| req.get(f).and_then(Value::as_u64);
    let (segment, total) = match (num("Segment"), num("TotalSegments")) {
        (None, None) => (0, 1),
        (Some(s), Some(t)) if (1..=1_000_000).contains(&t) && s < t => (s, t),
        _ => {
            return Err(Fault::validation(
                "Segment and TotalSegments go together, 0 <= Segment < TotalSegments",
            ));
        }
    };
    let after = match req.get("ExclusiveStartKey") {
        None | Some(Value::Null) => None,
        Some(k) => Some(
            table.key_of(
                k.as_object()
                    .ok_or_else(|| Fault::validation("ExclusiveStartKey must be a map"))?,
            )?,
        ),
    };
    let limit = num("Limit").map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let page = table.scan(segment, total, after.as_deref(), limit);
    let scanned = page.items.len();
    let filter = req.get("FilterExpression").and_then(Value::as_str);
    let b = Bindings::of(req);
    let mut body =
        String::with_capacity(page.items.iter().map(|t| t.len() + 1).sum::<usize>() + 128);
    body.push_str("{\"Items\":[");
    let mut count = 0;
    for text in page.items {
        if let Some(f) = filter {
            let item: WireItem = serde_json::from_str(text)
                .map_err(|e| Fault::new("InternalServerError", format!("stored item: {e}")))?;
            if !expr::holds(f, &b, Some(&item))? {
                continue;
            }
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(text);
        count += 1;
    }
    body.push_str(&format!("],\"Count\":{count},\"ScannedCount\":{scanned}"));
    if let Some(last) = page.last {
        let key = json!({ table.key.clone(): { "S": last } });
        body.push_str(&format!(",\"LastEvaluatedKey\":{key}"));
    }
    body.push('}');
    Ok(body)
}

/// The request's `ConditionExpression` against the item `pk` as stored now.
fn check(table: &Table, pk: &str, req: &Value) -> Result<(), Fault> {
    if satisfied(table, pk, req)? {
        Ok(())
    } else {
        Err(Fault::condition_failed())
    }
}

fn satisfied(table: &Table, pk: &str, req: &Value) -> Result<bool, Fault> {
    let Some(cond) = req.get("ConditionExpression").and_then(Value::as_str) else {
        return Ok(true);
    };
    expr::holds(cond, &Bindings::of(req), table.get(pk)?.as_ref())
}

/// The item `pk` after the request's `UpdateExpression` (created when missing, as DynamoDB
/// does).
fn updated(table: &Table, pk: &str, req: &Value) -> Result<WireItem, Fault> {
    let mut item = table
        .get(pk)?
        .unwrap_or_else(|| WireItem::from_iter([(table.key.clone(), json!({ "S": pk }))]));
    expr::update(
        str_field(req, "UpdateExpression")?,
        &Bindings::of(req),
        &mut item,
    )?;
    Ok(item)
}

/// One action of a transaction, checked and ready to apply.
enum Action {
    Put(String, WireItem),
    Delete(String, String),
    Check,
}

fn transact(store: &mut Store, req: &Value) -> Result<String, Fault> {
    let list = field(req, "TransactItems")?
        .as_array()
        .ok_or_else(|| Fault::validation("TransactItems must be a list"))?;
    if list.is_empty() || list.len() > MAX_TRANSACT {
        return Err(Fault::validation(format!(
            "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_TRANSACT} and greater than or equal to 1"
        )));
    }
    let mut targets = std::collections::HashSet::new();
    let mut actions = Vec::with_capacity(list.len());
    let mut reasons = Vec::with_capacity(list.len());
    let mut failed = false;
    for entry in list {
        let (kind, body) = ["Put", "Update", "Delete", "ConditionCheck"]
            .into_iter()
            .find_map(|k| entry.get(k).map(|b| (k, b)))
            .ok_or_else(|| {
                Fault::validation("a TransactItem needs one of Put, Update, Delete, ConditionCheck")
            })?;
        let name = str_field(body, "TableName")?;
        let table = store.table(name)?;
        let pk = match kind {
            "Put" => table.key_of(map_field(body, "Item")?)?,
            _ => table.key_of(map_field(body, "Key")?)?,
        };
        if !targets.insert((name.to_owned(), pk.clone())) {
            return Err(Fault::validation(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
        let ok = satisfied(table, &pk, body)?;
        failed |= !ok;
        reasons.push(if ok {
            json!({ "Code": "None" })
        } else {
            json!({ "Code": "ConditionalCheckFailed", "Message": "The conditional request failed" })
        });
        actions.push(match kind {
            "Put" => Action::Put(name.to_owned(), map_field(body, "Item")?.clone()),
            "Update" => Action::Put(name.to_owned(), updated(table, &pk, body)?),
            "Delete" => Action::Delete(name.to_owned(), pk),
            _ => Action::Check,
        });
    }
    if failed {
        let codes: Vec<&str> = reasons.iter().filter_map(|r| r["Code"].as_str()).collect();
        let mut f = Fault::new(
            "TransactionCanceledException",
            format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
        );
        f.reasons = Some(reasons);
        return Err(f);
    }
    for a in actions {
        match a {
            Action::Put(name, item) => store.table_mut(&name)?.put(&item)?,
            Action::Delete(name, pk) => store.table_mut(&name)?.delete(&pk),
            Action::Check => {}
        }
    }
    Ok("{}".to_owned())
}
