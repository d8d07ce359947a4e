//! Listener certificates chosen by SNI, swapped in from disk without a restart.
//!
//! Owns the certificates a TLS listener serves. rustls calls [`SniResolver`] once per handshake,
//! before the proxy's stages see anything: it loads the current [`CertSet`] (one atomic load, no
//! lock) and picks a certificate by the client's server name: the exact name first, then a
//! `*.parent` wildcard covering one label, then the default (the first configured
//! certificate), which also answers clients that send no SNI. The name maps are built when a
//! set is loaded, so a handshake allocates nothing unless the name needs lower-casing. The
//! [`reload`] task on the control runtime swaps in a new set when the files change; a set that
//! fails to load is never swapped in. TLS 1.2 and 1.3 only (all rustls speaks); ALPN offers
//! `h2` and `http/1.1`.

pub mod load;
pub mod reload;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use load::{CertError, LoadedCert, Part, Reason};
pub use reload::CertWatch;

use crate::config::{ListenerTls, TlsFiles};
use crate::metrics::Metrics;

type Names = HashMap<Box<str>, usize, foldhash::fast::RandomState>;

/// One generation of a listener's certificates with its name maps.
#[derive(Debug)]
pub struct CertSet {
    /// In config order; never empty.
    certs: Vec<LoadedCert>,
    /// `certs[0]`'s key, kept apart so selection never indexes.
    default: Arc<CertifiedKey>,
    /// Full names (`api.example.com`) → index.
    exact: Names,
    /// Wildcard parents (`app.example.com` for `*.app.example.com`) → index.
    wildcard: Names,
}

impl CertSet {
    /// Loads every entry (blocking I/O) and builds the maps.
    pub fn load(files: &[TlsFiles]) -> Result<Self, CertError> {
        let certs = files
            .iter()
            .enumerate()
            .map(|(i, f)| load::load_one(i, f))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_loaded(certs)
    }

    /// Builds the maps. With more than one certificate, each needs DNS names and no name may
    /// appear in two certificates (the choice between them would be arbitrary).
    pub fn from_loaded(certs: Vec<LoadedCert>) -> Result<Self, CertError> {
        let Some(first) = certs.first() else {
            return Err(CertError::new(
                0,
                Part::Cert,
                std::path::PathBuf::new(),
                Reason::Empty,
            ));
        };
        let default = Arc::clone(&first.key);
        let several = certs.len() > 1;
        let mut exact = Names::default();
        let mut wildcard = Names::default();
        for (i, c) in certs.iter().enumerate() {
            if several && c.names.is_empty() {
                return Err(CertError::new(
                    i,
                    Part::Cert,
                    c.cert_path.clone(),
                    Reason::NoNames,
                ));
            }
            for name in &c.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) if !parent.is_empty() && !parent.contains('*') => {
                        (&mut wildcard, parent)
                    }
                    // A `*` anywhere else matches nothing a client can send for it.
                    _ if name.contains('*') => continue,
                    _ => (&mut exact, &**name),
                };
                if let Some(&other) = map.get(key) {
                    let other = certs
                        .get(other)
                        .map_or_else(String::new, |o| o.cert_path.display().to_string());
                    return Err(CertError::new(
                        i,
                        Part::Cert,
                        c.cert_path.clone(),
                        Reason::Duplicate {
                            name: name.to_string(),
                            other,
                        },
                    ));
                }
                map.insert(key.into(), i);
            }
        }
        Ok(Self {
            certs,
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for a client's server name (`None`: the client sent no SNI).
    #[must_use]
    pub fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return &self.default;
        };
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        // rustls already lower-cases SNI; the check keeps the resolver right on its own.
        let name: Cow<'_, str> = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(sni.to_ascii_lowercase())
        } else {
            Cow::Borrowed(sni)
        };
        let index = self.exact.get(&*name).or_else(|| {
            name.split_once('.')
                .and_then(|(label, parent)| (!label.is_empty()).then_some(parent))
                .and_then(|parent| self.wildcard.get(parent))
        });
        index
            .and_then(|&i| self.certs.get(i))
            .map_or(&self.default, |c| &c.key)
    }

    /// The certificates, in config order (the first is the default).
    #[must_use]
    pub fn certificates(&self) -> &[LoadedCert] {
        &self.certs
    }

    /// Each certificate's file and its `notAfter` (Unix seconds), for the expiry metric.
    pub fn expiries(&self) -> impl Iterator<Item = (&std::path::Path, i64)> {
        self.certs.iter().map(|c| (&*c.cert_path, c.not_after))
    }
}

/// The rustls hook: one atomic load of the current set per handshake.
#[derive(Debug)]
pub struct SniResolver {
    current: ArcSwap<CertSet>,
}

impl SniResolver {
    #[must_use]
    pub fn new(set: CertSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// Serves `set` from the next handshake on.
    pub fn swap(&self, set: CertSet) {
        self.current.store(Arc::new(set));
    }

    /// The set in use now.
    #[must_use]
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.current.load().select(hello.server_name())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads listener `index`'s certificates and builds its rustls config (TLS 1.2+, ALPN `h2`
/// then `http/1.1`) and the watch that reloads them; start the watch with [`CertWatch::run`].
pub fn listener(
    index: usize,
    tls: &ListenerTls,
    metrics: &Metrics,
) -> Result<(Arc<rustls::ServerConfig>, CertWatch), TlsSetupError> {
    // Stamped before loading: a change racing the load is seen (and loaded) again later.
    let seen = reload::stamps(&tls.certificates);
    let set = CertSet::load(&tls.certificates)?;
    let handles = metrics.tls.listener(index);
    handles.set_expiry(set.expiries());
    let resolver = Arc::new(SniResolver::new(set));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let watch = CertWatch::new(index, tls, resolver, handles, seen);
    Ok((Arc::new(cfg), watch))
}

#[cfg(test)]
mod tests;
