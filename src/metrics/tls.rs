//! Metric handles for TLS listeners: certificate reloads and certificate expiry.
//!
//! The reload task of each TLS listener ([`crate::certs::reload`]) holds one
//! [`ListenerTlsMetrics`]. Labels are bounded by the config: listener index, result, and the
//! certificate files it names.

use std::path::Path;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{counter_name, names as n};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    listener: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExpiryLabels {
    listener: String,
    cert: String,
}

/// The TLS families; cloned handles share the same series.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    reloads: Family<ReloadLabels, Counter>,
    expiry: Family<ExpiryLabels, Gauge>,
}

impl TlsMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            counter_name(n::TLS_RELOADS_TOTAL),
            "Listener certificate reloads after a file change, by listener and result (ok, error)",
            self.reloads.clone(),
        );
        registry.register(
            n::TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
            "notAfter of each served leaf certificate (Unix seconds), by listener and cert file",
            self.expiry.clone(),
        );
    }

    /// Handles for listener `listener` (both reload series exist from the start, at 0).
    #[must_use]
    pub fn listener(&self, listener: usize) -> ListenerTlsMetrics {
        let listener = listener.to_string();
        let result = |result| {
            self.reloads.get_or_create_owned(&ReloadLabels {
                listener: listener.clone(),
                result,
            })
        };
        ListenerTlsMetrics {
            reloads_ok: result("ok"),
            reload_errors: result("error"),
            expiry: self.expiry.clone(),
            listener,
        }
    }
}

/// One TLS listener's handles.
#[derive(Debug, Clone)]
pub struct ListenerTlsMetrics {
    /// New sets swapped in.
    pub reloads_ok: Counter,
    /// Changed files that did not load (the current set kept serving).
    pub reload_errors: Counter,
    expiry: Family<ExpiryLabels, Gauge>,
    listener: String,
}

impl ListenerTlsMetrics {
    /// Sets the expiry gauge of every certificate of a set just swapped in.
    /// `certs`: each certificate's file and its `notAfter` in Unix seconds.
    pub fn set_expiry<'a>(&self, certs: impl IntoIterator<Item = (&'a Path, i64)>) {
        for (path, not_after) in certs {
            self.expiry_gauge(path).set(not_after);
        }
    }

    fn expiry_gauge(&self, cert: &Path) -> Gauge {
        self.expiry.get_or_create_owned(&ExpiryLabels {
            listener: self.listener.clone(),
            cert: cert.display().to_string(),
        })
    }
}
