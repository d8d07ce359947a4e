//! Reading the bearer token from `Authorization`: one field, size-checked before anything
//! decodes it.

use http::HeaderMap;

use super::{AuthError, Reason};

/// The bearer token in `Authorization`, if any. The header is size-checked before anything
/// decodes it. Another scheme (`Basic ...`) is not ours to judge: it counts as no token and
/// travels on to the cell.
pub fn bearer_token(headers: &HeaderMap, max_bytes: usize) -> Result<Option<&str>, AuthError> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(None);
    };
    // `Authorization` is not a list (RFC 9110 §11.6.2): a second field is refused, never
    // forwarded beside the one that was verified.
    if all.next().is_some() {
        return Err(AuthError::Duplicate);
    }
    let bytes = value.as_bytes();
    if bytes.len() > max_bytes {
        return Err(AuthError::TooLarge(max_bytes));
    }
    let Some(scheme_end) = bytes.iter().position(|&b| b == b' ' || b == b'\t') else {
        // `Bearer` alone is a bearer token with nothing in it, not another scheme.
        return if bytes.eq_ignore_ascii_case(b"bearer") {
            Err(AuthError::Missing)
        } else {
            Ok(None)
        };
    };
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let token = std::str::from_utf8(&bytes[scheme_end + 1..])
        .map_err(|_| AuthError::Invalid(Reason::Malformed))?
        .trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(Some(token))
}
