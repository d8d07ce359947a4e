//! A gRPC test cell: service `echo.Echo` served by tonic's server glue (`tonic::server::Grpc`
//! with `tonic_prost::ProstCodec`, what generated code would be) through hyper's HTTP/2 server,
//! on `127.0.0.1:0`. In cleartext it speaks HTTP/2 by prior knowledge only (h2c); over TLS (the
//! fixture certificate, signed by `tests/fixtures/tls/ca.pem`) it offers the ALPN protocols it is
//! given and serves whichever one the client settles on.
//!
//! Methods: `Unary` (echoes the message with the cell, target and HTTP version that answered,
//! the `x-echo-*` request metadata back as response headers), `ServerStream` (`count` replies,
//! `delay_ms` apart), `ClientStream` (counts and sums the `value`s), `Bidi` (one reply per
//! message, sent as the message arrives), `Slow` (sleeps `delay_ms`, then answers). Every
//! answer ends with trailing metadata `x-trailer` naming the method.
//!
//! With [`GrpcCell::goaway_every`] the cell starts a graceful shutdown of each connection
//! (GOAWAY) once it has served that many streams on it, while the listener keeps accepting; it
//! counts the connections it accepted and the calls it served.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::{
    ClientStreamingService, Grpc, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The fully qualified service name.
pub const SERVICE: &str = "echo.Echo";

/// `echo.EchoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    /// `ServerStream`: how many replies.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// `ServerStream`: the pause between replies; `Slow`: the pause before the answer.
    #[prost(uint64, tag = "3")]
    pub delay_ms: u64,
    /// `ClientStream`: summed.
    #[prost(int64, tag = "4")]
    pub value: i64,
}

/// `echo.EchoReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The cell and target that answered.
    #[prost(string, tag = "2")]
    pub cell: String,
    #[prost(string, tag = "3")]
    pub target: String,
    /// The HTTP version the cell saw (`HTTP/2.0`, `HTTP/1.1`).
    #[prost(string, tag = "4")]
    pub version: String,
    /// `ServerStream` and `Bidi`: the reply's position (from 0); `ClientStream`: the count.
    #[prost(uint32, tag = "5")]
    pub index: u32,
    /// `ClientStream`: the sum of the `value`s.
    #[prost(int64, tag = "6")]
    pub sum: i64,
    /// The request's `x-echo-*` metadata, as `name=value`, sorted.
    #[prost(string, repeated, tag = "7")]
    pub metadata: Vec<String>,
    /// The request's `grpc-timeout` header as the cell received it (empty when none).
    #[prost(string, tag = "8")]
    pub grpc_timeout: String,
    /// The request's authority (`:authority`, or `host`).
    #[prost(string, tag = "9")]
    pub authority: String,
}

/// What the cell saw of a request before tonic took it (tonic keeps only its extensions).
#[derive(Clone, Debug)]
struct Seen {
    cell: String,
    target: String,
    version: String,
    grpc_timeout: String,
    authority: String,
}

impl Seen {
    fn reply(&self, message: String) -> EchoReply {
        EchoReply {
            message,
            cell: self.cell.clone(),
            target: self.target.clone(),
            version: self.version.clone(),
            grpc_timeout: self.grpc_timeout.clone(),
            authority: self.authority.clone(),
            ..EchoReply::default()
        }
    }

    fn of<T>(req: &Request<T>) -> Self {
        req.extensions()
            .get::<Self>()
            .cloned()
            .expect("the router records what it saw")
    }
}

#[derive(Debug)]
struct State {
    cell: String,
    target: String,
    /// Start a graceful shutdown of a connection after this many streams on it.
    goaway_after: Option<u32>,
    connections: AtomicU64,
    calls: AtomicU64,
}

/// A running gRPC cell; stopped (listener and connections) when dropped.
#[derive(Debug)]
pub struct GrpcCell {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for GrpcCell {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcCell {
    /// A cleartext cell speaking HTTP/2 by prior knowledge (h2c) only.
    pub async fn h2c(cell: &str, target: &str) -> Self {
        Self::start(cell, target, None, None).await
    }

    /// A cleartext h2c cell that sends GOAWAY on each connection after `streams` streams.
    pub async fn goaway_every(cell: &str, target: &str, streams: u32) -> Self {
        Self::start(cell, target, None, Some(streams)).await
    }

    /// A TLS cell offering the ALPN protocols `alpn` (e.g. `[b"h2", b"http/1.1"]`).
    pub async fn tls(cell: &str, target: &str, alpn: &[&[u8]]) -> Self {
        Self::start(cell, target, Some(tls_acceptor(alpn)), None).await
    }

    async fn start(
        cell: &str,
        target: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        goaway_after: Option<u32>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            cell: cell.to_owned(),
            target: target.to_owned(),
            goaway_after,
            connections: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        });
        let is_tls = tls.is_some();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), tls));
        Self {
            addr,
            tls: is_tls,
            state,
            task,
        }
    }

    /// The target URL for the registry (`http://` or `https://` and the address).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Calls (streams) served so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }
}

/// A TLS acceptor with the fixture certificate (`*.app.test`, `localhost`, `127.0.0.1`) and
/// the ALPN protocols `alpn`, in order of preference.
pub fn tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let dir = format!("{}/tests/fixtures/tls", env!("CARGO_MANIFEST_DIR"));
    let chain = CertificateDer::pem_file_iter(format!("{dir}/cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    // Owned here, so aborting this task ends every connection too.
    let mut conns = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: let some close rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        conns.spawn(serve(tcp, Arc::clone(&state), tls.clone()));
        while conns.try_join_next().is_some() {}
    }
}

