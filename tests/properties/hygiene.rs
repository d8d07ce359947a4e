//! The *hygiene* and *rewrite* stages over arbitrary header lists: `hygiene::check` refuses
//! exactly the heads whose host two implementations could read differently (HTTP/1 framing is
//! the desync classifier's, `tests/properties/desync.rs`), and
//! `headers::rewrite_request` never lets a client-supplied internal or hop-by-hop header reach
//! the cell.

use cellgate::config::HeaderUnderscores;
use cellgate::headers::{
    HOP_BY_HOP, INTERNAL, X_CELL_ID, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
    X_REQUEST_ID, X_TENANT_ID,
};
use cellgate::hygiene::{Violation, check, drop_underscored};
use cellgate::proxy::rewrite::{rewrite_request, upgrade_requested};
use http::header::{CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Version};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const NAMES: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "x-tenant-id",
    "x-cell-id",
    "x-forwarded-for",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "proxy-authorization",
    "x-request-id",
    "authorization",
    "x_tenant_id",
    "x-debug",
    "cookie",
];

const VALUES: &[&str] = &[
    "chunked",
    "Chunked",
    "gzip, chunked",
    "chunked, identity",
    "identity",
    "12",
    "0",
    "-1",
    "+5",
    "1e3",
    "99999999999999999999",
    "acme.app.test",
    "ACME.app.test",
    "globex.app.test",
    "close",
    "upgrade",
    "Upgrade, keep-alive",
    "x-debug, cookie",
    "x-tenant-id",
    "websocket",
    "h2c",
    "",
];

/// A request head: version, optional request-target authority, and a header list.
type Head = (Version, Option<&'static str>, Vec<(String, String)>);

fn head() -> impl Strategy<Value = Head> {
    let name =
        prop_oneof![4 => select(NAMES).prop_map(str::to_owned), 1 => "[a-z][a-z0-9_-]{0,10}"];
    let value =
        prop_oneof![4 => select(VALUES).prop_map(str::to_owned), 1 => "[!-~]([ -~]{0,16}[!-~])?"];
    // Framing and host headers get their own draws (0, 1 or 2 of each), so every combination
    // of them is common rather than a coincidence of the general draw.
    let framing = |name: &'static str, values: &'static [&'static str]| {
        vec(
            select(values).prop_map(move |v| (name.to_owned(), v.to_owned())),
            0..3,
        )
    };
    (
        select(&[Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][..]),
        proptest::option::of(select(
            &["acme.app.test", "Acme.App.Test", "globex.app.test"][..],
        )),
        vec((name, value), 0..6),
        framing(
            "content-length",
            &[
                "0",
                "12",
                "007",
                "-1",
                "+5",
                "1e3",
                "99999999999999999999",
                "",
            ],
        ),
        framing(
            "transfer-encoding",
            &["chunked", "Chunked", "gzip, chunked", "identity"],
        ),
        framing(
            "host",
            &["acme.app.test", "ACME.app.test", "globex.app.test"],
        ),
    )
        .prop_flat_map(|(v, a, mut h, cl, te, host)| {
            h.extend(cl.into_iter().chain(te).chain(host));
            (Just(v), Just(a), Just(h).prop_shuffle())
        })
}

fn parts((version, authority, headers): &Head) -> Parts {
    let uri = authority.map_or_else(|| "/".to_owned(), |a| format!("https://{a}/"));
    let mut b = http::Request::builder().version(*version).uri(uri);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(()).unwrap().into_parts().0
}

fn values<'a>(h: &'a Head, name: &str) -> Vec<&'a str> {
    h.2.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The rules of `hygiene`, written as a table rather than as code over a `HeaderMap`.
fn expected(h: &Head, underscores: HeaderUnderscores) -> Result<(), Violation> {
    let hosts = values(h, "host");
    match (h.1, hosts.as_slice()) {
        (_, [_, _, ..]) => return Err(Violation::SeveralHosts),
        (Some(a), [v]) if !a.eq_ignore_ascii_case(v) => return Err(Violation::HostMismatch),
        (None, []) if h.0 == Version::HTTP_11 => return Err(Violation::HostMissing),
        _ => {}
    }
    if underscores == HeaderUnderscores::Reject && h.2.iter().any(|(k, _)| k.contains('_')) {
        return Err(Violation::Underscore);
    }
    Ok(())
}

