//! `[auth]` and `[[auth.issuers]]`, validated: which issuers are trusted and how their tokens
//! are checked.
//!
//! Every issuer must say which audiences it accepts (`aud` is always required), have keys
//! (static, a JWKS URL, or both), and keep `leeway` within 5 minutes. Algorithms are an explicit
//! allow-list; by default the static keys' own algorithms plus, with a JWKS, every asymmetric
//! one. A JWKS URL must be https (http only for a loopback host).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::file::{FileAuth, FileIssuer, FileJwks};
use super::parse::{dur, dur_in_range, resolve};
use crate::auth::fetch::FetchUrl;
use crate::auth::keys::parse_alg;
use crate::auth::{
    AlgSet, AuthConfig, ClaimPath, ForwardClaim, IssuerConfig, JwksConfig, load_key,
};
use crate::rules::FieldError;
use crate::tenant::TenantId;

/// Whether a forwarded claim may be written to `name`: never a header the proxy sets or strips
/// itself (trusted, internal, hop-by-hop) nor one that frames or authenticates the request.
pub(super) fn reserved(name: &HeaderName) -> bool {
    use crate::headers::{HOP_BY_HOP, INTERNAL, X_REQUEST_ID};
    const OTHERS: [&str; 6] = [
        "host",
        "authorization",
        "content-length",
        "content-type",
        "cookie",
        "expect",
    ];
    INTERNAL.contains(name)
        || HOP_BY_HOP.contains(name)
        || *name == X_REQUEST_ID
        || OTHERS.contains(&name.as_str())
}

pub fn build_auth(a: &FileAuth, base: &Path) -> Result<AuthConfig, FieldError> {
    let max_token_bytes = a.max_token_bytes.unwrap_or(8192);
    if !(256..=65_536).contains(&max_token_bytes) {
        return Err(FieldError::new(
            "auth.max_token_bytes",
            max_token_bytes,
            "must be between 256 and 65536",
        ));
    }
    let cache_max_entries = a.cache_max_entries.unwrap_or(100_000);
    if cache_max_entries > 10_000_000 {
        return Err(FieldError::new(
            "auth.cache_max_entries",
            cache_max_entries,
            "at most 10000000 (0 turns the cache off)",
        ));
    }
    let cache_max_ttl = dur(
        "auth.cache_max_ttl",
        a.cache_max_ttl.as_ref(),
        Duration::from_secs(300),
    )?;
    dur_in_range(
        "auth.cache_max_ttl",
        cache_max_ttl,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )?;

    let mut forward_claims: Vec<ForwardClaim> = Vec::with_capacity(a.forward_claims.len());
    for (i, f) in a.forward_claims.iter().enumerate() {
        let claim = ClaimPath::parse(&f.claim).map_err(|reason| {
            FieldError::new(format!("auth.forward_claims[{i}].claim"), &f.claim, reason)
        })?;
        let key = format!("auth.forward_claims[{i}].header");
        let header = HeaderName::from_bytes(f.header.to_ascii_lowercase().as_bytes())
            .map_err(|_| FieldError::new(&key, &f.header, "not a valid header name"))?;
        if reserved(&header) {
            return Err(FieldError::new(
                key,
                &f.header,
                "reserved: forwarded claims may not replace this header",
            ));
        }
        if forward_claims.iter().any(|c| c.header == header) {
            return Err(FieldError::new(key, &f.header, "used twice"));
        }
        forward_claims.push(ForwardClaim { claim, header });
    }

    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(a.issuers.len());
    for (i, raw) in a.issuers.iter().enumerate() {
        let ic = build_issuer(raw, base, &format!("auth.issuers[{i}]"))?;
        if issuers.iter().any(|o| o.issuer == ic.issuer) {
            return Err(FieldError::new(
                format!("auth.issuers[{i}].issuer"),
                &ic.issuer,
                "listed twice",
            ));
        }
        if issuers.iter().any(|o| o.name == ic.name) {
            return Err(FieldError::new(
                format!("auth.issuers[{i}].name"),
                &ic.name,
                "used twice",
            ));
        }
        issuers.push(ic);
    }
    let required = a.required.unwrap_or(false);
    if required && issuers.is_empty() {
        return Err(FieldError::new(
            "auth.required",
            true,
            "a required token needs at least one [[auth.issuers]] entry",
        ));
    }
    Ok(AuthConfig {
        required,
        max_token_bytes,
        cache_max_entries,
        cache_max_ttl,
        forward_claims,
        issuers,
        arm_claim: None,
        scope_claim: None,
    })
}