async fn serve(tcp: TcpStream, state: Arc<State>, tls: Option<tokio_rustls::TlsAcceptor>) {
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve_h2(TokioIo::new(tcp), state).await;
    };
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_h2(TokioIo::new(tls), state).await;
    } else {
        let svc = TowerToHyperService::new(Echo::new(state));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    }
}

/// Serves one HTTP/2 connection; starts its graceful shutdown once the router asks.
async fn serve_h2<I>(io: I, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let echo = Echo::new(state);
    let goaway = Arc::clone(&echo.goaway);
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, TowerToHyperService::new(echo));
    let mut conn = pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = goaway.notified(), if !closing => {
                // GOAWAY: streams already open finish; new ones go to another connection.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The router of one connection: records what it saw, dispatches by path to tonic.
#[derive(Clone)]
struct Echo {
    state: Arc<State>,
    streams: Arc<AtomicU32>,
    goaway: Arc<Notify>,
}

impl Echo {
    fn new(state: Arc<State>) -> Self {
        Self {
            state,
            streams: Arc::new(AtomicU32::new(0)),
            goaway: Arc::new(Notify::new()),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<Incoming>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        let n = self.streams.fetch_add(1, Ordering::SeqCst) + 1;
        if self.state.goaway_after == Some(n) {
            self.goaway.notify_one();
        }
        self.state.calls.fetch_add(1, Ordering::SeqCst);
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let authority = req
            .uri()
            .authority()
            .map_or_else(|| header("host"), ToString::to_string);
        let seen = Seen {
            cell: self.state.cell.clone(),
            target: self.state.target.clone(),
            version: format!("{:?}", req.version()),
            grpc_timeout: header("grpc-timeout"),
            authority,
        };
        req.extensions_mut().insert(seen);
        let method = req
            .uri()
            .path()
            .strip_prefix(&format!("/{SERVICE}/"))
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let resp = match method.as_str() {
                "Unary" => codec().unary(Unary, req).await,
                "ServerStream" => codec().server_streaming(ServerStream, req).await,
                "ClientStream" => codec().client_streaming(ClientStream, req).await,
                "Bidi" => codec().streaming(Bidi, req).await,
                "Slow" => codec().unary(Slow, req).await,
                _ => return Ok(Status::unimplemented(format!("no method {method:?}")).into_http()),
            };
            Ok(with_trailer(resp, &method))
        })
    }
}

fn codec() -> Grpc<ProstCodec<EchoReply, EchoRequest>> {
    Grpc::new(ProstCodec::default())
}

/// Adds `x-trailer: METHOD` to the trailers tonic ends the answer with (next to `grpc-status`).
fn with_trailer(resp: http::Response<Body>, method: &str) -> http::Response<Body> {
    let value = HeaderValue::from_str(method).unwrap();
    resp.map(|body| {
        Body::new(body.map_frame(move |frame| match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.insert("x-trailer", value.clone());
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }))
    })
}

type ReplyStream = ReceiverStream<Result<EchoReply, Status>>;

struct Unary;

impl UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let seen = Seen::of(&req);
        let echoed: http::HeaderMap = req
            .metadata()
            .clone()
            .into_headers()
            .into_iter()
            .filter_map(|(name, value)| Some((name?, value)))
            .filter(|(name, _)| name.as_str().starts_with("x-echo-"))
            .collect();
        let mut listed: Vec<String> = echoed
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect();
        listed.sort();
        let mut reply = seen.reply(req.into_inner().message);
        reply.metadata = listed;
        let mut resp = Response::new(reply);
        *resp.metadata_mut() = MetadataMap::from_headers(echoed);
        Box::pin(async move { Ok(resp) })
    }
}

struct Slow;

impl UnaryService<EchoRequest> for Slow {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let seen = Seen::of(&req);
        let msg = req.into_inner();
        Box::pin(async move {
            // No deadline of its own: whatever ends the call early is the proxy's doing.
            tokio::time::sleep(Duration::from_millis(msg.delay_ms)).await;
            Ok(Response::new(seen.reply(msg.message)))
        })
    }
}

struct ServerStream;

impl ServerStreamingService<EchoRequest> for ServerStream {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let seen = Seen::of(&req);
        let msg = req.into_inner();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for index in 0..msg.count {
                if index > 0 {
                    tokio::time::sleep(Duration::from_millis(msg.delay_ms)).await;
                }
                let mut reply = seen.reply(format!("{} {index}", msg.message));
                reply.index = index;
                // The call is gone (cancelled, reset): stop.
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(async move { Ok(Response::new(ReceiverStream::new(rx))) })
    }
}

struct ClientStream;

impl ClientStreamingService<EchoRequest> for ClientStream {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let seen = Seen::of(&req);
        let mut messages = req.into_inner();
        Box::pin(async move {
            let (mut count, mut sum) = (0, 0);
            while let Some(m) = messages.message().await? {
                count += 1;
                sum += m.value;
            }
            let mut reply = seen.reply(format!("{count} messages"));
            reply.index = count;
            reply.sum = sum;
            Ok(Response::new(reply))
        })
    }
}

struct Bidi;

impl StreamingService<EchoRequest> for Bidi {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let seen = Seen::of(&req);
        let mut messages = req.into_inner();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut index = 0;
            // One reply per message, as soon as it arrives: nothing waits for the end.
            while let Ok(Some(m)) = messages.message().await {
                let mut reply = seen.reply(m.message);
                reply.index = index;
                index += 1;
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(async move { Ok(Response::new(ReceiverStream::new(rx))) })
    }
}
