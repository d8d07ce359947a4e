//! Tenant extraction from arbitrary Host bytes (`tenant::tenant_from_host`, the *identify*
//! stage's subdomain source): never a panic, the port strip returns a prefix, and any tenant
//! found is a valid, lower-case id that is exactly the one label above a base domain.
#![no_main]

use cellgate::tenant::{MAX_TENANT_LEN, TenantId, host_without_port, tenant_from_host};
use libfuzzer_sys::fuzz_target;

/// Lower-case and longest first, as the config keeps them (`eu.example.com` nests).
const BASES: [&str; 4] = ["eu.example.com", "example.com", "app.test", "localhost"];

fuzz_target!(|host: &[u8]| {
    let bases: Vec<String> = BASES.iter().map(|b| (*b).to_owned()).collect();
    let bare = host_without_port(host);
    assert!(host.starts_with(bare));
    if let Ok(Some(t)) = tenant_from_host(host, &bases) {
        let s = t.as_str();
        assert!(!s.is_empty() && s.len() <= MAX_TENANT_LEN);
        assert!(!s.bytes().any(|b| b.is_ascii_uppercase()));
        assert_eq!(TenantId::parse(s), Ok(t));
        let bare = bare.strip_suffix(b".").unwrap_or(bare).to_ascii_lowercase();
        let named = BASES
            .iter()
            .any(|b| bare == [s.as_bytes(), b".", b.as_bytes()].concat());
        assert!(named, "{:?} gave {s}", String::from_utf8_lossy(host));
    }
});
