//! A stock gRPC client for `echo.Echo` (see `grpc_cell`): `tonic::client::Grpc` with
//! `tonic_prost::ProstCodec`, the glue generated code would be, over hyper-util's pooled client
//! speaking HTTP/2 by prior knowledge (or, to check a TLS cell directly, over one hand-made
//! HTTP/2 connection). Every connection goes to one address (the proxy, or a cell directly)
//! whatever the call's authority, so a call names its tenant the way a real client does:
//! `:authority` `acme.app.test`.
//!
//! The client has no deadline of its own: `Request::set_timeout` sends `grpc-timeout`, and the
//! server side (here, the proxy) enforces it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::{GrpcMethod, IntoRequest, IntoStreamingRequest, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::grpc_cell::{EchoReply, EchoRequest, SERVICE};

/// A connector that dials one address, whatever the URI says.
#[derive(Clone, Debug)]
pub struct Dial(pub SocketAddr);

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tcp))
        })
    }
}

/// How calls leave: hyper-util's pooled client (cleartext h2c), or one HTTP/2 connection made
/// by hand (over TLS).
#[derive(Clone, Debug)]
enum Transport {
    Pooled(Box<Client<Dial, Body>>),
    Conn(SendRequest<Body>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Request<Body>> for Transport {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Pooled(c) => {
                tower_service::Service::<http::Request<Body>>::poll_ready(c, cx).map_err(Into::into)
            }
            Self::Conn(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self {
            Self::Pooled(c) => {
                let f = c.request(req);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            Self::Conn(c) => {
                let f = c.send_request(req);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
        }
    }
}

/// An `echo.Echo` client; clones share connections.
#[derive(Clone, Debug)]
pub struct EchoClient {
    grpc: Grpc<Transport>,
}

impl EchoClient {
    /// Calls to `authority` (e.g. `acme.app.test`), sent over cleartext HTTP/2 to `addr`.
    pub fn new(addr: SocketAddr, authority: &str) -> Self {
        let transport = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(Dial(addr));
        Self::with(Transport::Pooled(Box::new(transport)), "http", authority)
    }

    /// Calls to `authority` over one new cleartext HTTP/2 connection to `addr`; the task
    /// driving it ends when the connection closes.
    pub async fn one_connection(addr: SocketAddr, authority: &str) -> (Self, JoinHandle<()>) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (send, conn) = Self::handshake(TokioIo::new(tcp)).await;
        (Self::with(Transport::Conn(send), "http", authority), conn)
    }

    /// Calls to `authority` over one TLS connection to `addr` (certificate checked against the
    /// test CA for `authority`), ALPN `h2` only; also the protocol the server settled on.
    pub async fn tls(addr: SocketAddr, authority: &str) -> (Self, Option<Vec<u8>>) {
        let dir = format!("{}/tests/fixtures/tls", env!("CARGO_MANIFEST_DIR"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(format!("{dir}/ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from(authority.to_owned()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (send, _conn) = Self::handshake(TokioIo::new(tls)).await;
        (Self::with(Transport::Conn(send), "https", authority), alpn)
    }

    async fn handshake<I>(io: I) -> (SendRequest<Body>, JoinHandle<()>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        (send, task)
    }

    fn with(transport: Transport, scheme: &str, authority: &str) -> Self {
        let origin: Uri = format!("{scheme}://{authority}").parse().unwrap();
        Self {
            grpc: Grpc::with_origin(transport, origin),
        }
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("service was not ready: {e}")))
    }

    fn path(method: &'static str) -> PathAndQuery {
        format!("/{SERVICE}/{method}").parse().unwrap()
    }

    pub async fn unary(
        &mut self,
        req: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.call_unary("Unary", req).await
    }

    /// `Slow`: answers after `delay_ms`.
    pub async fn slow(
        &mut self,
        req: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.call_unary("Slow", req).await
    }

    async fn call_unary(
        &mut self,
        method: &'static str,
        req: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        let mut req = req.into_request();
        req.extensions_mut()
            .insert(GrpcMethod::new(SERVICE, method));
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        self.grpc.unary(req, Self::path(method), codec).await
    }

    pub async fn server_stream(
        &mut self,
        req: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.ready().await?;
        let mut req = req.into_request();
        req.extensions_mut()
            .insert(GrpcMethod::new(SERVICE, "ServerStream"));
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        self.grpc
            .server_streaming(req, Self::path("ServerStream"), codec)
            .await
    }

    pub async fn client_stream(
        &mut self,
        req: impl IntoStreamingRequest<Message = EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        let mut req = req.into_streaming_request();
        req.extensions_mut()
            .insert(GrpcMethod::new(SERVICE, "ClientStream"));
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        self.grpc
            .client_streaming(req, Self::path("ClientStream"), codec)
            .await
    }

    pub async fn bidi(
        &mut self,
        req: impl IntoStreamingRequest<Message = EchoRequest>,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.ready().await?;
        let mut req = req.into_streaming_request();
        req.extensions_mut()
            .insert(GrpcMethod::new(SERVICE, "Bidi"));
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        self.grpc.streaming(req, Self::path("Bidi"), codec).await
    }
}

/// A request with `message` and the other fields at their defaults.
pub fn msg(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..EchoRequest::default()
    }
}
