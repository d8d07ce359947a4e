//! The bearer token and the JWT header read before any key is chosen (`auth::bearer_token`,
//! `auth::read_head`, `auth::valid_kid`): arbitrary text never panics, `alg: none` and unknown
//! algorithms never parse, `crit` is refused, and a well-formed header reads back as written.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cellgate::auth::keys::{alg_name, parse_alg};
use cellgate::auth::{AuthError, Reason, bearer_token, read_head, valid_kid};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

const ALGS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn token(header: &Value, claims: &Value, sig: &str) -> String {
    let enc = |v: &Value| B64.encode(v.to_string());
    format!("{}.{}.{sig}", enc(header), enc(claims))
}

/// A JSON value of a few levels (what a hostile header or claims segment could hold).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::from),
            vec(("(alg|typ|kid|crit|iss|jwk|x5c|[a-z]{1,4})", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An algorithm name jsonwebtoken must not parse: `none` in any case, near misses of real
/// names, and arbitrary text.
fn bad_alg() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("none".to_owned()),
        Just("None".to_owned()),
        Just("NONE".to_owned()),
        select(&ALGS[..]).prop_map(|a| a.to_ascii_lowercase()),
        select(&ALGS[..]).prop_map(|a| format!("{a} ")),
        "[A-Za-z0-9+_-]{0,10}",
    ]
    .prop_filter("a real name", |a| !ALGS.contains(&a.as_str()))
}

proptest! {
    #![proptest_config(crate::cases(512))]

    #[test]
    fn arbitrary_text_never_panics_and_only_three_segments_pass(
        text in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_.=+/-]{0,120}",
            (json_value(), json_value(), "[A-Za-z0-9_-]{0,20}")
                .prop_map(|(h, c, s)| token(&h, &c, &s)),
        ],
    ) {
        if let Ok(head) = read_head(&text) {
            prop_assert_eq!(text.split('.').count(), 3);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            prop_assert!(head.header.crit.is_none());
            let alg = head.header.alg;
            prop_assert_eq!(parse_alg(alg_name(alg)), Ok(alg));
        }
    }

    #[test]
    fn a_known_alg_reads_back_as_written(
        alg in select(&ALGS[..]),
        kid in proptest::option::of(".{0,20}"),
        typ in proptest::option::of("[A-Za-z]{0,6}"),
        iss in ".{0,30}",
        extra in json_value(),
    ) {
        let mut h = json!({ "alg": alg });
        if let Some(k) = &kid { h["kid"] = json!(k); }
        if let Some(t) = &typ { h["typ"] = json!(t); }
        let head = read_head(&token(&h, &json!({ "iss": iss, "x": extra }), "c2ln")).unwrap();
        prop_assert_eq!(alg_name(head.header.alg), alg);
        prop_assert_eq!(head.header.kid, kid);
        prop_assert_eq!(head.header.typ, typ);
        prop_assert_eq!(head.iss, iss);
    }

    #[test]
    fn none_and_unknown_algs_never_parse(alg in bad_alg(), sig in "[A-Za-z0-9_-]{0,12}") {
        let t = token(&json!({ "alg": alg, "typ": "JWT" }), &json!({ "iss": "https://idp" }), &sig);
        prop_assert_eq!(read_head(&t).err(), Some(Reason::Malformed));
        prop_assert!(parse_alg(&alg).is_err());
    }

    #[test]
    fn crit_is_refused_and_iss_is_required(alg in select(&ALGS[..]), crit in vec("[a-z]{1,8}", 0..3)) {
        let claims = json!({ "iss": "https://idp" });
        let t = token(&json!({ "alg": alg, "crit": crit }), &claims, "c2ln");
        prop_assert_eq!(read_head(&t).err(), Some(Reason::CriticalHeader));
        let t = token(&json!({ "alg": alg }), &json!({ "sub": "x" }), "c2ln");
        prop_assert_eq!(read_head(&t).err(), Some(Reason::ClaimMissing));
    }

    #[test]
    fn a_bearer_token_is_trimmed_non_empty_and_within_the_limit(
        value in prop_oneof![
            vec(any::<u8>(), 0..80),
            "(?i:bearer)[ \t]{1,3}[A-Za-z0-9._-]{0,60}[ \t]{0,2}".prop_map(String::into_bytes),
            "(?i:basic|bearer|token)( [ -~]{0,40})?".prop_map(String::into_bytes),
        ],
        max in 16usize..128,
    ) {
        let Ok(v) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, v.clone());
        match bearer_token(&headers, max) {
            Ok(Some(t)) => {
                prop_assert!(value.len() <= max);
                prop_assert!(!t.is_empty() && t.trim() == t);
                prop_assert!(value[..6].eq_ignore_ascii_case(b"bearer"));
                prop_assert!(matches!(value[6], b' ' | b'\t'));
                prop_assert!(value.windows(t.len()).any(|w| w == t.as_bytes()));
            }
            Ok(None) => prop_assert!(!value.get(..6).is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
                || value.get(6).is_some_and(|b| !matches!(b, b' ' | b'\t'))),
            Err(AuthError::TooLarge(m)) => prop_assert!(value.len() > max && m == max),
            Err(AuthError::Missing | AuthError::Invalid(Reason::Malformed)) => {}
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        headers.append(AUTHORIZATION, v);
        prop_assert_eq!(bearer_token(&headers, max), Err(AuthError::Duplicate));
    }

    #[test]
    fn a_kid_that_passes_is_safe_to_look_up_and_log(kid in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9._=+/:-]{0,140}",
    ]) {
        if valid_kid(&kid) {
            prop_assert!((1..=128).contains(&kid.len()));
            prop_assert!(!kid.contains("..") && !kid.starts_with(['/', '.']));
            prop_assert!(kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.=+/:".contains(&b)));
        } else {
            let clean = (1..=128).contains(&kid.len())
                && !kid.contains("..")
                && !kid.starts_with(['/', '.'])
                && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.=+/:".contains(&b));
            prop_assert!(!clean, "{kid:?} refused");
        }
    }
}
