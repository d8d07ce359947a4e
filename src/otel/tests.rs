#![allow(clippy::unwrap_used)]
use super::*;
use crate::config::{FileTracing, build_tracing};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn tracer(trust: &str, ratio: f64) -> (Tracer, export::Exporter) {
    let cfg = build_tracing(Some(&FileTracing {
        otlp_endpoint: Some("http://127.0.0.1:9/v1/traces".into()),
        sample_ratio: Some(ratio),
        trust_incoming: Some(trust.into()),
        queue_size: Some(512),
        ..FileTracing::default()
    }))
    .unwrap()
    .unwrap();
    let tls = crate::tls_client::client_config(None).unwrap();
    Tracer::new(&cfg, TraceMetrics::default(), tls)
}

fn arrived() -> Arrived {
    Arrived {
        version: Version::HTTP_11,
        client: "203.0.113.7".parse().unwrap(),
        tls: false,
    }
}

fn with_parent() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
    h.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
    h
}

#[test]
fn trust_decides_whether_the_callers_trace_continues() {
    let h = with_parent();
    for (trust, hop, continued) in [
        ("never", true, false),
        ("trusted_hops", false, false),
        ("trusted_hops", true, true),
        ("always", false, true),
    ] {
        let (t, _e) = tracer(trust, 0.0);
        let trace = t.begin(&h, hop, arrived());
        let same = trace.trace_id.to_string() == "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(same, continued, "{trust} hop={hop}");
        assert_eq!(trace.parent.is_some(), continued);
        // A continued sampled parent is sampled whatever the ratio; a new trace at 0 is not.
        assert_eq!(trace.sampled, continued);
        assert_eq!(trace.recording.is_some(), continued);
        let mut out = h.clone();
        trace.propagate(&mut out);
        let sent = tc::parse_traceparent(&out[TRACEPARENT]).unwrap();
        assert_eq!(sent.trace_id, trace.trace_id);
        assert_eq!(
            sent.span_id, trace.span_id,
            "the cell's parent is the proxy's span"
        );
        assert_eq!(
            out.get(TRACESTATE).is_some(),
            continued,
            "tracestate only with its trace"
        );
    }
}

#[test]
fn a_finished_span_encodes_with_its_attributes_and_children() {
    let (t, _e) = tracer("always", 1.0);
    let trace = t.begin(&with_parent(), false, arrived());
    let c = trace.collector.clone().unwrap();
    c.borrow_mut().children.push(
        Child::ended(
            children::ATTEMPT,
            children::Kind::Client,
            std::time::Instant::now(),
        )
        .peer("127.0.0.1:8081".parse().unwrap()),
    );
    let record = Record {
        time: SystemTime::now(),
        request_id: HeaderValue::from_static("rid-1"),
        tenant: crate::tenant::TenantId::parse("acme").ok(),
        api_key: None,
        cell: Some(Arc::from("cell-1")),
        target: Some(Arc::from("http://127.0.0.1:8081")),
        method: http::Method::GET,
        uri: http::Uri::from_static("/orders?token=secret"),
        status: 200,
        bytes: 5,
        upstream: None,
        total: std::time::Duration::from_millis(3),
        outcome: crate::metrics::Outcome::routed,
        incomplete: false,
        grpc_status: None,
        trace: Some(trace.ids()),
    };
    let extra = Extra {
        source: Some("subdomain"),
        group: Some(Arc::from("stable")),
        code: None,
        limit: Some("admitted"),
    };
    let data = trace.span(record, extra).unwrap();
    let resource = encode::resource("cellgate-test");
    let (body, n) = encode::request(&resource, [data]);
    assert_eq!(n, 2);
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let rs = &req.resource_spans[0];
    let service = &rs.resource.as_ref().unwrap().attributes[0];
    assert_eq!(service.key, "service.name");
    let spans = &rs.scope_spans[0].spans;
    assert_eq!(spans.len(), 2);
    let server = &spans[0];
    let attr = |k: &str| {
        server
            .attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    assert_eq!(attr("tenant.id"), Some(V::StringValue("acme".into())));
    assert_eq!(attr("cell.id"), Some(V::StringValue("cell-1".into())));
    assert_eq!(attr("url.path"), Some(V::StringValue("/orders".into())));
    assert_eq!(
        attr("cellgate.registry.lookup"),
        Some(V::StringValue("hit".into()))
    );
    assert_eq!(attr("cellgate.retries"), Some(V::IntValue(0)));
    assert_eq!(attr("http.response.status_code"), Some(V::IntValue(200)));
    assert!(!format!("{spans:?}").contains("secret"), "never the query");
    assert_eq!(
        server.parent_span_id,
        vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(server.trace_state, "vendor=1");
    assert_eq!(spans[1].parent_span_id, server.span_id);
    assert_eq!(spans[1].trace_id, server.trace_id);
    assert_eq!(spans[1].name, "upstream attempt");
    assert_eq!(spans[1].kind, 3, "client");
    assert_eq!(server.kind, 2, "server");
    assert_eq!(server.name, "GET");
    assert_eq!(server.flags, 0x301, "sampled, parent remote");
    assert!(server.end_time_unix_nano - server.start_time_unix_nano >= 3_000_000);
    assert!(spans[1].start_time_unix_nano >= server.start_time_unix_nano);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let (t, _e) = tracer("never", 1.0);
    let metrics = t.queue_full.clone();
    for _ in 0..600 {
        let trace = t.begin(&HeaderMap::new(), false, arrived());
        let rec = Record {
            time: SystemTime::now(),
            request_id: HeaderValue::from_static("r"),
            tenant: None,
            api_key: None,
            cell: None,
            target: None,
            method: http::Method::GET,
            uri: http::Uri::from_static("/"),
            status: 404,
            bytes: 0,
            upstream: None,
            total: std::time::Duration::ZERO,
            outcome: crate::metrics::Outcome::bad_request,
            incomplete: false,
            grpc_status: None,
            trace: None,
        };
        t.finish(&trace, rec, Extra::default());
    }
    assert_eq!(metrics.get(), 600 - 512);
}
