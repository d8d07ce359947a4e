//! End-to-end behaviour of the proxy: real sockets, real cells, real signed tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, cell_list, registry, token};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_subdomain_to_the_tenants_cell() {
    let h = Harness::start().await;
    for (host, cell) in [
        ("acme.app.test", "cell-1"),
        ("globex.app.test", "cell-2"),
        ("INITECH.App.Test:8443", "cell-3"),
    ] {
        let r = h.get(host, "/orders?id=7").await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.body);
        let v = r.json();
        assert_eq!(v["cell"], cell);
        assert_eq!(v["x_cell_id"], cell);
        assert_eq!(v["path"], "/orders");
        assert!(v["target"].as_str().unwrap().starts_with(cell));
    }
    // Round robin reaches both targets of a cell.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(
            h.get("acme.app.test", "/").await.json()["target"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_verified_jwt_with_rsa_ec_and_ed25519_keys() {
    let h = Harness::start().await;
    for (alg, tenant, cell) in [
        ("RS256", "acme", "cell-1"),
        ("ES256", "globex", "cell-2"),
        ("EdDSA", "initech", "cell-3"),
    ] {
        let r = h.get_with_token(None, &token(alg, tenant)).await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", r.body);
        assert_eq!(r.json()["cell"], cell, "{alg}");
        assert_eq!(r.json()["tenant"], tenant);
        // Token and subdomain agreeing is fine.
        let r = h
            .get_with_token(Some(&format!("{tenant}.app.test")), &token(alg, tenant))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_another_tenant_than_the_subdomain_is_403() {
    let h = Harness::start().await;
    let r = h
        .get_with_token(Some("globex.app.test"), &token("RS256", "acme"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "tenant_mismatch");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_are_401_with_www_authenticate() {
    let h = Harness::start().await;
    let good = token("EdDSA", "acme");
    let (head, rest) = good.split_once('.').unwrap();
    let tampered = format!("{head}.{}", rest.replacen('.', ".x", 1));
    for bad in [tampered.as_str(), "not-a-jwt", "a.b.c"] {
        let r = h.get_with_token(Some("acme.app.test"), bad).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r.json()["error"], "invalid_token");
        let www = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with("Bearer") && www.contains("error=\"invalid_token\""),
            "{www}"
        );
        assert!(!r.body.contains(bad), "the token must not be echoed");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_401_when_a_token_is_required() {
    let h = Harness::start_with("", common::DEFAULT_TENANTS).await;
    h.shutdown().await;
    // auth.required lives in [auth]; build that config by hand.
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    let cfg = common::base_config("").replace(
        "[[auth.issuers]]\nname = \"test\"",
        "[auth]\nrequired = true\n\n[[auth.issuers]]\nname = \"test\"",
    );
    assert!(cfg.contains("required = true"));
    let h = Harness::start_raw(
        &cfg,
        &registry(&cell_list(&cells), common::DEFAULT_TENANTS),
        cells,
    )
    .await;
    let r = h.get("acme.app.test", "/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "token_required");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = h
        .get_with_token(Some("acme.app.test"), &token("ES256", "acme"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_offboarded_tenants_get_the_same_404() {
    let tenants = [
        ("acme", "cell-1", "ACTIVE"),
        ("gone", "cell-2", "OFFBOARDED"),
        ("frozen", "cell-2", "SUSPENDED"),
    ];
    let h = Harness::start_with("", &tenants).await;
    let unknown = h.get("nobody.app.test", "/").await;
    let offboarded = h.get("gone.app.test", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(offboarded.status, StatusCode::NOT_FOUND);
    let strip_id = |r: &common::Reply| {
        let mut v = r.json();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip_id(&unknown), strip_id(&offboarded));
    assert_eq!(unknown.json()["error"], "unknown_tenant");
    let suspended = h.get("frozen.app.test", "/").await;
    assert_eq!(suspended.status, StatusCode::FORBIDDEN);
    assert_eq!(suspended.json()["error"], "tenant_suspended");
    // Malformed tenant label and no tenant at all: 400 (with the JWT source on, no token: 401).
    assert_eq!(
        h.get("a.b.app.test", "/").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get("-bad.app.test", "/").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get("-bad.app.test", "/").await.json()["error"],
        "invalid_tenant"
    );
    assert_eq!(
        h.get("app.test", "/").await.status,
        StatusCode::UNAUTHORIZED
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_supplied_internal_headers_never_reach_a_cell() {
    let h = Harness::start().await;
    let req = h
        .request("acme.app.test", "/")
        .header("x-cell-id", "cell-3")
        .header("x-tenant-id", "globex")
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("x-request-id", "trace-abc.123")
        .body(Full::default())
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let headers = v["headers"].as_object().unwrap();
    assert_eq!(headers["x-cell-id"], "cell-1");
    assert_eq!(headers["x-tenant-id"], "acme");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "acme.app.test");
    assert!(!headers.contains_key("forwarded"));
    assert!(!headers.contains_key("x-hop"));
    // A valid incoming request id is kept and returned.
    assert_eq!(headers["x-request-id"], "trace-abc.123");
    assert_eq!(r.headers["x-request-id"], "trace-abc.123");
    // Otherwise one is generated and returned.
    let r = h.get("acme.app.test", "/").await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(r.json()["headers"]["x-request-id"], id.as_str());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_moves_a_tenant_without_restart_or_failed_request() {
    let h = std::sync::Arc::new(Harness::start().await);
    assert_eq!(h.get("acme.app.test", "/").await.json()["cell"], "cell-1");
    // Continuous traffic while the registry changes under it.
    let load = {
        let h = std::sync::Arc::clone(&h);
        tokio::spawn(async move {
            let mut cells = Vec::new();
            for _ in 0..300 {
                let r = h.get("acme.app.test", "/").await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "request failed during reload: {}",
                    r.body
                );
                cells.push(r.json()["cell"].as_str().unwrap().to_owned());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            cells
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let moved = [
        ("acme", "cell-3", "ACTIVE"),
        ("globex", "cell-2", "ACTIVE"),
        ("initech", "cell-3", "ACTIVE"),
    ];
    h.write_registry(&registry(&cell_list(&h.cells), &moved));
    let cells = load.await.unwrap();
    let first_new = cells
        .iter()
        .position(|c| c == "cell-3")
        .expect("acme never moved to cell-3");
    assert!(cells[..first_new].iter().all(|c| c == "cell-1"));
    assert!(
        cells[first_new..].iter().all(|c| c == "cell-3"),
        "went back to the old cell after the flip"
    );
    let admin = h.admin_get("/admin/tenants/acme").await.unwrap().json();
    assert_eq!(admin["cell"], "cell-3");
    assert!(admin["generation"].as_u64().unwrap() >= 2);
    // A broken registry file keeps the last good snapshot.
    h.write_registry("[[tenants]]\nid = \"acme\"\ncell = \"cell-1\"\nstatus = \"WRONG\"\n");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.get("acme.app.test", "/").await.json()["cell"], "cell-3");
    let metrics = h.admin_get("/metrics").await.unwrap().body;
    assert!(
        metrics.contains("cellgate_placement_refresh_failures_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_give_503_naming_the_cell_and_spare_other_cells() {
    let cells = cellgate::demo::spawn_cells(2, 1).await.unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead2 = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut list = cell_list(&cells);
    list.push((
        "cell-dead".to_owned(),
        vec![format!("http://{dead}"), format!("http://{dead2}")],
    ));
    let text = registry(
        &list,
        &[
            ("acme", "cell-1", "ACTIVE"),
            ("doomed", "cell-dead", "ACTIVE"),
        ],
    );
    let h = Harness::start_raw(&common::base_config(""), &text, cells).await;
    let r = h.get("doomed.app.test", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "cell_unreachable");
    assert_eq!(r.json()["cell"], "cell-dead");
    assert_eq!(h.get("acme.app.test", "/").await.status, StatusCode::OK);
    let metrics = h.admin_get("/metrics").await.unwrap().body;
    assert!(
        metrics.contains(r#"cellgate_upstream_errors_total{cell="cell-dead",kind="connect"} 2"#),
        "{metrics}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_fails_over_to_a_live_one_in_the_same_cell() {
    let cells = cellgate::demo::spawn_cells(1, 1).await.unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut list = cell_list(&cells);
    list[0].1.insert(0, format!("http://{dead}"));
    let h = Harness::start_raw(
        &common::base_config(""),
        &registry(&list, &[("acme", "cell-1", "ACTIVE")]),
        cells,
    )
    .await;
    for _ in 0..6 {
        let r = h.get("acme.app.test", "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json()["cell"], "cell-1");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_readiness_metrics_and_placement() {
    let h = Harness::start().await;
    assert_eq!(
        h.admin_get("/healthz").await.unwrap().status,
        StatusCode::OK
    );
    let ready = h.admin_get("/readyz").await.unwrap();
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["ready"], true);
    let limits = h.admin_get("/admin/limits").await.unwrap().json();
    assert!(limits["fleet"].is_null(), "per-node limits: {limits}");
    h.get("acme.app.test", "/").await;
    h.get("nobody.app.test", "/").await;
    let m = h.admin_get("/metrics").await.unwrap().body;
    // Every metric is exported (labelled families appear once they have a series: no request
    // here failed upstream or was refused by a token check or a tenant limit, and no issuer
    // has a JWKS).
    use cellgate::metrics::names as n;
    let no_series = [
        n::UPSTREAM_ERRORS_TOTAL,
        n::JWT_REJECTIONS_TOTAL,
        n::RATELIMIT_REJECTIONS_TOTAL,
        // Nothing was ejected, health-checked, resolved by DNS or retried here.
        n::ENDPOINT_EJECTIONS_TOTAL,
        n::HEALTH_CHECKS_TOTAL,
        n::TARGET_ADDRESSES,
        n::DNS_RESOLUTIONS_TOTAL,
        n::RETRIES_TOTAL,
        n::REQUESTS_REJECTED_TOTAL,
        n::CONNECTIONS_REFUSED_TOTAL,
        // No TLS listener here (tests/tls.rs checks these).
        n::TLS_RELOADS_TOTAL,
        n::TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
        // Fleet limits are off here: no tier has fleet counters (tests/fleet.rs reads them).
        n::FLEET_WOULD_REFUSE_TOTAL,
        n::FLEET_REFUSED_TOTAL,
        // No API key or entitlement refused here (tests/apikey_proxy.rs and entitlements.rs).
        n::API_KEY_REJECTIONS_TOTAL,
        n::NOT_ENTITLED_TOTAL,
        // No gRPC call here (tests/grpc.rs and grpc_calls.rs).
        n::GRPC_RESPONSES_TOTAL,
        // Every request here is compliant HTTP/1 (tests/desync.rs reads the decisions).
        n::DESYNC_TOTAL,
    ];
    for name in n::ALL
        .iter()
        .filter(|name| !no_series.contains(name) && !name.starts_with("cellgate_jwks_"))
    {
        assert!(m.contains(name), "metric {name} missing from /metrics");
    }
    assert!(
        m.contains(
            r#"cellgate_http_requests_total{cell="cell-1",status_class="2xx",outcome="routed"} 1"#
        ),
        "{m}"
    );
    assert!(m.contains(
        r#"cellgate_http_requests_total{cell="none",status_class="4xx",outcome="unknown_tenant"} 1"#
    ));
    assert!(m.contains("cellgate_placement_tenants 3"));
    let t = h.admin_get("/admin/tenants/globex").await.unwrap();
    assert_eq!(t.status, StatusCode::OK);
    let v = t.json();
    assert_eq!(
        (
            v["cell"].as_str(),
            v["status"].as_str(),
            v["version"].as_u64()
        ),
        (Some("cell-2"), Some("ACTIVE"), Some(2))
    );
    assert!(v["loaded_at"].as_str().unwrap().starts_with("20"));
    assert_eq!(
        h.admin_get("/admin/tenants/nobody").await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    let cells = h.admin_get("/admin/cells").await.unwrap().json();
    assert_eq!(cells["cells"].as_array().unwrap().len(), 3);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_upstream_connections_alive_and_streams_request_bodies() {
    let h = Harness::start().await;
    let body = Bytes::from(vec![b'x'; 3 << 20]);
    let req = Request::post(format!("http://{}/upload", h.addr))
        .header("host", "acme.app.test")
        .body(Full::new(body.clone()))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["request_bytes"], 3 << 20);
    // A large response streams back intact.
    let r = h.get("acme.app.test", "/big?bytes=2000000").await;
    assert_eq!(r.json()["padding"].as_str().unwrap().len(), 2_000_000);
    for _ in 0..20 {
        assert_eq!(h.get("acme.app.test", "/").await.status, StatusCode::OK);
    }
    let m = h.admin_get("/metrics").await.unwrap().body;
    let connects: u64 = m
        .lines()
        .find(|l| {
            l.starts_with(r#"cellgate_upstream_connects_total{cell="cell-1",protocol="http1"}"#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // 22 sequential requests over 2 targets and at most 2 workers: pooled, not one per request.
    assert!(
        connects <= 4,
        "upstream connections were not reused: {connects}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_http2_clients() {
    let h = Harness::start().await;
    // Prior-knowledge HTTP/2 over cleartext, naming the tenant in :authority.
    let mut sender = h.h2().await;
    for (authority, cell) in [("globex.app.test", "cell-2"), ("acme.app.test", "cell-1")] {
        let req = Request::get(format!("http://{authority}/h2"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().contains_key("x-request-id"));
        assert!(!resp.headers().contains_key("connection"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["cell"], cell, "{v}");
        assert_eq!(v["headers"]["host"], authority);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let h = Harness::start().await;
    let (mut s, head) = h.websocket("acme.app.test").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("x-target: cell-1-target"), "{head}");
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut h = Harness::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{}/slow?sleep_ms=700", h.addr))
        .header("host", "acme.app.test")
        .body(Full::default())
        .unwrap();
    let in_flight = tokio::spawn(async move {
        let resp = client.request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = h.begin_shutdown();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("cell-1"));
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .unwrap()
        .unwrap();
    // After the drain, nothing listens any more.
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cell_sees_the_host_the_tenant_was_read_from() {
    // Absolute-form target naming acme: the URI authority is what routes (RFC 9112 §3.2.2), and
    // the cell must be told that host. (A Host naming another tenant is refused with 400 by the
    // hygiene stage: tests/ingress.rs.)
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET http://acme.app.test/abs HTTP/1.1\r\nHost: acme.app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["cell"], "cell-1");
    assert_eq!(v["host"], "acme.app.test");
    assert_eq!(v["headers"]["x-forwarded-host"], "acme.app.test");
    assert_eq!(v["path"], "/abs");
    h.shutdown().await;
}
