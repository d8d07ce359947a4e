//! Metric handles for token verification, JWKS key sets, API key refusals and entitlement
//! refusals.
//!
//! Registered once by [`super::Metrics::new`]; the verifier keeps clones of the three
//! verification counters, each JWKS refresher its own issuer-labelled handles, and refusals
//! are counted by their fixed reason label in the log stage. Issuer labels come from config
//! (`auth.issuers[].name`), so they stay bounded.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{counter_name, names as n};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByLabels {
    by: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IssuerResultLabels {
    issuer: String,
    result: &'static str,
}

/// The verifier's counters (cloned handles share the same atomics).
#[derive(Debug, Clone, Default)]
pub struct AuthMetrics {
    pub cache_hits: Counter,
    pub verified: Counter,
    pub rejected: Counter,
}

/// One issuer's JWKS handles.
#[derive(Debug, Clone, Default)]
pub struct JwksMetrics {
    pub fetch_ok: Counter,
    pub fetch_error: Counter,
    pub keys: Gauge,
    pub up: Gauge,
    pub age_seconds: Gauge<f64, AtomicU64>,
    pub refetch_suppressed: Counter,
}

/// The auth families, registered into the main registry.
#[derive(Debug, Default)]
pub(super) struct AuthFamilies {
    verifications: Family<ResultLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    key_rejections: Family<ReasonLabels, Counter>,
    not_entitled: Family<ByLabels, Counter>,
    pub cache_entries: Gauge,
    fetches: Family<IssuerResultLabels, Counter>,
    keys: Family<IssuerLabels, Gauge>,
    up: Family<IssuerLabels, Gauge>,
    age: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    suppressed: Family<IssuerLabels, Counter>,
}

impl AuthFamilies {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            counter_name(n::JWT_VERIFICATIONS_TOTAL),
            "Bearer tokens checked, by result (cache_hit, verified, rejected)",
            self.verifications.clone(),
        );
        registry.register(
            counter_name(n::JWT_REJECTIONS_TOTAL),
            "Requests refused by token checks, by reason",
            self.rejections.clone(),
        );
        registry.register(
            counter_name(n::API_KEY_REJECTIONS_TOTAL),
            "Requests refused by the API key check, by reason",
            self.key_rejections.clone(),
        );
        registry.register(
            counter_name(n::NOT_ENTITLED_TOTAL),
            "Requests refused for an entitlement their route needs, by who lacked it (tenant, key, token)",
            self.not_entitled.clone(),
        );
        registry.register(
            n::JWT_CACHE_ENTRIES,
            "Verified tokens in the cache",
            self.cache_entries.clone(),
        );
        registry.register(
            counter_name(n::JWKS_FETCHES_TOTAL),
            "JWKS fetches, by issuer and result (ok, error)",
            self.fetches.clone(),
        );
        registry.register(
            n::JWKS_KEYS,
            "Keys in the issuer's current JWKS",
            self.keys.clone(),
        );
        registry.register(
            n::JWKS_UP,
            "1 when the issuer's last JWKS fetch succeeded, 0 when it failed (the last good set stays in use)",
            self.up.clone(),
        );
        registry.register(
            n::JWKS_AGE_SECONDS,
            "Seconds since the issuer's JWKS was last fetched successfully",
            self.age.clone(),
        );
        registry.register(
            counter_name(n::JWKS_REFETCH_SUPPRESSED_TOTAL),
            "Unknown-kid refetches refused by the cooldown or the negative cache, by issuer",
            self.suppressed.clone(),
        );
    }

    pub(super) fn auth(&self) -> AuthMetrics {
        let r = |result| {
            self.verifications
                .get_or_create_owned(&ResultLabels { result })
        };
        AuthMetrics {
            cache_hits: r("cache_hit"),
            verified: r("verified"),
            rejected: r("rejected"),
        }
    }

    pub(super) fn rejection(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(super) fn key_rejection(&self, reason: &'static str) {
        self.key_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(super) fn not_entitled(&self, by: &'static str) {
        self.not_entitled.get_or_create(&ByLabels { by }).inc();
    }

    pub(super) fn jwks(&self, issuer: &str) -> JwksMetrics {
        let l = IssuerLabels {
            issuer: issuer.to_owned(),
        };
        let f = |result| {
            self.fetches.get_or_create_owned(&IssuerResultLabels {
                issuer: issuer.to_owned(),
                result,
            })
        };
        JwksMetrics {
            fetch_ok: f("ok"),
            fetch_error: f("error"),
            keys: self.keys.get_or_create_owned(&l),
            up: self.up.get_or_create_owned(&l),
            age_seconds: self.age.get_or_create_owned(&l),
            refetch_suppressed: self.suppressed.get_or_create_owned(&l),
        }
    }
}
