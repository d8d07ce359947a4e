//! The part of a bearer token read before any key is chosen: its shape, its JOSE header and
//! the `iss` claim that picks the issuer.
//!
//! Called by [`super::Verifier`] at the start of every cold verification, and kept a plain
//! function of the token text so the fuzz targets and property tests can drive it without a
//! verifier, keys or a runtime. Nothing read here is trusted yet: it only decides which
//! issuer's rules the token is checked against, and the signature check that follows covers
//! every byte of the header and claims.

use jsonwebtoken::Header;
use serde::Deserialize;

use super::Reason;

/// What a token says about itself before its signature is checked.
#[derive(Debug)]
pub struct TokenHead {
    /// The decoded JOSE header (`alg` is one jsonwebtoken knows; `none` never parses).
    pub header: Header,
    /// The `iss` claim, which names the issuer whose keys and rules apply.
    pub iss: String,
}

/// The part of the claims read before the signature is checked, only to pick the issuer.
/// `iss` must be one string; a duplicated `iss` fails to parse.
#[derive(Deserialize)]
struct Peek {
    iss: Option<String>,
}

/// Reads a compact JWS up to the issuer: three base64url segments, a header that decodes
/// with an algorithm jsonwebtoken knows (so `alg: none` and unknown names are
/// [`Reason::Malformed`]), no `crit` ([`Reason::CriticalHeader`]), and claims carrying one
/// string `iss` ([`Reason::ClaimMissing`] when absent). The order of the checks is the order of
/// the reasons a client sees.
pub fn read_head(token: &str) -> Result<TokenHead, Reason> {
    if !well_formed(token) {
        return Err(Reason::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::Malformed)?;
    if header.crit.is_some() {
        return Err(Reason::CriticalHeader);
    }
    let peek: Peek =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| Reason::Malformed)?;
    let iss = peek.iss.ok_or(Reason::ClaimMissing)?;
    Ok(TokenHead { header, iss })
}

/// Three base64url segments (header, claims, signature) and nothing else.
#[must_use]
pub fn well_formed(token: &str) -> bool {
    let mut dots = 0;
    for &b in token.as_bytes() {
        match b {
            b'.' => dots += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            _ => return false,
        }
    }
    dots == 2
}
