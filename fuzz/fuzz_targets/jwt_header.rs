//! A bearer token and its JWT header from arbitrary text (`auth::bearer_token`,
//! `auth::read_head`, `auth::valid_kid`: everything read before a key is chosen): never a
//! panic, only three base64url segments pass, no `crit`, an `alg` cellgate can name, and a
//! bearer token that is trimmed, non-empty and within the size limit.
#![no_main]

use cellgate::auth::keys::{alg_name, parse_alg};
use cellgate::auth::{bearer_token, read_head, valid_kid};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 8192;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, v);
        if let Ok(Some(t)) = bearer_token(&headers, MAX) {
            assert!(!t.is_empty() && t.trim() == t && data.len() <= MAX);
            assert!(data.len() > 6 && data[..6].eq_ignore_ascii_case(b"bearer"));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(head) = read_head(text) {
        assert_eq!(text.split('.').count(), 3);
        assert!(head.header.crit.is_none());
        assert_eq!(parse_alg(alg_name(head.header.alg)), Ok(head.header.alg));
        if let Some(kid) = &head.header.kid
            && valid_kid(kid)
        {
            assert!(!kid.contains("..") && kid.len() <= 128);
        }
    }
});
