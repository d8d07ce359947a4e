//! The *identify* stage: which tenant does this request belong to, and who says so.
//!
//! Each configured source is asked in `tenant.sources` order; the first that names a tenant
//! wins, and any other source naming a *different* tenant makes the request a 403 (a token for
//! `acme` on `globex.app.example.com` is an attack or a bug, never a routing hint). A token's
//! issuer must also be allowed to speak for the tenant finally chosen (its `tenants` list), so
//! one tenant's IdP cannot mint tokens that reach another tenant, whichever source named it.
//!
//! An API key ([`keys`]) is read from `tenant.api_key.header` or `Authorization: ApiKey`, and
//! checked by a [`KeyCheck`] (the registry's record of it lives in the placement snapshot, a
//! layer above: the engine passes the check in). Like a token, a presented key is always
//! checked when the api_key source is on, and the tenant it names must agree with the others.

mod keys;

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;

pub use self::keys::{KeyCheck, KeyFailure, KeyGrant, NoKeys, is_key_authorization, presented_key};
use crate::apikey::{KeyRefusal, parse};
use crate::auth::{AuthError, TokenMemo, VerifiedToken, Verifier, bearer_token};
use crate::config::TenantConfig;
use crate::tenant::{TenantError, TenantId, TenantSource, tenant_from_host};

/// The outcome of the identify stage.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant: TenantId,
    pub source: TenantSource,
    /// The verified token, when one was presented (shared with the verified-token cache).
    pub token: Option<Arc<VerifiedToken>>,
    /// The checked API key, when one was presented.
    pub key: Option<KeyGrant>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A presented API key was refused (401), or none came where one was needed.
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    /// The registry could not be asked about a key the snapshot lacks (503).
    #[error("the registry cannot be asked about this API key now")]
    KeyLookup,
}

/// The host the client addressed: the URI authority (HTTP/2 `:authority`, absolute-form) or
/// else the `Host` header.
#[must_use]
pub fn request_host(parts: &Parts) -> Option<&[u8]> {
    parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .map(http::HeaderValue::as_bytes)
        })
}

/// [`request_host`] as a header value, for `x-forwarded-host` and `Host` towards the cell, so
/// the host the tenant was read from is the host the cell sees. Allocates only for an
/// authority (HTTP/2, absolute-form); a `Host` header is shared.
#[must_use]
pub fn request_host_value(parts: &Parts) -> Option<http::HeaderValue> {
    match parts.uri.authority() {
        Some(a) => http::HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(http::header::HOST).cloned(),
    }
}

/// Runs the identify stage over request parts. It only awaits when a token names a `kid` its
/// issuer's JWKS does not have yet (one bounded refetch), or a key id is not in the snapshot
/// (one coalesced, rate-capped registry read); otherwise it completes at once. `memo` is the
/// client connection's last verified token; `keys` checks a presented API key.
pub async fn identify(
    parts: &Parts,
    peer: IpAddr,
    cfg: &TenantConfig,
    verifier: &Verifier,
    memo: &TokenMemo,
    keys: &impl KeyCheck,
) -> Result<Identity, IdentifyError> {
    // With issuers configured, a bearer token is always verified, whichever sources name the
    // tenant: a token the proxy lets through is one it checked.
    let token = if verifier.enabled() {
        match bearer_token(&parts.headers, verifier.max_token_bytes())? {
            Some(raw) => Some(verifier.verify_for(raw, memo).await?),
            None if verifier.required() => return Err(AuthError::Missing.into()),
            None => None,
        }
    } else {
        None
    };

    let key = match &cfg.api_key {
        Some(k) => match presented_key(&parts.headers, k)? {
            Some(raw) => match keys
                .check(parse(raw).map_err(|_| KeyRefusal::Malformed)?)
                .await
            {
                Ok(grant) => Some(grant),
                Err(KeyFailure::Refused(r)) => return Err(r.into()),
                Err(KeyFailure::Unavailable) => return Err(IdentifyError::KeyLookup),
            },
            None => None,
        },
        None => None,
    };

    let mut chosen: Option<(TenantId, TenantSource)> = None;
    for &source in &cfg.sources {
        let found = match source {
            TenantSource::Jwt => token.as_ref().and_then(|t| t.tenant),
            TenantSource::Subdomain => match request_host(parts) {
                Some(host) => tenant_from_host(host, &cfg.base_domains)?,
                None => None,
            },
            TenantSource::Header => header_tenant(parts, peer, cfg)?,
            TenantSource::ApiKey => key.as_ref().map(|k| k.tenant),
        };
        let Some(found) = found else { continue };
        match chosen {
            None => chosen = Some((found, source)),
            Some((first, first_source)) if first != found => {
                return Err(TenantError::Mismatch {
                    a: first_source.as_str(),
                    b: source.as_str(),
                }
                .into());
            }
            Some(_) => {}
        }
    }
    if let (Some((tenant, source)), Some(t)) = (&chosen, &token) {
        // A token naming another tenant is refused even when the jwt source is off.
        if let Some(claimed) = &t.tenant
            && claimed != tenant
        {
            return Err(TenantError::Mismatch {
                a: source.as_str(),
                b: TenantSource::Jwt.as_str(),
            }
            .into());
        }
        if !t.issuer.allows(tenant) {
            return Err(AuthError::IssuerNotAllowed.into());
        }
    }
    match chosen {
        Some((tenant, source)) => Ok(Identity {
            tenant,
            source,
            token,
            key,
        }),
        // A client that could have identified itself with a token but sent none is told so.
        None if token.is_none() && cfg.sources.contains(&TenantSource::Jwt) => {
            Err(AuthError::Missing.into())
        }
        // ...or with a key.
        None if key.is_none() && cfg.sources.contains(&TenantSource::ApiKey) => {
            Err(KeyRefusal::Missing.into())
        }
        None => Err(TenantError::Missing.into()),
    }
}

fn header_tenant(
    parts: &Parts,
    peer: IpAddr,
    cfg: &TenantConfig,
) -> Result<Option<TenantId>, TenantError> {
    let Some(rule) = &cfg.header else {
        return Ok(None);
    };
    // From an untrusted peer the header is ignored here and stripped before forwarding.
    // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d; compare it as IPv4.
    let peer = peer.to_canonical();
    if !rule.trusted_sources.iter().any(|net| net.contains(&peer)) {
        return Ok(None);
    }
    match parts.headers.get(&rule.name) {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| TenantError::Invalid("header is not ASCII"))?;
            TenantId::parse(s).map(Some)
        }
    }
}

#[cfg(test)]
mod tests;
