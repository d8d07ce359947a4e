//! API keys in the identify stage: reading the one a client presented, and what a checked key
//! grants.
//!
//! A key comes in `tenant.api_key.header` (default `x-api-key`) or as `Authorization: ApiKey
//! <key>`. One field, one key: a repeated header, or a key in both places, is malformed (two
//! readings of one request are never resolved by picking one). The check itself is a
//! [`KeyCheck`]: the engine hands in the route stage's, which reads the placement snapshot.

use std::future::Future;
use std::sync::Arc;

use http::HeaderMap;

use crate::apikey::{KEY_LEN, KeyId, KeyRefusal, ParsedKey};
use crate::config::ApiKeyConfig;
use crate::tenant::TenantId;

/// The scheme of `Authorization: ApiKey <key>`.
const SCHEME: &[u8] = b"apikey";

/// Checks a presented key against its registry record.
pub trait KeyCheck {
    /// The grant of `key`, or why not.
    fn check(&self, key: ParsedKey<'_>) -> impl Future<Output = Result<KeyGrant, KeyFailure>>;
}

/// The check of a stage that holds no keys (the api_key source off, a benchmark): every key
/// is unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeys;

impl KeyCheck for NoKeys {
    async fn check(&self, _: ParsedKey<'_>) -> Result<KeyGrant, KeyFailure> {
        Err(KeyFailure::Refused(KeyRefusal::Unknown))
    }
}

/// Why a key check gave no grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFailure {
    /// 401, with the reason counted.
    Refused(KeyRefusal),
    /// The registry could not be asked about an id the snapshot lacks (503).
    Unavailable,
}

/// What a checked key grants: its tenant, its scopes, and its id for the cell and the log.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub id: KeyId,
    pub tenant: TenantId,
    /// `None`: the key carries its tenant's whole entitlement.
    pub scopes: Option<Arc<[Box<str>]>>,
}

impl KeyGrant {
    /// A grant for the checked `key`.
    #[must_use]
    pub fn new(key: &ParsedKey<'_>, tenant: TenantId, scopes: Option<Arc<[Box<str>]>>) -> Self {
        Self {
            id: KeyId::of(key),
            tenant,
            scopes,
        }
    }

    /// The key's public id.
    #[must_use]
    pub fn id(&self) -> &str {
        self.id.as_str()
    }
}

/// The key the request presents, if any (its text, unchecked).
pub fn presented_key<'a>(
    headers: &'a HeaderMap,
    cfg: &ApiKeyConfig,
) -> Result<Option<&'a str>, KeyRefusal> {
    let mut fields = headers.get_all(&cfg.header).iter();
    let from_header = match (fields.next(), fields.next()) {
        (None, _) => None,
        (Some(v), None) => Some(text(v.as_bytes())?),
        (Some(_), Some(_)) => return Err(KeyRefusal::Malformed),
    };
    let from_authorization = match headers.get(http::header::AUTHORIZATION) {
        Some(v) => authorization_key(v.as_bytes())?,
        None => None,
    };
    match (from_header, from_authorization) {
        (Some(_), Some(_)) => Err(KeyRefusal::Malformed),
        (k, None) | (None, k) => Ok(k),
    }
}

/// Whether `Authorization` carries the `ApiKey` scheme (the rewrite stage drops it then).
#[must_use]
pub fn is_key_authorization(value: &[u8]) -> bool {
    value.len() > SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && matches!(value[SCHEME.len()], b' ' | b'\t')
}

/// The key in `Authorization: ApiKey <key>`; `None` for another scheme (a bearer token).
fn authorization_key(value: &[u8]) -> Result<Option<&str>, KeyRefusal> {
    if !is_key_authorization(value) {
        return Ok(None);
    }
    text(&value[SCHEME.len() + 1..]).map(Some)
}

/// A key's text: ASCII, trimmed, and no longer than a key (checked before anything else).
fn text(bytes: &[u8]) -> Result<&str, KeyRefusal> {
    let t = bytes.trim_ascii();
    if t.is_empty() || t.len() > KEY_LEN {
        return Err(KeyRefusal::Malformed);
    }
    std::str::from_utf8(t).map_err(|_| KeyRefusal::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;

    const KEY: &str = "cgk_abcdefghijkl_abcdefghijklmnopqrstuvwxyz";

    fn cfg() -> ApiKeyConfig {
        ApiKeyConfig {
            header: http::HeaderName::from_static("x-api-key"),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_key_comes_in_its_header_or_as_authorization_apikey() {
        let got =
            |h: &[(&str, &str)]| presented_key(&headers(h), &cfg()).map(|k| k.map(str::to_owned));
        assert_eq!(got(&[("x-api-key", KEY)]), Ok(Some(KEY.to_owned())));
        let auth = format!("ApiKey {KEY}");
        assert_eq!(got(&[("authorization", &auth)]), Ok(Some(KEY.to_owned())));
        let lower = format!("apikey  {KEY} ");
        assert_eq!(got(&[("authorization", &lower)]), Ok(Some(KEY.to_owned())));
        // A bearer token is not a key; nothing at all is no key.
        assert_eq!(got(&[("authorization", "Bearer x.y.z")]), Ok(None));
        assert_eq!(got(&[]), Ok(None));
    }

    #[test]
    fn two_keys_or_an_oversized_one_are_malformed() {
        let got = |h: &[(&str, &str)]| presented_key(&headers(h), &cfg()).map(|k| k.is_some());
        let auth = format!("ApiKey {KEY}");
        assert_eq!(
            got(&[("x-api-key", KEY), ("x-api-key", KEY)]),
            Err(KeyRefusal::Malformed)
        );
        assert_eq!(
            got(&[("x-api-key", KEY), ("authorization", &auth)]),
            Err(KeyRefusal::Malformed)
        );
        let long = format!("{KEY}x");
        assert_eq!(got(&[("x-api-key", &long)]), Err(KeyRefusal::Malformed));
        assert_eq!(got(&[("x-api-key", " ")]), Err(KeyRefusal::Malformed));
        assert_eq!(
            got(&[("authorization", "ApiKey ")]),
            Err(KeyRefusal::Malformed)
        );
    }

    #[test]
    fn a_grant_keeps_its_id_inline() {
        let key = crate::apikey::parse(KEY).unwrap();
        let g = KeyGrant::new(&key, TenantId::parse("acme").unwrap(), None);
        assert_eq!(g.id(), "abcdefghijkl");
    }
}
