//! ~40-line hyper 1.x reverse proxy: hyper-util's legacy pooled `Client` on a multi-thread
//! tokio runtime with ONE worker, default release profile, system allocator. This is the
//! "0.75" baseline: what plain, idiomatic hyper code gives before any tuning.
//!
//! Usage: hyper-minimal LISTEN_ADDR UPSTREAM_ADDR   (e.g. 127.0.0.1:18083 127.0.0.1:18080)

use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: hyper-minimal LISTEN_ADDR UPSTREAM_ADDR".into());
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri: Uri = format!("http://{upstream}{pq}").parse().expect("valid uri");
                    *req.uri_mut() = uri;
                    client.request(req)
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
