//! How a server span names the request and its client: the tenant's source (`jwt`), a wait
//! for an issuer's key set as a `jwks fetch` child, the Host's port as `server.port`, HTTP/2 as
//! `network.protocol.version`, and behind a trusted hop with `server.trust_x_forwarded_for`,
//! the client the proxy itself believes (the one it tells the cell) as `client.address`.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use jsonwebtoken::Algorithm;

use crate::cell::TracedCell;
use crate::common::cells::{urls, within};
use crate::common::jwks::{JwksServer, claims, jwk, key_set, mint};
use crate::common::otlp::{Receiver, bool_attr, hex, int_attr, str_attr};
use crate::common::upstream::Upstream;
use crate::common::{AUDIENCE, Reply};
use crate::{HOST, LOOPBACK_HOPS, get, proxy, server_span, tracing};

// A tenant named by its token, a Host with a port, no client traceparent: a new root span,
// `cellgate.tenant.source` is `jwt`, and `server.port` is the Host's.
#[tokio::test]
async fn a_token_tenant_and_a_host_port_are_in_a_new_root_span() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(Some(rx.url())).await;
        let h = proxy("", &tracing(&rx.url(), ""), vec![cell.url()]).await;
        let token = format!("Bearer {}", crate::common::token("RS256", "acme"));
        let r = get(
            &h,
            "acme.app.test:8080",
            "/by-token",
            &[("authorization", &token)],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let server = server_span(&rx, "/by-token").await;
        let s = &server.span;
        assert!(s.parent_span_id.is_empty(), "a new trace has no parent");
        assert_eq!(str_attr(s, "cellgate.tenant.source"), Some("jwt"));
        assert_eq!(str_attr(s, "server.address"), Some(HOST));
        assert_eq!(int_attr(s, "server.port"), Some(8080));
        let seen = cell.only("/by-token");
        assert_eq!(seen.parts()[1], hex(&s.trace_id));
        h.shutdown().await;
    })
    .await;
}

// A token signed with a key the issuer published after the proxy last read its key set: the
// request waits for a refetch, recorded as a `jwks fetch` child that found the key.
#[tokio::test]
async fn a_wait_for_the_issuers_keys_is_a_jwks_fetch_child() {
    within(async {
        let iss = "https://jwks.test";
        let k1 = jwk("rsa", "k1", Some("RS256"));
        let jwks = JwksServer::start(key_set(std::slice::from_ref(&k1)), key_set(&[])).await;
        let issuer = format!(
            "[[auth.issuers]]\nname = \"idp\"\nissuer = \"{iss}\"\naudiences = [\"{AUDIENCE}\"]\n\
             [auth.issuers.jwks]\nurl = \"{}\"\nrefresh = \"10m\"\ncooldown = \"30s\"\n\
             timeout = \"2s\"\n",
            jwks.url()
        );
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let extra = format!("{issuer}\n{}", tracing(&rx.url(), ""));
        let h = proxy("", &extra, vec![cell.url()]).await;
        assert_eq!(jwks.fetches(), 1);

        jwks.set(key_set(&[k1, jwk("rsa2", "k2", Some("RS256"))]));
        let token = mint(
            Algorithm::RS256,
            "rsa2.pem",
            Some("k2"),
            &claims(iss, AUDIENCE, "acme"),
        );
        let bearer = format!("Bearer {token}");
        let r = get(&h, HOST, "/rotated", &[("authorization", &bearer)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(jwks.fetches(), 2);

        let server = server_span(&rx, "/rotated").await;
        assert_eq!(
            str_attr(&server.span, "cellgate.tenant.source"),
            Some("jwt")
        );
        let spans = rx.wait_for(3, crate::ARRIVE).await;
        let fetch: Vec<_> = spans
            .iter()
            .filter(|r| r.span.name == "jwks fetch")
            .collect();
        assert_eq!(fetch.len(), 1, "{spans:#?}");
        let f = &fetch[0].span;
        assert_eq!(f.parent_span_id, server.span.span_id);
        assert_eq!(f.trace_id, server.span.trace_id);
        assert_eq!(
            bool_attr(f, "cellgate.jwks.kid_found"),
            Some(true),
            "{f:#?}"
        );
        assert!(f.start_time_unix_nano >= server.span.start_time_unix_nano);
        assert!(f.end_time_unix_nano <= server.span.end_time_unix_nano);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_http2_request_says_so() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let h = proxy("", &tracing(&rx.url(), ""), vec![cell.url()]).await;
        let mut h2 = h.h2().await;
        let req = Request::get(format!("http://{HOST}/over-h2"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        let s = server_span(&rx, "/over-h2").await.span;
        assert_eq!(str_attr(&s, "network.protocol.version"), Some("2"));
        assert_eq!(str_attr(&s, "server.address"), Some(HOST));
        assert_eq!(str_attr(&s, "tenant.id"), Some("acme"));
        h.shutdown().await;
    })
    .await;
}

// Behind a trusted hop that names the client in `X-Forwarded-For`, the proxy takes that
// client as the request's (it tells the cell so); the span's `client.address` is the same
// client, as the semantic conventions ask of a server behind intermediaries.
#[tokio::test]
async fn client_address_is_the_client_the_proxy_believes() {
    within(async {
        let rx = Receiver::start().await;
        let up = Upstream::start("cell-1", "a").await;
        let server = format!("{LOOPBACK_HOPS}\ntrust_x_forwarded_for = true");
        let h = proxy(&server, &tracing(&rx.url(), ""), urls(&[&up])).await;
        let r: Reply = get(&h, HOST, "/via-hop", &[("x-forwarded-for", "203.0.113.7")]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.json()["forwarded_for"],
            "203.0.113.7",
            "what the cell was told"
        );
        let s = server_span(&rx, "/via-hop").await.span;
        assert_eq!(str_attr(&s, "client.address"), Some("203.0.113.7"));
        h.shutdown().await;
    })
    .await;
}
