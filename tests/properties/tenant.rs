//! Tenant extraction from the Host (the *identify* stage's subdomain source) and the host
//! helpers around it: a tenant comes only from exactly one valid label above a base domain,
//! case folded, port and trailing dot ignored.

use std::net::Ipv6Addr;

use cellgate::identify::{request_host, request_host_value};
use cellgate::tenant::{
    MAX_TENANT_LEN, TenantError, TenantId, host_without_port, tenant_from_host,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Base domains as the config keeps them: lower-case, longest first.
const BASES: [&str; 4] = ["eu.example.com", "example.com", "app.test", "localhost"];

fn bases() -> Vec<String> {
    BASES.iter().map(|b| (*b).to_owned()).collect()
}

/// A valid tenant id, which is also a valid host label.
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,62}"
}

/// `s` with the ASCII letters at the positions `mask` marks upper-cased.
fn mixed_case(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().chain(std::iter::repeat(&false)))
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

fn suffix(dot: bool, port: Option<u16>) -> String {
    let dot = if dot { "." } else { "" };
    port.map_or_else(|| dot.to_owned(), |p| format!("{dot}:{p}"))
}

/// Bytes that may never appear in a tenant label (`.` and `:` are separators, not labels).
const BAD: &[u8] = b" !\"#$%&'()*+,/;<=>?@[\\]^`{|}~\x00\x09\x7f\xc3\xff";

proptest! {
    #![proptest_config(crate::cases(512))]

    #[test]
    fn a_label_above_a_base_domain_is_the_tenant(
        label in label(),
        base in select(&BASES[..]),
        mask in vec(any::<bool>(), 0..100),
        dot in any::<bool>(),
        port in proptest::option::of(any::<u16>()),
    ) {
        let host = mixed_case(&format!("{label}.{base}{}", suffix(dot, port)), &mask);
        // `eu` above `example.com` is the base domain `eu.example.com`: no tenant.
        let want = if BASES.contains(&format!("{label}.{base}").as_str()) {
            None
        } else {
            Some(TenantId::parse(&label).unwrap())
        };
        prop_assert_eq!(tenant_from_host(host.as_bytes(), &bases()), Ok(want));
    }

    #[test]
    fn more_than_one_label_above_a_base_domain_is_refused(
        a in label(),
        b in label(),
        base in select(&BASES[..]),
    ) {
        let host = format!("{a}.{b}.{base}");
        let got = tenant_from_host(host.as_bytes(), &bases());
        if BASES.contains(&format!("{b}.{base}").as_str()) {
            // `a.eu.example.com`: one label above the more specific base domain.
            prop_assert_eq!(got, Ok(Some(TenantId::parse(&a).unwrap())));
        } else {
            prop_assert!(matches!(got, Err(TenantError::Invalid(_))), "{host}: {got:?}");
        }
    }

    #[test]
    fn a_label_with_a_foreign_byte_or_too_long_is_refused(
        label in label(),
        at in any::<usize>(),
        bad in select(BAD),
        long in "[a-z0-9]{64,80}",
        base in select(&BASES[..]),
    ) {
        let mut bytes = label.into_bytes();
        bytes.insert(at % (bytes.len() + 1), bad);
        for l in [bytes, long.into_bytes()] {
            let host = [&l[..], b".", base.as_bytes()].concat();
            let got = tenant_from_host(&host, &bases());
            prop_assert!(matches!(got, Err(TenantError::Invalid(_))), "{host:?}: {got:?}");
        }
    }

    #[test]
    fn any_tenant_found_is_a_lower_case_label_of_the_host(
        host in prop_oneof![
            vec(any::<u8>(), 0..80),
            "[a-zA-Z0-9._:\\[\\]-]{0,30}\\.(example\\.com|EU\\.example\\.com|app\\.test)\\.?(:[0-9]{0,6})?"
                .prop_map(String::into_bytes),
        ],
    ) {
        if let Ok(Some(t)) = tenant_from_host(&host, &bases()) {
            let s = t.as_str();
            prop_assert!(!s.is_empty() && s.len() <= MAX_TENANT_LEN);
            prop_assert!(!s.bytes().any(|b| b.is_ascii_uppercase()), "{s}");
            prop_assert_eq!(TenantId::parse(s), Ok(t));
            let bare = host_without_port(&host);
            let bare = bare.strip_suffix(b".").unwrap_or(bare).to_ascii_lowercase();
            let named = BASES.iter().any(|b| bare == format!("{s}.{b}").into_bytes());
            prop_assert!(named, "{:?} -> {s}", String::from_utf8_lossy(&host));
        }
    }

    #[test]
    fn host_labels_fold_case_but_header_ids_do_not(label in label(), mask in vec(any::<bool>(), 0..63)) {
        let mixed = mixed_case(&label, &mask);
        let id = TenantId::parse(&label).unwrap();
        prop_assert_eq!(TenantId::from_host_label(mixed.as_bytes()), Ok(id));
        prop_assert_eq!(TenantId::parse(&mixed).is_ok(), mixed == label);
    }

    #[test]
    fn ports_are_stripped_and_nothing_else(
        name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
        v6 in any::<Ipv6Addr>(),
        port in any::<u16>(),
        noise in vec(any::<u8>(), 0..40),
    ) {
        let strip = |h: &str| host_without_port(h.as_bytes()).to_vec();
        prop_assert_eq!(strip(&name), name.as_bytes());
        prop_assert_eq!(strip(&format!("{name}:{port}")), name.as_bytes());
        prop_assert_eq!(strip(&format!("[{v6}]")), format!("[{v6}]").into_bytes());
        prop_assert_eq!(strip(&format!("[{v6}]:{port}")), format!("[{v6}]").into_bytes());
        // Arbitrary bytes: never a panic, always a prefix of the input.
        prop_assert!(noise.starts_with(host_without_port(&noise)));
    }

    #[test]
    fn the_host_forwarded_is_the_host_the_tenant_was_read_from(
        host in proptest::option::of(vec(any::<u8>(), 0..40)),
        authority in proptest::option::of("[a-zA-Z0-9.-]{1,20}(:[0-9]{1,5})?"),
    ) {
        let mut b = http::Request::builder();
        if let Some(a) = &authority {
            b = b.uri(format!("http://{a}/x"));
        }
        if let Some(v) = host.as_deref().and_then(|h| http::HeaderValue::from_bytes(h).ok()) {
            b = b.header(http::header::HOST, v);
        }
        let Ok(req) = b.body(()) else { return Ok(()) };
        let parts = req.into_parts().0;
        let value = request_host_value(&parts);
        prop_assert_eq!(value.as_ref().map(http::HeaderValue::as_bytes), request_host(&parts));
    }
}
