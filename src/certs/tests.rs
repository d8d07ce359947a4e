#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;

use super::*;
use crate::config::ListenerTls;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn files(cert: &str, key: &str) -> TlsFiles {
    TlsFiles {
        cert: fixture(cert),
        key: fixture(key),
    }
}

/// `*.app.test` (default), `other.test`, `special.app.test`.
fn three() -> Vec<TlsFiles> {
    vec![
        files("cert.pem", "key.pem"),
        files("other.pem", "other.key"),
        files("special.pem", "special.key"),
    ]
}

fn chosen(set: &CertSet, sni: Option<&str>) -> usize {
    let key = set.select(sni);
    set.certificates()
        .iter()
        .position(|c| Arc::ptr_eq(&c.key, key))
        .unwrap()
}

#[test]
fn exact_then_one_label_wildcard_then_the_default() {
    let set = CertSet::load(&three()).unwrap();
    let names: Vec<&str> = set.certificates()[0].names.iter().map(|n| &**n).collect();
    assert_eq!(names, ["*.app.test", "localhost"]);
    assert_eq!(chosen(&set, Some("other.test")), 1);
    assert_eq!(chosen(&set, Some("www.other.test")), 1);
    assert_eq!(
        chosen(&set, Some("special.app.test")),
        2,
        "exact beats wildcard"
    );
    assert_eq!(chosen(&set, Some("acme.app.test")), 0);
    assert_eq!(chosen(&set, Some("Acme.APP.test")), 0, "case-insensitive");
    assert_eq!(chosen(&set, Some("OTHER.test.")), 1, "trailing dot");
    // A wildcard covers exactly one label.
    assert_eq!(chosen(&set, Some("a.b.other.test")), 0);
    assert_eq!(chosen(&set, Some("app.test")), 0);
    // No SNI, or a name nobody covers: the first certificate.
    assert_eq!(chosen(&set, None), 0);
    assert_eq!(chosen(&set, Some("unknown.test")), 0);
}

#[test]
fn leaf_expiry_is_read() {
    let set = CertSet::load(&three()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for c in set.certificates() {
        let after = u64::try_from(c.not_after).unwrap();
        assert!(after > now && after < now + 20 * 365 * 86_400, "{c:?}");
    }
}

#[test]
fn one_certificate_needs_no_names_but_several_do() {
    assert!(CertSet::load(&[files("nosan.pem", "nosan.key")]).is_ok());
    let e = CertSet::load(&[
        files("other.pem", "other.key"),
        files("nosan.pem", "nosan.key"),
    ])
    .unwrap_err();
    assert_eq!((e.index, e.part), (1, Part::Cert));
    assert!(matches!(e.reason, Reason::NoNames), "{e}");
}

#[test]
fn errors_name_the_entry_and_the_file() {
    let e =
        CertSet::load(&[files("cert.pem", "key.pem"), files("other.pem", "key.pem")]).unwrap_err();
    assert_eq!((e.index, e.part), (1, Part::Key));
    assert!(matches!(e.reason, Reason::KeyMismatch(_)), "{e}");
    assert_eq!(e.path, fixture("key.pem"));

    let e = CertSet::load(&[
        files("other.pem", "other.key"),
        files("other-next.pem", "other.key"),
    ])
    .unwrap_err();
    assert!(
        matches!(&e.reason, Reason::Duplicate { name, .. } if name == "other.test"),
        "{e}"
    );

    let e = CertSet::load(&[files("key.pem", "key.pem")]).unwrap_err();
    assert_eq!(e.part, Part::Cert);
    assert!(matches!(e.reason, Reason::NoCertificate), "{e}");

    let e = CertSet::load(&[files("cert.pem", "cert.pem")]).unwrap_err();
    assert_eq!(e.part, Part::Key);
    assert!(matches!(e.reason, Reason::NoKey), "{e}");

    let e = CertSet::load(&[files("missing.pem", "key.pem")]).unwrap_err();
    assert!(matches!(e.reason, Reason::Read(_)), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

#[tokio::test]
async fn a_change_is_loaded_once_settled_and_a_bad_one_is_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &str| {
        let tmp = dir.path().join("incoming");
        std::fs::copy(fixture(from), &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join(to)).unwrap();
    };
    copy("other.pem", "c.pem");
    copy("other.key", "c.key");
    let tls = ListenerTls {
        certificates: vec![TlsFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("c.key"),
        }],
        reload_interval: Duration::from_secs(3600),
        listed: false,
    };
    let metrics = Metrics::new();
    let (_, mut watch) = listener(0, &tls, &metrics).unwrap();
    let served = |w: &CertWatch| w.resolver.current().select(None).cert[0].clone();
    let original = served(&watch);
    watch.poll().await;
    assert_eq!(served(&watch), original, "nothing changed");

    copy("other-next.pem", "c.pem");
    watch.poll().await;
    assert_eq!(
        served(&watch),
        original,
        "a fresh change waits one interval"
    );
    watch.poll().await;
    let renewed = std::fs::read(fixture("other-next.pem")).unwrap();
    let renewed = rustls_pki_types::CertificateDer::from_pem_slice(&renewed).unwrap();
    assert_eq!(served(&watch), renewed);
    assert_eq!(watch.metrics.reloads_ok.get(), 1);

    std::fs::write(dir.path().join("incoming"), "not a certificate").unwrap();
    std::fs::rename(dir.path().join("incoming"), dir.path().join("c.pem")).unwrap();
    watch.poll().await;
    watch.poll().await;
    watch.poll().await;
    assert_eq!(served(&watch), renewed, "the bad file is never served");
    assert_eq!(
        watch.metrics.reload_errors.get(),
        1,
        "reported once per change"
    );
    assert_eq!(watch.metrics.reloads_ok.get(), 1);
}
