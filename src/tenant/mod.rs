//! Tenant identity: the [`TenantId`] newtype, where an id may come from, and reading one from
//! a host name. It imports nothing of ours; the *identify* stage ([`crate::identify`]) asks it.
//! A tenant id is validated (length, charset) before it is used for anything, so a lookup
//! never sees attacker-shaped keys. `TenantId` lives inline (no heap),
//! so extracting one on the request path costs a copy of at most 63 bytes.

use std::fmt;

/// Longest tenant id accepted (a DNS label's limit, so every id can also be a subdomain).
pub const MAX_TENANT_LEN: usize = 63;

/// Where a tenant id may come from, listed in `tenant.sources` in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    /// A claim of a verified JWT.
    Jwt,
    /// The left-most label of the Host, under a configured base domain.
    Subdomain,
    /// A header, honoured only from trusted source addresses.
    Header,
    /// An API key, checked against the hash its registry record holds.
    ApiKey,
}

impl TenantSource {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Subdomain => "subdomain",
            Self::Header => "header",
            Self::ApiKey => "api_key",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant id is invalid: {0}")]
    Invalid(&'static str),
    #[error("tenant named by {a} differs from tenant named by {b}")]
    Mismatch { a: &'static str, b: &'static str },
    #[error("no tenant could be determined from the request")]
    Missing,
}

/// A validated tenant id: 1..=63 bytes of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId {
    len: u8,
    buf: [u8; MAX_TENANT_LEN],
}

impl TenantId {
    /// Validates an id exactly as given (ids are case-sensitive outside of host names).
    pub fn parse(s: &str) -> Result<Self, TenantError> {
        Self::build(s.as_bytes(), false)
    }

    /// Validates a host label, folding ASCII case first (host names are case-insensitive).
    pub fn from_host_label(label: &[u8]) -> Result<Self, TenantError> {
        Self::build(label, true)
    }

    fn build(src: &[u8], fold: bool) -> Result<Self, TenantError> {
        if src.is_empty() {
            return Err(TenantError::Invalid("empty"));
        }
        if src.len() > MAX_TENANT_LEN {
            return Err(TenantError::Invalid("longer than 63 characters"));
        }
        let mut buf = [0u8; MAX_TENANT_LEN];
        for (slot, &b) in buf.iter_mut().zip(src) {
            let b = if fold { b.to_ascii_lowercase() } else { b };
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return Err(TenantError::Invalid(
                    "only a-z, 0-9, '-' and '_' are allowed",
                ));
            }
            *slot = b;
        }
        if !buf[0].is_ascii_alphanumeric() {
            return Err(TenantError::Invalid("must start with a letter or digit"));
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "length checked against MAX_TENANT_LEN above"
        )]
        let len = src.len() as u8;
        Ok(Self { len, buf })
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this cannot fail.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.as_str())
    }
}

/// Strips an optional `:port` from a Host value (IPv6 literals in brackets are kept whole).
#[must_use]
pub fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

/// The tenant named by the left-most label of `host` when the rest is one of `base_domains`
/// (lower-case, without leading dot). `Ok(None)` when the host is not under any base domain or
/// is a base domain itself; an error when the label is not a valid id or more than one label
/// sits above the base domain.
pub fn tenant_from_host(
    host: &[u8],
    base_domains: &[String],
) -> Result<Option<TenantId>, TenantError> {
    let host = host_without_port(host);
    let host = host.strip_suffix(b".").unwrap_or(host);
    // A host that is itself a base domain names no tenant, even if it sits under a shorter one.
    if base_domains
        .iter()
        .any(|b| host.eq_ignore_ascii_case(b.as_bytes()))
    {
        return Ok(None);
    }
    for base in base_domains {
        let base = base.as_bytes();
        if host.len() <= base.len() + 1 {
            continue;
        }
        let split = host.len() - base.len();
        if host[split - 1] != b'.' || !host[split..].eq_ignore_ascii_case(base) {
            continue;
        }
        let label = &host[..split - 1];
        if label.contains(&b'.') {
            return Err(TenantError::Invalid(
                "more than one label above the base domain",
            ));
        }
        return TenantId::from_host_label(label).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
