//! Reading the bearer token from the Authorization header.

use super::*;

use http::HeaderValue;

fn headers(auth: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_bytes(auth).unwrap(),
    );
    h
}

#[test]
fn bearer_token_extraction() {
    assert_eq!(bearer_token(&HeaderMap::new(), 8192), Ok(None));
    let h = |v: &str| headers(v.as_bytes());
    assert_eq!(
        bearer_token(&h("Bearer abc.def"), 8192),
        Ok(Some("abc.def"))
    );
    assert_eq!(bearer_token(&h("bearer  abc "), 8192), Ok(Some("abc")));
    assert_eq!(bearer_token(&h("Bearer\tabc"), 8192), Ok(Some("abc")));
    assert_eq!(bearer_token(&h("Basic dXNlcjpwdw=="), 8192), Ok(None));
    assert_eq!(bearer_token(&h("Bearer "), 8192), Err(AuthError::Missing));
    assert_eq!(
        bearer_token(&h("Bearer    "), 8192),
        Err(AuthError::Missing)
    );
    assert_eq!(bearer_token(&h("Bearer"), 8192), Err(AuthError::Missing));
    assert_eq!(bearer_token(&h("Negotiate"), 8192), Ok(None));
    let mut two = h("Bearer a.b.c");
    two.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer d.e.f"),
    );
    assert_eq!(bearer_token(&two, 8192), Err(AuthError::Duplicate));
}

#[test]
fn oversized_authorization_is_too_large() {
    let h = |v: String| headers(v.as_bytes());
    let at_limit = h(format!("Bearer {}", "a".repeat(256 - 7)));
    assert_eq!(
        bearer_token(&at_limit, 256).unwrap().map(str::len),
        Some(249)
    );
    let over = h(format!("Bearer {}", "a".repeat(256 - 6)));
    assert_eq!(bearer_token(&over, 256), Err(AuthError::TooLarge(256)));
    // Size is checked before the scheme.
    let basic = h(format!("Basic {}", "a".repeat(300)));
    assert_eq!(bearer_token(&basic, 256), Err(AuthError::TooLarge(256)));
}
