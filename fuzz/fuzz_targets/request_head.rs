//! The *hygiene* and *rewrite* stages over a request head built from arbitrary bytes
//! (`hygiene::check`, `proxy::rewrite::rewrite_request`): a head that passes has one host
//! (HTTP/1 framing is the desync classifier's: `desync_stream`), and after the rewrite the cell sees only the proxy's
//! values for the headers it vouches for and no hop-by-hop header.
#![no_main]

use cellgate::config::HeaderUnderscores;
use cellgate::headers::{
    HOP_BY_HOP, INTERNAL, X_CELL_ID, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_TENANT_ID,
};
use cellgate::hygiene;
use cellgate::proxy::rewrite::{rewrite_request, upgrade_requested};
use http::header::{CONNECTION, HOST, UPGRADE};
use http::{HeaderName, HeaderValue, Version};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "x-tenant-id",
    "x-forwarded-for",
    "forwarded",
    "x_tenant_id",
];

fn head(u: &mut Unstructured<'_>) -> Result<Option<http::request::Parts>> {
    let version = *u.choose(&[Version::HTTP_10, Version::HTTP_11, Version::HTTP_2])?;
    let mut b = http::Request::builder().version(version);
    if u.arbitrary()? {
        b = b.uri(format!("http://{}/", u.arbitrary::<&str>()?));
    }
    for _ in 0..u.int_in_range(0..=12)? {
        let name: &[u8] = if u.arbitrary()? {
            u.choose(NAMES)?.as_bytes()
        } else {
            u.arbitrary()?
        };
        let value: &[u8] = u.arbitrary()?;
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            b = b.header(n, v);
        }
    }
    Ok(b.body(()).ok().map(|r| r.into_parts().0))
}

fuzz_target!(|data: &[u8]| {
    let Ok(Some(parts)) = head(&mut Unstructured::new(data)) else {
        return;
    };
    let h = &parts.headers;
    if hygiene::check(&parts, HeaderUnderscores::Reject).is_ok() {
        assert!(h.get_all(HOST).iter().count() <= 1);
        assert!(!h.keys().any(|k| k.as_str().contains('_')));
    }

    let mut out = parts.headers.clone();
    let upgrade = upgrade_requested(&out);
    let tenant = HeaderValue::from_static("acme");
    let ff = HeaderValue::from_static("192.0.2.7");
    let (cell, id) = (
        HeaderValue::from_static("c1"),
        HeaderValue::from_static("r1"),
    );
    rewrite_request(
        &mut out,
        &[],
        &tenant,
        &cell,
        &id,
        &ff,
        true,
        None,
        upgrade.clone(),
    );
    assert!(out.get_all(X_TENANT_ID).iter().eq([&tenant]));
    assert!(out.get_all(X_FORWARDED_FOR).iter().eq([&ff]));
    assert!(
        out.get_all(X_FORWARDED_PROTO)
            .iter()
            .eq([&HeaderValue::from_static("https")])
    );
    for name in INTERNAL.iter().chain(&HOP_BY_HOP) {
        let set = [
            &X_TENANT_ID,
            &X_CELL_ID,
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
        ];
        let upgrade_pair = upgrade.is_some() && (*name == UPGRADE || *name == CONNECTION);
        if !set.contains(&name) && !upgrade_pair {
            assert!(!out.contains_key(name), "{name} reached the cell");
        }
    }
});
