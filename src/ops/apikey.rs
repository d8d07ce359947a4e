//! `cellgate apikey create|list|revoke|rotate`: the API key lifecycle over the registry table.
//!
//! A key is made here ([`apikey::generate`]) and shown once, in the command's output; the table
//! only ever holds its hash (an `apikey#<id>` item, [`key_item`]). Every write is conditional (a
//! new key on its id being free, a change on the version just read) and goes through the
//! registry's change log, so a created, revoked or rotated key reaches every proxy at its next
//! poll. A rotation writes the new key and the old key's shortened expiry in one transaction
//! ([`Registry::commit_batch`]): either both land or neither. `create --print-record` writes
//! nothing and prints the record for a file registry instead.

use crate::auth::unix_now;

use serde_json::{Value, json};

use super::args::{ApiKeyCommand, CreateKey};
use super::io::current_tenant;
use super::{OpsError, invalid, not_found};
use crate::apikey::{self, NewKey, PREFIX};
use crate::config::parse_duration;
use crate::placement::dynamo::schema::{Item, apikey_key, key_from_item, key_item};
use crate::placement::dynamo::write::{Registry, updated_at};
use crate::placement::file::shape::FileKey;
use crate::placement::record::{RawKey, key_record};
use crate::placement::{KeyRecord, KeyStatus, TenantStatus};
use crate::rules::{ENTITLEMENT_RULE, MAX_ENTITLEMENTS, valid_entitlement};
use crate::tenant::TenantId;

pub async fn apikey_command(reg: &Registry, cmd: ApiKeyCommand) -> Result<Value, OpsError> {
    match cmd {
        ApiKeyCommand::Create(c) if c.print_record => print_record(&c),
        ApiKeyCommand::Create(c) => create(reg, &c).await,
        ApiKeyCommand::List { tenant } => list(reg, &tenant).await,
        ApiKeyCommand::Revoke { id } => revoke(reg, &id).await,
        ApiKeyCommand::Rotate { id, grace, expires } => {
            rotate(reg, &id, &grace, expires.as_deref()).await
        }
    }
}

/// `apikey create --print-record`: a new key and its registry-file record; no table is read or
/// written (the tenant's id is checked, not its existence).
pub fn print_record(c: &CreateKey) -> Result<Value, OpsError> {
    let (key, record) = new_key(c, unix_now())?;
    let file = serde_json::to_value(FileKey::from_record(&record))?;
    Ok(json!({"key": key.key, "record": file}))
}

async fn create(reg: &Registry, c: &CreateKey) -> Result<Value, OpsError> {
    let now = unix_now();
    let (key, record) = new_key(c, now)?;
    match current_tenant(reg, &c.tenant).await? {
        None => return Err(not_found(reg, "tenant", &c.tenant)),
        // An offboarded tenant is unknown to the proxy: a key for it would be a key to nothing.
        Some(t) if t.status == TenantStatus::Offboarded => {
            return Err(invalid(
                "--tenant",
                &c.tenant,
                "the tenant is OFFBOARDED; put it back (tenant put --status ACTIVE) first",
            ));
        }
        Some(_) => {}
    }
    let epoch = reg.commit(key_item(&record, &updated_at()), None).await?;
    Ok(shown(&key, &record, epoch))
}

/// Checks `create`'s flags and makes the key and its record (created `now`, version 1).
fn new_key(c: &CreateKey, now: u64) -> Result<(NewKey, KeyRecord), OpsError> {
    if let Err(e) = TenantId::parse(&c.tenant) {
        return Err(invalid("--tenant", &c.tenant, e.to_string()));
    }
    check_scopes(&c.scopes)?;
    let expires_at = match &c.expires {
        Some(text) => Some(now.saturating_add(lifetime(text)?)),
        None => None,
    };
    made(&c.tenant, &c.scopes, now, expires_at)
}

/// A fresh key and its record, checked as every registry source checks a stored one.
fn made(
    tenant: &str,
    scopes: &[String],
    now: u64,
    expires_at: Option<u64>,
) -> Result<(NewKey, KeyRecord), OpsError> {
    let key = apikey::generate().map_err(|_| OpsError::Random)?;
    let record = key_record(RawKey {
        id: key.id.clone(),
        tenant: tenant.to_owned(),
        hash: key.hash.to_string(),
        status: Some(KeyStatus::Active.as_str().to_owned()),
        expires_at,
        scopes: scopes.to_vec(),
        created_at: Some(now),
        version: Some(1),
    })
    .map_err(|b| invalid(b.field, &b.value, b.reason))?;
    Ok((key, record))
}

