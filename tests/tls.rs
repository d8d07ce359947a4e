//! TLS termination on a listener: rustls, HTTP/1.1 and HTTP/2 chosen by ALPN, certificates
//! chosen by SNI and reloaded from disk, TLS 1.2+ only; and upstream TLS verified against
//! `upstream.ca_file`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Harness, cell_list, registry};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::SupportedProtocolVersion;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type ClientTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn tls_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The leaf (first certificate) of a PEM file.
fn leaf(path: impl AsRef<Path>) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

fn client_config(
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[u8],
    sni: bool,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg.enable_sni = sni;
    Arc::new(cfg)
}

/// A verified handshake for `name` (sent as SNI when `sni`), TLS 1.2 or 1.3.
async fn handshake(addr: SocketAddr, name: &str, sni: bool) -> ClientTls {
    let cfg = client_config(rustls::DEFAULT_VERSIONS, b"http/1.1", sni);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

async fn connect(addr: SocketAddr, alpn: &[u8]) -> ClientTls {
    let cfg = client_config(rustls::DEFAULT_VERSIONS, alpn, true);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("acme.app.test").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// The leaf certificate the server presented.
fn served(tls: &ClientTls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// `base_config` with `listener` (TOML lines) added to the first listener.
fn with_listener(listener: &str) -> String {
    let cfg = common::base_config("").replace(
        "address = \"127.0.0.1:0\"\n\n[admin]",
        &format!("address = \"127.0.0.1:0\"\n{listener}\n\n[admin]"),
    );
    assert!(cfg.contains(listener), "listener TLS not configured");
    cfg
}

fn certificates_entry(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> String {
    format!(
        "[[listeners.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.as_ref().display(),
        key.as_ref().display()
    )
}

async fn start(cfg: &str) -> Harness {
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    Harness::start_raw(
        cfg,
        &registry(&cell_list(&cells), common::DEFAULT_TENANTS),
        cells,
    )
    .await
}

/// One line of the admin metrics, e.g. `cellgate_tls_reloads_total{listener="0",result="ok"}`.
async fn metric(h: &Harness, series: &str) -> Option<f64> {
    let body = h.admin_get("/metrics").await.unwrap().body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// One HTTP/2 GET of `uri` over an established TLS stream.
async fn h2_get<S>(tls: S, uri: &str) -> http::Response<hyper::body::Incoming>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
    sender.send_request(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_with_http1_and_http2_by_alpn() {
    let h = start(&with_listener(&format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        tls_fixture("cert.pem"),
        tls_fixture("key.pem")
    )))
    .await;

    // HTTP/1.1 over TLS.
    let tls = connect(h.addr, b"http/1.1").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/tls")
        .header("host", "acme.app.test")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["cell"], "cell-1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");

    // HTTP/2 over TLS.
    let tls = connect(h.addr, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let resp = h2_get(tls, "https://globex.app.test/tls").await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["cell"], "cell-2");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_chosen_by_sni_with_the_first_as_default() {
    common::within(async {
        let h = start(&with_listener(&format!(
            "{}{}{}",
            certificates_entry(tls_fixture("cert.pem"), tls_fixture("key.pem")),
            certificates_entry(tls_fixture("other.pem"), tls_fixture("other.key")),
            certificates_entry(tls_fixture("special.pem"), tls_fixture("special.key")),
        )))
        .await;
        let wildcard = leaf(tls_fixture("cert.pem"));
        for (name, want) in [
            ("acme.app.test", &wildcard),
            ("other.test", &leaf(tls_fixture("other.pem"))),
            ("www.other.test", &leaf(tls_fixture("other.pem"))),
            ("special.app.test", &leaf(tls_fixture("special.pem"))),
        ] {
            let tls = handshake(h.addr, name, true).await;
            assert_eq!(&served(&tls), want, "certificate for {name}");
        }
        // Without SNI the default (first) certificate answers; it covers acme.app.test.
        let tls = handshake(h.addr, "acme.app.test", false).await;
        assert_eq!(served(&tls), wildcard);

        // The chosen certificate's connection carries requests as usual.
        let tls = handshake(h.addr, "special.app.test", true).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/sni")
            .header("host", "acme.app.test")
            .body(Full::<Bytes>::default())
            .unwrap();
        assert_eq!(
            sender.send_request(req).await.unwrap().status(),
            StatusCode::OK
        );
        h.shutdown().await;
    })
    .await;
}

/// Copies `from` over `to` the way deployment tools do: a temporary file renamed into place.
fn replace(dir: &Path, from: impl AsRef<Path>, to: &str) {
    let tmp = dir.join("incoming.tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(to)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    common::within(async {
        let dir = tempfile::tempdir().unwrap();
        replace(dir.path(), tls_fixture("other.pem"), "other.pem");
        replace(dir.path(), tls_fixture("other.key"), "other.key");
        let h = start(&with_listener(&format!(
            "[listeners.tls]\nreload_interval = \"100ms\"\n{}{}",
            certificates_entry(tls_fixture("cert.pem"), tls_fixture("key.pem")),
            certificates_entry(dir.path().join("other.pem"), dir.path().join("other.key")),
        )))
        .await;
        let ok = "cellgate_tls_reloads_total{listener=\"0\",result=\"ok\"}";
        let error = "cellgate_tls_reloads_total{listener=\"0\",result=\"error\"}";
        assert_eq!(metric(&h, ok).await, Some(0.0));
        assert_eq!(metric(&h, error).await, Some(0.0));
        let expiry = format!(
            "cellgate_tls_certificate_expiry_timestamp_seconds{{listener=\"0\",cert=\"{}\"}}",
            dir.path().join("other.pem").display()
        );
        assert!(metric(&h, &expiry).await.unwrap() > 1.7e9);

        let original = leaf(tls_fixture("other.pem"));
        assert_eq!(
            served(&handshake(h.addr, "other.test", true).await),
            original
        );

        // A renewed certificate (same key) renamed over the old one.
        let renewed = leaf(tls_fixture("other-next.pem"));
        replace(dir.path(), tls_fixture("other-next.pem"), "other.pem");
        loop {
            let got = served(&handshake(h.addr, "other.test", true).await);
            if got == renewed {
                break;
            }
            assert_eq!(
                got, original,
                "only the old or the new certificate is ever served"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(metric(&h, ok).await, Some(1.0));

        // A broken file renamed over it: reported and counted, the renewed one keeps serving.
        std::fs::write(
            dir.path().join("broken.tmp"),
            "-----BEGIN CERTIFICATE-----\nnope\n",
        )
        .unwrap();
        std::fs::rename(dir.path().join("broken.tmp"), dir.path().join("other.pem")).unwrap();
        while metric(&h, error).await != Some(1.0) {
            assert_eq!(
                served(&handshake(h.addr, "other.test", true).await),
                renewed
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            served(&handshake(h.addr, "other.test", true).await),
            renewed
        );
        assert_eq!(metric(&h, ok).await, Some(1.0));
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_clients_are_served_and_tls10_or_11_hellos_are_refused() {
    common::within(async {
        let h = start(&with_listener(&format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}",
            tls_fixture("cert.pem"),
            tls_fixture("key.pem")
        )))
        .await;

        // A client that speaks TLS 1.2 only.
        let cfg = client_config(&[&rustls::version::TLS12], b"h2", true);
        let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("acme.app.test").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let resp = h2_get(tls, "https://acme.app.test/tls12").await;
        assert_eq!(resp.status(), StatusCode::OK);

        // The same hello with legacy_version 3.3 gets a ServerHello (so the hello is sound);
        // with 3.1 (TLS 1.0) or 3.2 (TLS 1.1) and no supported_versions extension, a fatal
        // protocol_version alert and never a ServerHello.
        for (legacy_version, refused) in [([3, 3], false), ([3, 1], true), ([3, 2], true)] {
            let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
            tcp.write_all(&legacy_client_hello(legacy_version))
                .await
                .unwrap();
            let mut answer = [0u8; 7];
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
                .await
                .expect("the server neither answered nor closed")
                .unwrap_or(0);
            if refused {
                // Alert record: type 21, version, length 2, level fatal (2), protocol_version (70).
                assert!(
                    n == 0 || answer[0] == 0x15,
                    "{legacy_version:?}: {answer:?}"
                );
                if n == 7 {
                    assert_eq!(answer[5..], [2, 70], "{legacy_version:?}");
                }
            } else {
                assert_eq!(
                    answer[0], 0x16,
                    "{legacy_version:?}: expected a handshake record"
                );
            }
        }
        h.shutdown().await;
    })
    .await;
}

/// A minimal TLS 1.2-style ClientHello record with `version` as legacy_version, SNI, and no
/// supported_versions extension (so `version` is the highest the client speaks).
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut v = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }
    let host = b"acme.app.test";
    let mut sni_entry = vec![0];
    sni_entry.extend(with_len16(host));
    let mut sni = vec![0, 0];
    sni.extend(with_len16(&with_len16(&sni_entry)));
    let mut extensions = sni;
    // supported_groups (secp256r1), ec_point_formats (uncompressed), signature_algorithms
    // (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256), extended_master_secret.
    extensions.extend([0, 10, 0, 4, 0, 2, 0, 23, 0, 11, 0, 2, 1, 0]);
    extensions.extend([0, 13, 0, 6, 0, 4, 4, 3, 8, 4, 0, 23, 0, 0]);

    let mut hello = version.to_vec();
    hello.extend([7u8; 32]); // random
    hello.push(0); // session id
    // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (suites
    // the server has), TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA (one older clients offer).
    hello.extend(with_len16(&[0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x09]));
    hello.extend([1, 0]); // compression: null
    hello.extend(with_len16(&extensions));

    let mut handshake = vec![1];
    handshake.extend(&u32::try_from(hello.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 3, 1];
    record.extend(with_len16(&handshake));
    record
}

/// An https upstream on 127.0.0.1 with the test CA's `*.app.test` certificate (it also names
/// IP 127.0.0.1); counts the requests it served.
async fn https_upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let chain = CertificateDer::pem_file_iter(tls_fixture("cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(tls_fixture("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"served over verified TLS"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_the_configured_ca() {
    common::within(async {
        let (addr, served) = https_upstream().await;
        let cells = vec![("cell-1".to_owned(), vec![format!("https://{addr}")])];
        let text = registry(&cells, &[("acme", "cell-1", "ACTIVE")]);
        let with_ca = |ca: Option<String>| {
            let line = ca.map_or_else(String::new, |p| format!("ca_file = \"{p}\"\n"));
            common::base_config("").replace("[upstream]\n", &format!("[upstream]\n{line}"))
        };

        // The test CA configured: the request reaches the https upstream.
        let h = Harness::start_raw(&with_ca(Some(tls_fixture("ca.pem"))), &text, vec![]).await;
        let r = h.get("acme.app.test", "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body, "served over verified TLS");
        assert_eq!(served.load(Ordering::SeqCst), 1);
        h.shutdown().await;

        // No CA (public roots only), or a CA that did not sign it: the handshake fails like a
        // refused connect (503 cell_unreachable), and nothing reaches the upstream.
        for ca in [None, Some(tls_fixture("other.pem"))] {
            let h = Harness::start_raw(&with_ca(ca.clone()), &text, vec![]).await;
            let r = h.get("acme.app.test", "/").await;
            assert_eq!(
                r.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "ca_file {ca:?}: {}",
                r.body
            );
            assert_eq!(r.json()["error"], "cell_unreachable");
            assert_eq!(served.load(Ordering::SeqCst), 1, "ca_file {ca:?}");
            h.shutdown().await;
        }
    })
    .await;
}