fn build_issuer(raw: &FileIssuer, base: &Path, key: &str) -> Result<IssuerConfig, FieldError> {
    if raw.issuer.is_empty() || raw.issuer.len() > 512 {
        return Err(FieldError::new(
            format!("{key}.issuer"),
            &raw.issuer,
            "the exact `iss` value, 1-512 characters",
        ));
    }
    let name = raw.name.clone().unwrap_or_else(|| raw.issuer.clone());
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(FieldError::new(
            format!("{key}.name"),
            &name,
            "1-128 printable characters",
        ));
    }
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        return Err(FieldError::new(
            format!("{key}.audiences"),
            format!("{:?}", raw.audiences),
            "list the audiences this proxy accepts: `aud` is always required",
        ));
    }
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (j, k) in raw.keys.iter().enumerate() {
        keys.push(load_key(k, base, &format!("{key}.keys[{j}]"))?);
    }
    for (j, k) in keys.iter().enumerate() {
        if k.kid.is_some() && keys[..j].iter().any(|o| o.kid == k.kid) {
            return Err(FieldError::new(
                format!("{key}.keys[{j}].kid"),
                k.kid.as_deref().unwrap_or_default(),
                "used twice",
            ));
        }
    }
    let jwks = raw
        .jwks
        .as_ref()
        .map(|j| build_jwks(j, base, &format!("{key}.jwks")))
        .transpose()?;
    if keys.is_empty() && jwks.is_none() {
        return Err(FieldError::new(
            format!("{key}.keys"),
            "[]",
            "an issuer needs [[...keys]], a [...jwks] table, or both",
        ));
    }
    let from_keys = keys
        .iter()
        .fold(AlgSet::default(), |s, k| s.union(k.algorithms));
    let algorithms = match &raw.algorithms {
        None if jwks.is_some() => from_keys.union(AlgSet::ASYMMETRIC),
        None => from_keys,
        Some(names) => {
            let mut set = AlgSet::default();
            for (j, n) in names.iter().enumerate() {
                let alg = parse_alg(n).map_err(|reason| {
                    FieldError::new(format!("{key}.algorithms[{j}]"), n, reason)
                })?;
                set = set.union(AlgSet::one(alg));
            }
            if set.is_empty() {
                return Err(FieldError::new(
                    format!("{key}.algorithms"),
                    "[]",
                    "name at least one algorithm",
                ));
            }
            for (j, k) in keys.iter().enumerate() {
                if k.algorithms.intersect(set).is_empty() {
                    return Err(FieldError::new(
                        format!("{key}.keys[{j}].algorithm"),
                        k.algorithms.names().join(","),
                        "not in this issuer's algorithms list",
                    ));
                }
            }
            if !set.intersect(AlgSet::HMAC).is_empty()
                && from_keys.intersect(AlgSet::HMAC).is_empty()
            {
                return Err(FieldError::new(
                    format!("{key}.algorithms"),
                    set.names().join(","),
                    "HMAC algorithms need a static key with secret_env (never from a JWKS)",
                ));
            }
            set
        }
    };
    let tenant_claim_raw = raw.tenant_claim.as_deref().unwrap_or("tenant");
    let tenant_claim = ClaimPath::parse(tenant_claim_raw).map_err(|reason| {
        FieldError::new(format!("{key}.tenant_claim"), tenant_claim_raw, reason)
    })?;
    let leeway = dur(
        &format!("{key}.leeway"),
        raw.leeway.as_ref(),
        Duration::from_secs(60),
    )?;
    if leeway > Duration::from_secs(300) {
        return Err(FieldError::new(
            format!("{key}.leeway"),
            humantime::format_duration(leeway),
            "at most 5m",
        ));
    }
    let mut required_claims = Vec::with_capacity(raw.required_claims.len());
    for (j, c) in raw.required_claims.iter().enumerate() {
        required_claims.push(
            ClaimPath::parse(c).map_err(|reason| {
                FieldError::new(format!("{key}.required_claims[{j}]"), c, reason)
            })?,
        );
    }
    if let Some(t) = &raw.typ
        && (t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(FieldError::new(
            format!("{key}.typ"),
            t,
            "a media type such as \"JWT\" or \"at+jwt\"",
        ));
    }
    let tenants = match &raw.tenants {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (j, t) in list.iter().enumerate() {
                out.push(TenantId::parse(t).map_err(|e| {
                    FieldError::new(format!("{key}.tenants[{j}]"), t, e.to_string())
                })?);
            }
            Some(out)
        }
    };
    Ok(IssuerConfig {
        name: Arc::from(name),
        issuer: Arc::from(raw.issuer.as_str()),
        audiences: raw.audiences.clone(),
        algorithms,
        tenant_claim,
        tenant_claim_required: raw.tenant_claim_required.unwrap_or(true),
        leeway,
        required_claims,
        typ: raw.typ.clone(),
        tenants,
        jwks,
        keys,
    })
}

fn build_jwks(j: &FileJwks, base: &Path, key: &str) -> Result<JwksConfig, FieldError> {
    let url = FetchUrl::parse(&j.url)
        .map_err(|reason| FieldError::new(format!("{key}.url"), &j.url, reason))?;
    let ca_file = j.ca_file.as_deref().map(|p| resolve(base, p));
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        return Err(FieldError::new(
            format!("{key}.ca_file"),
            p.display(),
            "file not found",
        ));
    }
    let refresh = dur(
        &format!("{key}.refresh"),
        j.refresh.as_ref(),
        Duration::from_secs(600),
    )?;
    dur_in_range(
        &format!("{key}.refresh"),
        refresh,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    )?;
    let cooldown = dur(
        &format!("{key}.cooldown"),
        j.cooldown.as_ref(),
        Duration::from_secs(30),
    )?;
    dur_in_range(
        &format!("{key}.cooldown"),
        cooldown,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )?;
    let timeout = dur(
        &format!("{key}.timeout"),
        j.timeout.as_ref(),
        Duration::from_secs(5),
    )?;
    dur_in_range(
        &format!("{key}.timeout"),
        timeout,
        Duration::from_secs(1),
        Duration::from_secs(60),
    )?;
    let max_keys = j.max_keys.unwrap_or(64);
    if !(1..=1000).contains(&max_keys) {
        return Err(FieldError::new(
            format!("{key}.max_keys"),
            max_keys,
            "must be between 1 and 1000",
        ));
    }
    let max_bytes = j.max_bytes.unwrap_or(256 * 1024);
    if !(1024..=4 * 1024 * 1024).contains(&max_bytes) {
        return Err(FieldError::new(
            format!("{key}.max_bytes"),
            max_bytes,
            "must be between 1024 and 4194304",
        ));
    }
    Ok(JwksConfig {
        url,
        ca_file,
        refresh,
        cooldown,
        timeout,
        max_keys,
        max_bytes,
    })
}
