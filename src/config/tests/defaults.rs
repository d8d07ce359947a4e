//! The defaults a minimal config gets.

use super::*;
use crate::tenant::TenantSource;

#[test]
fn minimal_config_parses_with_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.source_path, Path::new(CONFIG_PATH));
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].address, "127.0.0.1:8080".parse().unwrap());
    assert!(cfg.listeners[0].tls.is_none());
    assert_eq!(cfg.admin.address, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(cfg.tenant.sources, vec![TenantSource::Subdomain]);
    assert_eq!(cfg.tenant.base_domains, vec!["example.com".to_owned()]);
    assert!(!cfg.auth.required);
    assert!(cfg.auth.issuers.is_empty());
    assert_eq!(cfg.auth.max_token_bytes, 8192);
    assert_eq!(cfg.auth.cache_max_entries, 100_000);
    assert_eq!(cfg.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(cfg.upstream.pool_idle_timeout, Duration::from_secs(50));
    assert!(cfg.upstream.pool_idle_timeout <= MAX_POOL_IDLE);
    assert!(cfg.server.workers >= 1);
    assert_eq!(cfg.log.format, LogFormat::Json);
    // The registry path defaults to registry.toml next to the config file.
    let RegistryConfig::File {
        path,
        poll_interval,
        full_refresh,
    } = &cfg.registry
    else {
        panic!("expected the file registry")
    };
    assert_eq!(path, Path::new("/etc/cellgate/registry.toml"));
    assert_eq!(*poll_interval, Duration::from_millis(500));
    assert_eq!(*full_refresh, Duration::from_secs(60));
}

#[test]
fn ingress_defaults_are_the_documented_ones() {
    let c = parse(MINIMAL).unwrap();
    let l = c.server.limits;
    assert_eq!(
        (l.max_header_bytes, l.max_headers, l.max_uri_bytes),
        (32 * 1024, 100, 8192)
    );
    assert_eq!(l.max_body_bytes, 100 * 1024 * 1024);
    assert_eq!(l.header_timeout, Duration::from_secs(10));
    assert_eq!(
        (l.idle_timeout, l.request_timeout),
        (Duration::from_secs(60), Duration::from_secs(60))
    );
    assert_eq!(
        (c.server.connections.max, c.server.connections.per_ip),
        (10_000, 1024)
    );
    assert_eq!(c.server.http2.max_concurrent_streams, 100);
    assert_eq!(c.server.http2.max_pending_resets, 20);
}
