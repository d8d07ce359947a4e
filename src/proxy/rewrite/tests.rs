//! The rewrite stage's unit tests: hop-by-hop and internal headers stripped, trusted ones
//! set, the upgrade handshake kept, the response cleaned.

use super::*;

fn trusted<'a>(v: &'a HeaderValue, claims: &'a [(HeaderName, HeaderValue)]) -> Trusted<'a> {
    Trusted {
        strip: &[],
        tenant: v,
        cell: v,
        request_id: v,
        forwarded_for: v,
        tls: true,
        claims,
        drop_key_authorization: false,
        api_key_id: None,
        keep_te_trailers: false,
    }
}

#[test]
fn te_trailers_goes_on_only_toward_http2_cells() {
    let v = HeaderValue::from_static("x");
    let mut t = trusted(&v, &[]);
    for keep in [false, true] {
        let req = http::Request::post("/echo.Echo/Unary").header(header::TE, "gzip, Trailers");
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        t.keep_te_trailers = keep;
        request(&mut parts, &t, None);
        assert_eq!(parts.headers.get(header::TE).is_some(), keep);
    }
    assert!(!te_has_trailers(b"gzip, deflate"));
}

#[test]
fn the_whole_rewrite_sets_claims_origin_form_and_http_1_1() {
    let (mut parts, ()) = http::Request::get("https://acme.app.test/orders?id=7")
        .version(Version::HTTP_2)
        .header("x-user", "client-value")
        .body(())
        .unwrap()
        .into_parts();
    let v = HeaderValue::from_static("x");
    let claims = [(
        HeaderName::from_static("x-user"),
        HeaderValue::from_static("u-1"),
    )];
    let upgrade = request(&mut parts, &trusted(&v, &claims), None);
    assert!(upgrade.is_none());
    assert_eq!(parts.uri, "/orders?id=7");
    assert_eq!(parts.version, Version::HTTP_11);
    // The claim replaces the client's copy; the host the client addressed is kept.
    assert_eq!(parts.headers.get_all("x-user").iter().count(), 1);
    assert_eq!(parts.headers["x-user"], "u-1");
    assert_eq!(parts.headers[header::HOST], "acme.app.test");
    assert_eq!(parts.headers[X_FORWARDED_PROTO], "https");
}

#[test]
fn an_origin_form_target_is_kept_and_no_upgrade_is_asked_of_http_2() {
    let (mut parts, ()) = http::Request::get("/a?b")
        .header(header::HOST, "acme.app.test")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .version(Version::HTTP_2)
        .body(())
        .unwrap()
        .into_parts();
    assert!(upgrade_of(&parts).is_none());
    parts.version = Version::HTTP_11;
    assert_eq!(upgrade_of(&parts).unwrap(), "websocket");
    let v = HeaderValue::from_static("x");
    request(&mut parts, &trusted(&v, &[]), None);
    assert_eq!(parts.uri, "/a?b");
    assert!(!parts.headers.contains_key(header::UPGRADE));
}

#[test]
fn strips_hop_by_hop_and_connection_listed_headers() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, x-secret-hop"),
    );
    h.insert("x-secret-hop", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    h.insert("x-app", HeaderValue::from_static("kept"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("x-app"));
}

#[test]
fn rewrite_replaces_internal_headers() {
    let mut h = HeaderMap::new();
    h.insert(X_CELL_ID, HeaderValue::from_static("cell-evil"));
    h.insert(X_TENANT_ID, HeaderValue::from_static("globex"));
    h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
    h.insert("x-custom-internal", HeaderValue::from_static("x"));
    let strip = [HeaderName::from_static("x-custom-internal")];
    rewrite_request(
        &mut h,
        &strip,
        &HeaderValue::from_static("acme"),
        &HeaderValue::from_static("cell-1"),
        &HeaderValue::from_static("rid"),
        &ip_header("10.1.2.3".parse().unwrap()),
        false,
        Some(HeaderValue::from_static("acme.localhost")),
        None,
    );
    assert_eq!(h[X_CELL_ID], "cell-1");
    assert_eq!(h[X_TENANT_ID], "acme");
    assert_eq!(h[X_FORWARDED_FOR], "10.1.2.3");
    assert_eq!(h[X_FORWARDED_HOST], "acme.localhost");
    assert_eq!(h[header::HOST], "acme.localhost");
    assert!(!h.contains_key("x-custom-internal"));
    assert_eq!(h.get_all(X_CELL_ID).iter().count(), 1);
}

#[test]
fn every_removed_name_is_removed_even_alone() {
    // The rewrite skips its removals when no listed name is present: each name on its own
    // must still trigger them.
    let strip = [HeaderName::from_static("x-custom-internal")];
    let v = HeaderValue::from_static("x");
    for name in HOP_BY_HOP.iter().chain(&INTERNAL).chain(&strip) {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(name.clone(), HeaderValue::from_static("client-value"));
        rewrite_request(&mut h, &strip, &v, &v, &v, &v, false, None, None);
        let left: Vec<_> = h.get_all(name).iter().collect();
        assert!(
            left.iter().all(|x| *x != "client-value"),
            "{name}: {left:?}"
        );
        assert_eq!(h[header::ACCEPT], "*/*");
    }
}

#[test]
fn ordinary_headers_pass_untouched() {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    h.insert(header::USER_AGENT, HeaderValue::from_static("curl"));
    h.insert("x-app", HeaderValue::from_static("1"));
    let v = HeaderValue::from_static("x");
    rewrite_request(&mut h, &[], &v, &v, &v, &v, false, None, None);
    assert_eq!(h.len(), 3 + 5, "{h:?}");
    assert_eq!(h["x-app"], "1");
    assert_eq!(h[header::USER_AGENT], "curl");
}

#[test]
fn upgrade_headers_survive_when_requested() {
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let up = upgrade_requested(&h);
    assert_eq!(up.as_ref().map(|v| v.to_str().unwrap()), Some("websocket"));
    let v = HeaderValue::from_static("x");
    rewrite_request(
        &mut h,
        &[],
        &v,
        &v,
        &v,
        &ip_header("::1".parse().unwrap()),
        true,
        None,
        up,
    );
    assert_eq!(h[header::UPGRADE], "websocket");
    assert_eq!(h[header::CONNECTION], "upgrade");
    assert_eq!(h[X_FORWARDED_PROTO], "https");
}

#[test]
fn an_h2c_upgrade_is_never_passed_on() {
    for value in ["h2c", "H2C", "websocket, h2c"] {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_str(value).unwrap());
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        assert_eq!(upgrade_requested(&h), None, "{value}");
        let v = HeaderValue::from_static("x");
        rewrite_request(
            &mut h,
            &[],
            &v,
            &v,
            &v,
            &ip_header("::1".parse().unwrap()),
            false,
            None,
            None,
        );
        assert!(!h.contains_key(header::UPGRADE), "{value}");
        assert!(!h.contains_key("http2-settings"), "{value}");
    }
}

#[test]
fn request_ids_are_kept_only_when_valid() {
    let mut h = HeaderMap::new();
    h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
    assert_eq!(request_id(&h), "abc-123");
    h.insert(
        X_REQUEST_ID,
        HeaderValue::from_static("bad id\"with quotes"),
    );
    let generated = request_id(&h);
    assert_eq!(generated.len(), 32);
    assert!(valid_request_id(&generated));
}
