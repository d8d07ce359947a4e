//! Upstream timeout checks.

use super::*;

#[test]
fn pool_idle_timeout_must_stay_below_the_alb_idle_timeout() {
    let f = invalid(&minimal_plus("[upstream]\npool_idle_timeout = \"70s\"\n"));
    assert_eq!(f.key, "upstream.pool_idle_timeout");
    assert_eq!(f.value, "1m 10s");
    // The limit itself is accepted.
    let cfg = parse(&minimal_plus("[upstream]\npool_idle_timeout = \"59s\"\n")).unwrap();
    assert_eq!(cfg.upstream.pool_idle_timeout, MAX_POOL_IDLE);
}

#[test]
fn zero_and_inverted_upstream_timeouts_are_rejected() {
    let f = invalid(&minimal_plus("[upstream]\nread_timeout = \"0s\"\n"));
    assert_eq!(f.key, "upstream.read_timeout");
    let f = invalid(&minimal_plus(
        "[upstream]\nread_timeout = \"60s\"\ntotal_timeout = \"10s\"\n",
    ));
    assert_eq!(f.key, "upstream.total_timeout");
}
