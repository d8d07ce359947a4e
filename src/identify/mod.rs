//! The *identify* stage: which tenant does this request belong to, and who says so.
//!
//! Each configured source is asked in `tenant.sources` order; the first that names a tenant
//! wins, and any other source naming a *different* tenant makes the request a 403 (a token for
//! `acme` on `globex.app.example.com` is an attack or a bug, never a routing hint). A token's
//! issuer must also be allowed to speak for the tenant finally chosen (its `tenants` list), so
//! one tenant's IdP cannot mint tokens that reach another tenant, whichever source named it.

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;

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
}

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Auth(#[from] AuthError),
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
/// issuer's JWKS does not have yet (one bounded refetch); otherwise it completes at once.
/// `memo` is the client connection's last verified token.
pub async fn identify(
    parts: &Parts,
    peer: IpAddr,
    cfg: &TenantConfig,
    verifier: &Verifier,
    memo: &TokenMemo,
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

    let mut chosen: Option<(TenantId, TenantSource)> = None;
    for &source in &cfg.sources {
        let found = match source {
            TenantSource::Jwt => token.as_ref().and_then(|t| t.tenant),
            TenantSource::Subdomain => match request_host(parts) {
                Some(host) => tenant_from_host(host, &cfg.base_domains)?,
                None => None,
            },
            TenantSource::Header => header_tenant(parts, peer, cfg)?,
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
        }),
        // A client that could have identified itself with a token but sent none is told so.
        None if token.is_none() && cfg.sources.contains(&TenantSource::Jwt) => {
            Err(AuthError::Missing.into())
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
