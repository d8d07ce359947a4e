//! How config errors are reported: unknown keys, field errors, range checks, parse helpers.

use super::*;

#[test]
fn unknown_key_is_a_parse_error_naming_the_key() {
    let text = minimal_plus("[server]\nwrokers = 2\n");
    match parse(&text) {
        Err(ConfigError::Parse { file, message }) => {
            assert_eq!(file, Path::new(CONFIG_PATH));
            assert!(message.contains("wrokers"), "message: {message}");
        }
        other => panic!("expected a Parse error, got {other:?}"),
    }
}

#[test]
fn bad_duration_names_key_and_value() {
    let f = invalid(&minimal_plus("[upstream]\nconnect_timeout = \"soon\"\n"));
    assert_eq!(f.key, "upstream.connect_timeout");
    assert_eq!(f.value, "soon");
}

#[test]
fn invalid_display_contains_file_key_and_value() {
    let err = parse(&minimal_plus("[upstream]\nconnect_timeout = \"soon\"\n")).unwrap_err();
    let shown = err.to_string();
    for part in [CONFIG_PATH, "upstream.connect_timeout", "\"soon\""] {
        assert!(shown.contains(part), "{shown:?} lacks {part:?}");
    }
}

#[test]
fn misc_ranges_are_checked() {
    #[rustfmt::skip]
    let cases = [
        ("[server]\nworkers = 1000", "server.workers"),
        ("[server]\nshutdown_grace = \"5\"", "server.shutdown_grace"),
        ("[server]\nheaders_with_underscores = \"strip\"", "server.headers_with_underscores"),
        ("[server]\nmax_header_bytes = 1024", "server.max_header_bytes"),
        ("[server]\nmax_headers = 5000", "server.max_headers"),
        ("[server]\nmax_uri_bytes = 10", "server.max_uri_bytes"),
        ("[server]\nheader_timeout = \"10ms\"", "server.header_timeout"),
        ("[server]\nidle_timeout = \"2h\"", "server.idle_timeout"),
        ("[server]\nrequest_timeout = \"soon\"", "server.request_timeout"),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        ("[server.http2]\nmax_concurrent_streams = 0", "server.http2.max_concurrent_streams"),
        ("[server.http2]\nstream_window = 100", "server.http2.stream_window"),
        ("[server.http2]\nmax_pending_resets = 0", "server.http2.max_pending_resets"),
        ("[server]\ntrust_x_forwarded_for = true", "server.trust_x_forwarded_for"),
        ("[[listeners]]\naddress = \"127.0.0.1:8081\"\nproxy_protocol = true", "listeners[1].proxy_protocol"),
        ("[server]\ntrusted_hops = [\"10.0.0.0/8\", \"nlb\"]", "server.trusted_hops[1]"),
        ("[access_log]\nsample = 1.5", "access_log.sample"),
        ("[access_log]\nbuffer = 0", "access_log.buffer"),
        ("[auth]\nmax_token_bytes = 10", "auth.max_token_bytes"),
        ("[auth]\ncache_max_entries = 99999999", "auth.cache_max_entries"),
        ("[log]\nformat = \"xml\"", "log.format"),
        ("[headers]\nstrip = [\"bad header\"]", "headers.strip[0]"),
        ("[admin]\naddress = \"9090\"", "admin.address"),
        ("[upstream]\nca_file = \"/nonexistent/ca.pem\"", "upstream.ca_file"),
    ];
    for (extra, key) in cases {
        assert_eq!(invalid(&minimal_plus(extra)).key, key, "{extra}");
    }
}

#[test]
fn parse_helpers_report_key_and_value() {
    assert_eq!(parse_duration("k", "1m 30s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("k", "250ms").unwrap().as_millis(), 250);
    let e = parse_duration("server.shutdown_grace", "5").unwrap_err();
    assert_eq!(kv(&e), ("server.shutdown_grace", "5"));
    assert_eq!(parse_addr("a", "[::1]:80").unwrap().port(), 80);
    assert_eq!(
        kv(&parse_addr("a", "1.2.3.4").unwrap_err()),
        ("a", "1.2.3.4")
    );
}
