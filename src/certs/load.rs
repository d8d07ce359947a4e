//! Reading one certificate from disk: the PEM chain (leaf first) and the PEM private key, the
//! key checked against the leaf, and the leaf's DNS names and expiry read from its DER.
//!
//! Called by config validation, by [`crate::server::Server::bind`] and by the reload task (off
//! the runtime: it is blocking file I/O and parsing). Errors name the file, never its content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// One loaded certificate with what SNI selection needs.
pub struct LoadedCert {
    /// Chain and signing key, handed to rustls as is.
    pub key: Arc<CertifiedKey>,
    /// The leaf's subjectAltName DNS names, lower-case, without a trailing dot.
    pub names: Vec<Box<str>>,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The certificate file it came from (the name in metrics and logs).
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for LoadedCert {
    // Only names and path: a signing key has no business in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("cert_path", &self.cert_path)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Which file of a certificate entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

impl Part {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cert => "cert",
            Self::Key => "key",
        }
    }
}

/// A certificate entry that cannot be served: which entry (config order), which file, why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct CertError {
    /// Index of the entry in the listener's certificate list.
    pub index: usize,
    pub part: Part,
    pub path: PathBuf,
    pub reason: Reason,
}

#[derive(Debug, thiserror::Error)]
pub enum Reason {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("not valid PEM: {0}")]
    Pem(String),
    #[error("no certificate found (expected PEM CERTIFICATE blocks, leaf first)")]
    NoCertificate,
    #[error("no private key found (expected a PEM PKCS#8, PKCS#1 or SEC1 key)")]
    NoKey,
    #[error("private key not usable: {0}")]
    UnusableKey(String),
    #[error("private key does not match the certificate {0}")]
    KeyMismatch(String),
    #[error("certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("certificate has no DNS subjectAltName: with several certificates each needs names")]
    NoNames,
    #[error("name {name:?} is also in {other}; each name may have one certificate")]
    Duplicate { name: String, other: String },
    #[error("no certificates configured")]
    Empty,
}

impl CertError {
    pub(crate) const fn new(index: usize, part: Part, path: PathBuf, reason: Reason) -> Self {
        Self {
            index,
            part,
            path,
            reason,
        }
    }
}

fn read(index: usize, part: Part, path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path)
        .map_err(|e| CertError::new(index, part, path.to_path_buf(), Reason::Read(e)))
}

/// Loads entry `index` of a listener's list.
pub fn load_one(index: usize, files: &TlsFiles) -> Result<LoadedCert, CertError> {
    let cert_err = |reason| CertError::new(index, Part::Cert, files.cert.clone(), reason);
    let key_err = |reason| CertError::new(index, Part::Key, files.key.clone(), reason);

    let pem = read(index, Part::Cert, &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(Reason::Pem(e.to_string())))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err(Reason::NoCertificate));
    };
    let (names, not_after) = leaf_facts(leaf).map_err(cert_err)?;

    let key_pem = read(index, Part::Key, &files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => return Err(key_err(Reason::NoKey)),
        Err(e) => return Err(key_err(Reason::Pem(e.to_string()))),
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_err(Reason::UnusableKey(e.to_string())))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; rustls itself lets that pass.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(key_err(Reason::KeyMismatch(
                files.cert.display().to_string(),
            )));
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
        cert_path: files.cert.clone(),
    })
}

/// The leaf's DNS names (lower-case) and notAfter.
fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(Vec<Box<str>>, i64), Reason> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| Reason::Parse(e.to_string()))?;
    let mut names: Vec<Box<str>> = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Reason::Parse(format!("subjectAltName: {e}")))?;
    if let Some(san) = san {
        for g in &san.value.general_names {
            if let GeneralName::DNSName(n) = g {
                let n = n.trim_end_matches('.').to_ascii_lowercase();
                if !n.is_empty() && !names.iter().any(|k| **k == *n) {
                    names.push(n.into_boxed_str());
                }
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}
