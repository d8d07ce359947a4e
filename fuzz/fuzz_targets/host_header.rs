//! The host a request addresses, from arbitrary bytes split into a request-target authority
//! and a `Host` header (`identify::request_host`, `request_host_value`, `hygiene::check`):
//! the host forwarded to the cell is the host the tenant was read from, and a head that passes
//! hygiene names the same tenant whether it is read from the authority or from `Host`.
#![no_main]

use cellgate::config::HeaderUnderscores;
use cellgate::hygiene;
use cellgate::identify::{request_host, request_host_value};
use cellgate::tenant::tenant_from_host;
use http::{HeaderValue, Version, header::HOST, uri::Authority};
use libfuzzer_sys::fuzz_target;

const BASES: [&str; 2] = ["eu.example.com", "example.com"];

fuzz_target!(|data: &[u8]| {
    // First byte: where the authority ends (0: none) and which HTTP version.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split >> 2).min(rest.len());
    let (authority, host) = rest.split_at(at);
    let version = [
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_11,
    ][usize::from(split & 3)];
    let mut b = http::Request::builder().version(version);
    if at > 0 {
        let Ok(a) = Authority::try_from(authority) else {
            return;
        };
        b = b.uri(format!("http://{a}/"));
    }
    if let Ok(v) = HeaderValue::from_bytes(host) {
        b = b.header(HOST, v);
    }
    let Ok(req) = b.body(()) else { return };
    let parts = req.into_parts().0;

    let read = request_host(&parts);
    let forwarded = request_host_value(&parts);
    assert_eq!(forwarded.as_ref().map(HeaderValue::as_bytes), read);

    let bases: Vec<String> = BASES.iter().map(|b| (*b).to_owned()).collect();
    if hygiene::check(&parts, HeaderUnderscores::Reject).is_ok()
        && let (Some(a), Some(h)) = (parts.uri.authority(), parts.headers.get(HOST))
    {
        let from_authority = tenant_from_host(a.as_str().as_bytes(), &bases);
        let from_host = tenant_from_host(h.as_bytes(), &bases);
        assert_eq!(from_authority, from_host);
    }
});