fn hv(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

proptest! {
    #![proptest_config(crate::cases(1000))]

    #[test]
    fn check_refuses_exactly_the_ambiguous_heads(
        h in head(),
        underscores in select(&[HeaderUnderscores::Reject, HeaderUnderscores::Drop, HeaderUnderscores::Allow][..]),
    ) {
        prop_assert_eq!(check(&parts(&h), underscores), expected(&h, underscores), "{:?}", h);
    }

    #[test]
    fn a_clean_head_passes(
        h in head(),
        len in proptest::option::of(prop_oneof!["[0-9]{1,19}", Just("chunked".to_owned())]),
    ) {
        let framing = ["host", "content-length", "transfer-encoding"];
        let mut clean: Head = (Version::HTTP_11, None, h.2);
        clean.2.retain(|(k, _)| !framing.contains(&k.as_str()) && !k.contains('_'));
        clean.2.push(("host".into(), "acme.app.test".into()));
        match len {
            Some(v) if v == "chunked" => clean.2.push(("transfer-encoding".into(), v)),
            Some(v) => clean.2.push(("content-length".into(), v)),
            None => {}
        }
        prop_assert_eq!(check(&parts(&clean), HeaderUnderscores::Reject), Ok(()));
    }

    #[test]
    fn dropping_underscores_keeps_every_other_header(h in head()) {
        let mut map = parts(&h).headers;
        let before = map.clone();
        drop_underscored(&mut map);
        prop_assert!(!map.keys().any(|k| k.as_str().contains('_')));
        for k in before.keys().filter(|k| !k.as_str().contains('_')) {
            prop_assert!(map.get_all(k).iter().eq(before.get_all(k).iter()));
        }
    }

    #[test]
    fn rewrite_leaves_only_trusted_values_for_the_cell(
        h in head(),
        tls in any::<bool>(),
        host in proptest::option::of(select(&["acme.app.test", "acme.app.test:8443"][..])),
        strip in proptest::sample::subsequence(vec!["x-debug", "cookie", "authorization"], 0..3),
    ) {
        let strip: Vec<HeaderName> = strip.into_iter().map(HeaderName::from_static).collect();
        let client = parts(&h).headers;
        let mut out = client.clone();
        let upgrade = upgrade_requested(&client);
        let (tenant, cell, id, ff) = (hv("acme"), hv("cell-1"), hv("req-1"), hv("192.0.2.7"));
        let host = host.map(hv);
        rewrite_request(&mut out, &strip, &tenant, &cell, &id, &ff, tls, host.clone(), upgrade.clone());

        let only = |name: &HeaderName, want: Option<&HeaderValue>| {
            out.get_all(name).iter().eq(want.into_iter())
        };
        let proto = hv(if tls { "https" } else { "http" });
        for (name, want) in [
            (&X_TENANT_ID, Some(&tenant)),
            (&X_CELL_ID, Some(&cell)),
            (&X_REQUEST_ID, Some(&id)),
            (&X_FORWARDED_FOR, Some(&ff)),
            (&X_FORWARDED_PROTO, Some(&proto)),
            (&X_FORWARDED_HOST, host.as_ref()),
        ] {
            prop_assert!(only(name, want), "{name}: {:?}", out.get_all(name).iter().collect::<Vec<_>>());
        }
        // Every other internal, hop-by-hop or configured name is gone, except the upgrade pair.
        let set_by_proxy = [&X_TENANT_ID, &X_CELL_ID, &X_REQUEST_ID, &X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST, &HOST];
        for name in INTERNAL.iter().chain(&HOP_BY_HOP).chain(&strip) {
            if set_by_proxy.contains(&name) {
                continue;
            }
            let kept = match &upgrade {
                Some(proto) if *name == UPGRADE => only(name, Some(proto)),
                Some(_) if *name == CONNECTION => only(name, Some(&hv("upgrade"))),
                _ => !out.contains_key(name),
            };
            prop_assert!(kept, "{name} survived: {:?}", out.get_all(name).iter().collect::<Vec<_>>());
        }
        // Names the client's Connection header lists are gone too (unless the proxy sets them).
        let listed = client.get_all(CONNECTION).iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).map(<[u8]>::to_vec).collect::<Vec<_>>())
            .filter_map(|t| HeaderName::from_bytes(&t).ok());
        for name in listed {
            let reset = set_by_proxy.contains(&&name) || (upgrade.is_some() && (name == UPGRADE || name == CONNECTION));
            prop_assert!(reset || !out.contains_key(&name), "{name} listed in Connection survived");
        }
        // And nothing else the client sent is lost or reordered.
        for name in client.keys() {
            let touched = set_by_proxy.contains(&name) || INTERNAL.contains(name) || HOP_BY_HOP.contains(name)
                || strip.contains(name)
                || client.get_all(CONNECTION).iter().any(|v| v.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_str().as_bytes())));
            if !touched {
                prop_assert!(out.get_all(name).iter().eq(client.get_all(name).iter()), "{name} changed");
            }
        }
        prop_assert!(!out.contains_key(TRANSFER_ENCODING));
    }
}

#[test]
fn the_model_knows_every_violation() {
    // The generator must be able to reach every reason, or the oracle test proves little.
    let head = |v, a, hs: &[(&str, &str)]| -> Head {
        (
            v,
            a,
            hs.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    let cases = [
        head(Version::HTTP_11, None, &[("host", "a"), ("host", "a")]),
        head(
            Version::HTTP_2,
            Some("acme.app.test"),
            &[("host", "globex.app.test")],
        ),
        head(Version::HTTP_11, None, &[]),
        head(
            Version::HTTP_11,
            None,
            &[("host", "a"), ("x_tenant_id", "b")],
        ),
    ];
    for h in &cases {
        let want = expected(h, HeaderUnderscores::Reject);
        assert!(want.is_err(), "{h:?}");
        assert_eq!(check(&parts(h), HeaderUnderscores::Reject), want, "{h:?}");
    }
}