/// `--scope`s: each a valid entitlement name, none twice, at most [`MAX_ENTITLEMENTS`].
fn check_scopes(scopes: &[String]) -> Result<(), OpsError> {
    if scopes.len() > MAX_ENTITLEMENTS {
        return Err(invalid(
            "--scope",
            &scopes.len().to_string(),
            format!("at most {MAX_ENTITLEMENTS} scopes"),
        ));
    }
    for (i, s) in scopes.iter().enumerate() {
        if !valid_entitlement(s) {
            return Err(invalid("--scope", s, ENTITLEMENT_RULE));
        }
        if scopes[..i].contains(s) {
            return Err(invalid("--scope", s, "given twice"));
        }
    }
    Ok(())
}

/// A duration flag in whole seconds, rounded up (expiry is kept in unix seconds).
fn seconds(flag: &str, text: &str) -> Result<u64, OpsError> {
    let d = parse_duration(flag, text).map_err(|f| invalid(f.key, &f.value, f.reason))?;
    Ok(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// `--expires`: a key's lifetime, at least a second.
fn lifetime(text: &str) -> Result<u64, OpsError> {
    match seconds("--expires", text)? {
        0 => Err(invalid(
            "--expires",
            text,
            "a key's lifetime is more than 0 (leave --expires out for a key that never expires)",
        )),
        s => Ok(s),
    }
}

/// `apikey list`: the tenant's keys, by creation time then id; a record that fails the checks
/// is listed with why, so the rest stay visible.
async fn list(reg: &Registry, tenant: &str) -> Result<Value, OpsError> {
    if let Err(e) = TenantId::parse(tenant) {
        return Err(invalid("--tenant", tenant, e.to_string()));
    }
    let items = reg.list_where("apikey", "tenant", tenant).await?;
    if items.is_empty() && current_tenant(reg, tenant).await?.is_none() {
        return Err(not_found(reg, "tenant", tenant));
    }
    let now = unix_now();
    let mut keys: Vec<(u64, String, Value)> = items
        .iter()
        .map(|item| match key_from_item(item) {
            Ok(r) => (r.created_at, r.id.clone(), summary(&r, now)),
            Err(b) => {
                let id = stored_id(item);
                let why = format!("{} = `{}`: {}", b.field, b.value, b.reason);
                (0, id.clone(), json!({"id": id, "invalid": why}))
            }
        })
        .collect();
    keys.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(Value::Array(keys.into_iter().map(|k| k.2).collect()))
}

/// The id an item is stored under, for naming a broken one.
fn stored_id(item: &Item) -> String {
    let key = item_text(item, "pk");
    key.strip_prefix("apikey#").unwrap_or(&key).to_owned()
}

fn item_text(item: &Item, attr: &str) -> String {
    item.get(attr)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// `apikey revoke`: REVOKED, version + 1; a key already revoked is printed as it is.
async fn revoke(reg: &Registry, id: &str) -> Result<Value, OpsError> {
    let current = read_key(reg, id).await?;
    let now = unix_now();
    if current.status == KeyStatus::Revoked {
        let mut out = summary(&current, now);
        out["changed"] = json!(false);
        return Ok(out);
    }
    let expected = current.version;
    let next = KeyRecord {
        status: KeyStatus::Revoked,
        version: expected + 1,
        ..current
    };
    let epoch = reg
        .commit(key_item(&next, &updated_at()), Some(expected))
        .await?;
    let mut out = summary(&next, now);
    out["changed"] = json!(true);
    out["epoch"] = json!(epoch);
    Ok(out)
}

/// `apikey rotate`: a new key for the old one's tenant and scopes, and the old one's expiry
/// cut to the end of the grace; one transaction, each write conditional.
async fn rotate(
    reg: &Registry,
    id: &str,
    grace: &str,
    expires: Option<&str>,
) -> Result<Value, OpsError> {
    let grace = seconds("--grace", grace)?;
    let expires = expires.map(lifetime).transpose()?;
    let old = read_key(reg, id).await?;
    let now = unix_now();
    if old.status == KeyStatus::Revoked {
        return Err(invalid(
            "id",
            id,
            "the key is REVOKED; make a new one with `apikey create`",
        ));
    }
    if let Some(t) = old.expires_at
        && now >= t
    {
        return Err(invalid(
            "id",
            id,
            format!("the key expired at {t} (unix seconds); make a new one with `apikey create`"),
        ));
    }
    let (new_expires_at, old_expires_at) = rotation(&old, now, grace, expires);
    let (key, record) = made(&old.tenant, &old.scopes, now, new_expires_at)?;
    let expected = old.version;
    let replaced = KeyRecord {
        expires_at: Some(old_expires_at),
        version: expected + 1,
        ..old
    };
    let at = updated_at();
    let epoch = reg
        .commit_batch(vec![
            (key_item(&record, &at), None),
            (key_item(&replaced, &at), Some(expected)),
        ])
        .await?;
    let mut out = shown(&key, &record, epoch);
    out["replaces"] = json!(replaced.id);
    out["old_expires_at"] = json!(old_expires_at);
    Ok(out)
}

/// For a rotation at `now` with `grace` seconds: the new key's expiry (`expires` from now if
/// given, else the old key's lifetime from now if it had one, else none) and the old key's
/// (the end of the grace, never later than it would have expired anyway).
fn rotation(old: &KeyRecord, now: u64, grace: u64, expires: Option<u64>) -> (Option<u64>, u64) {
    let new = match expires {
        Some(life) => Some(now.saturating_add(life)),
        // At least a second: a record with no creation time must not yield a dead key.
        None => old
            .expires_at
            .map(|t| now.saturating_add(t.saturating_sub(old.created_at).max(1))),
    };
    let end = now.saturating_add(grace);
    (new, old.expires_at.map_or(end, |t| t.min(end)))
}

/// The stored key `id`, checked; NotFound if there is none.
async fn read_key(reg: &Registry, id: &str) -> Result<KeyRecord, OpsError> {
    check_id(id)?;
    let Some(item) = reg.get(&apikey_key(id)).await? else {
        return Err(not_found(reg, "apikey", id));
    };
    key_from_item(&item).map_err(|b| {
        invalid(
            format!("stored apikey {id}: {}", b.field),
            &b.value,
            b.reason,
        )
    })
}

/// A key id as `revoke` and `rotate` take it; a whole key given instead is refused without
/// being echoed (it would land in logs).
fn check_id(id: &str) -> Result<(), OpsError> {
    if id.starts_with(PREFIX) {
        return Err(invalid(
            "id",
            "cgk_...",
            "give the key's id (the 12 characters after `cgk_`), not the key",
        ));
    }
    if !apikey::valid_id(id) {
        return Err(invalid(
            "id",
            id,
            "a key id is 12 characters of lowercase base32 (a-z, 2-7)",
        ));
    }
    Ok(())
}

/// A new key as `create` and `rotate` print it: the only place the key itself ever appears.
fn shown(key: &NewKey, r: &KeyRecord, epoch: u64) -> Value {
    let mut fields = r.public_fields();
    fields.insert("key".to_owned(), json!(key.key));
    fields.insert("epoch".to_owned(), json!(epoch));
    Value::Object(fields)
}

/// A stored key as `list` and `revoke` print it: never the key, nor its hash.
fn summary(r: &KeyRecord, now: u64) -> Value {
    let mut fields = r.public_fields();
    let expired = r.expires_at.is_some_and(|t| now >= t);
    fields.insert("expired".to_owned(), json!(expired));
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn create(tenant: &str, expires: Option<&str>, scopes: &[&str]) -> CreateKey {
        CreateKey {
            tenant: tenant.to_owned(),
            expires: expires.map(str::to_owned),
            scopes: scopes.iter().map(|&s| s.to_owned()).collect(),
            print_record: true,
        }
    }

    fn err(r: Result<impl std::fmt::Debug, OpsError>) -> String {
        r.unwrap_err().to_string()
    }

    fn old(created_at: u64, expires_at: Option<u64>) -> KeyRecord {
        let (_, r) = made("acme", &["reports".to_owned()], created_at, expires_at).unwrap();
        r
    }

    #[test]
    fn create_checks_its_flags_naming_each() {
        let (key, r) = new_key(&create("acme", Some("90d"), &["reports", "a:b"]), 1_000).unwrap();
        assert_eq!(r.expires_at, Some(1_000 + 90 * 86_400), "days are accepted");
        assert_eq!(
            (r.created_at, r.version, r.status),
            (1_000, 1, KeyStatus::Active)
        );
        assert_eq!(r.scopes, ["reports", "a:b"]);
        assert!(r.hash.verifies(&apikey::parse(&key.key).unwrap()));
        let (_, r) = new_key(&create("acme", Some("1500ms"), &[]), 10).unwrap();
        assert_eq!(r.expires_at, Some(12), "rounded up to whole seconds");
        assert_eq!(
            new_key(&create("acme", None, &[]), 10)
                .unwrap()
                .1
                .expires_at,
            None
        );

        let e = err(new_key(&create("acme", None, &["bad scope"]), 0));
        assert_eq!(e, format!("--scope = `bad scope`: {ENTITLEMENT_RULE}"));
        let e = err(new_key(&create("acme", None, &["a", "a"]), 0));
        assert_eq!(e, "--scope = `a`: given twice");
        let many: Vec<String> = (0..=MAX_ENTITLEMENTS).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(err(new_key(&create("acme", None, &refs), 0)).starts_with("--scope = `65`"));
        let e = err(new_key(&create("acme", Some("soon"), &[]), 0));
        assert!(e.starts_with("--expires = `soon`: not a duration"), "{e}");
        let e = err(new_key(&create("acme", Some("0s"), &[]), 0));
        assert!(
            e.starts_with("--expires = `0s`: a key's lifetime is more than 0"),
            "{e}"
        );
        let e = err(new_key(&create("Bad Id", None, &[]), 0));
        assert!(e.starts_with("--tenant = `Bad Id`"), "{e}");
    }

    #[test]
    fn a_printed_record_is_a_file_registry_record_of_the_key() {
        let out = print_record(&create("acme", Some("1h"), &["reports"])).unwrap();
        let key = out["key"].as_str().unwrap();
        let file: FileKey = serde_json::from_value(out["record"].clone()).unwrap();
        let r = key_record(file.into_raw()).unwrap();
        assert!(r.hash.verifies(&apikey::parse(key).unwrap()));
        assert_eq!((r.tenant.as_str(), r.scopes.len()), ("acme", 1));
        assert!(
            !out["record"]
                .to_string()
                .contains(&key[PREFIX.len() + 13..])
        );
    }

    #[test]
    fn rotation_keeps_the_lifetime_and_cuts_the_old_key_to_the_grace() {
        let now = 10_000;
        // A 90-day key, rotated: the new one lives 90 days from now; the old one 24 h more.
        let r = old(1_000, Some(1_000 + 90 * 86_400));
        assert_eq!(
            rotation(&r, now, 86_400, None),
            (Some(now + 90 * 86_400), now + 86_400)
        );
        // --expires wins; a grace past the old key's own expiry does not extend it.
        let r = old(1_000, Some(now + 60));
        assert_eq!(
            rotation(&r, now, 86_400, Some(30)),
            (Some(now + 30), now + 60)
        );
        // No expiry: none for the new key, the grace for the old; `--grace 0s` ends it now.
        let r = old(1_000, None);
        assert_eq!(rotation(&r, now, 2, None), (None, now + 2));
        assert_eq!(rotation(&r, now, 0, None), (None, now));
        // A record without a creation time still gives the new key a future expiry.
        let mut r = old(1_000, Some(now + 5));
        r.created_at = now + 10;
        assert_eq!(rotation(&r, now, 0, None), (Some(now + 1), now));
        assert_eq!(seconds("--grace", "0s").unwrap(), 0);
        assert_eq!(seconds("--grace", "24h").unwrap(), 86_400);
    }

    #[test]
    fn ids_are_checked_and_a_whole_key_is_not_echoed() {
        let key = apikey::generate().unwrap();
        assert!(check_id(&key.id).is_ok());
        let e = err(check_id(&key.key));
        assert!(!e.contains(&key.key[PREFIX.len()..]), "{e}");
        assert!(e.starts_with("id = `cgk_...`: give the key's id"), "{e}");
        let e = err(check_id("ABC"));
        assert!(
            e.starts_with("id = `ABC`: a key id is 12 characters"),
            "{e}"
        );
    }

    #[test]
    fn a_summary_never_holds_the_hash() {
        let r = old(1_000, Some(2_000));
        let s = summary(&r, 2_000);
        assert_eq!(s["expired"], true);
        assert_eq!(summary(&r, 1_999)["expired"], false);
        let text = s.to_string();
        assert!(!text.contains("sha256") && !text.contains("hash"), "{text}");
    }
}
