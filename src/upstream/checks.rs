//! What changes an endpoint's [`Health`]: the active probes of `upstream.health_check`, one
//! task per address, and the gateway failures the forward stage reports (passive outlier
//! ejection, with its cap on how much of an arm may be out at once).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::endpoint::{Arm, Endpoint, Upstreams};
use super::h2::Connectors;
#[cfg(doc)]
use super::health::Health;
use super::{Protocol, Target};
use crate::config::HealthCheckConfig;

/// Records a gateway failure (connect failure, reset, or a 502/503/504) of `ep`, an address of
/// `target` in `arm`. One that crosses the threshold ejects the address, unless that would put
/// more than `max_ejection_percent` of the arm's addresses out at once (one ejection is always
/// allowed), and schedules its return on the current runtime.
pub fn gateway_failed(up: &Upstreams, arm: &Arm<'_>, target: &Target, ep: &Arc<Endpoint>) {
    let room = || {
        let (mut total, mut ejected) = (0usize, 0usize);
        for t in arm.members() {
            for e in t.state(up).endpoints().iter() {
                total += 1;
                ejected += usize::from(e.health.ejected());
            }
        }
        ejected == 0 || (ejected + 1) * 100 <= total * usize::from(up.outlier.max_ejection_percent)
    };
    let Some(d) = ep.health.failure(&up.outlier, room) else {
        return;
    };
    up.metrics.ejected(&target.url, ep.addr);
    tracing::warn!(cell.id = %arm.cell, target = %target.url, address = %ep.addr, ejection = ?d,
        "target address ejected after consecutive gateway failures");
    let ep = Arc::clone(ep);
    let url = Arc::clone(&target.url);
    let metrics = up.metrics.clone();
    tokio::spawn(async move {
        tokio::time::sleep(d).await;
        ep.health.uneject();
        if ep.usable() {
            metrics.set_up(&url, ep.addr, true);
        }
        tracing::info!(target = %url, address = %ep.addr, "ejected target address back in rotation");
    });
}

/// Whether a response status counts as a gateway failure.
#[must_use]
pub const fn gateway_failure(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Probes `ep` every `cfg.interval` until the task is aborted (its address left the target).
pub async fn check_loop(
    up: Arc<Upstreams>,
    target: Target,
    ep: Arc<Endpoint>,
    cfg: Arc<HealthCheckConfig>,
    tls: Connectors,
) {
    // Spread the first probes so a large registry does not probe everything at once.
    let jitter = cfg.interval.mul_f64(fastrand::f64());
    tokio::time::sleep(jitter.min(Duration::from_millis(250))).await;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = tokio::time::timeout(cfg.timeout, probe(&target, &ep, &cfg, &tls)).await;
        let pass = matches!(result, Ok(Ok(status)) if cfg.passes(status));
        up.metrics.checked(&target.url, pass);
        match ep.health.checked(pass, &cfg) {
            Some(true) => {
                up.metrics.set_up(&target.url, ep.addr, ep.usable());
                tracing::info!(target = %target.url, address = %ep.addr, "health check passing: back in rotation");
            }
            Some(false) => {
                up.metrics.set_up(&target.url, ep.addr, false);
                let why = match result {
                    Err(_) => "timed out".to_owned(),
                    Ok(Err(e)) => e,
                    Ok(Ok(s)) => format!("status {s}"),
                };
                tracing::warn!(target = %target.url, address = %ep.addr, reason = %why, "health check failing: out of rotation");
            }
            None => {}
        }
    }
}

/// One `GET` of the health path on a fresh connection, in the protocol the target's cell
/// speaks (HTTP/2 for `http2`, and for `auto` when ALPN settles on it); the response status.
async fn probe(
    target: &Target,
    ep: &Endpoint,
    cfg: &HealthCheckConfig,
    tls: &Connectors,
) -> Result<u16, String> {
    let tcp = TcpStream::connect(ep.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let req = Request::get(cfg.path.as_str())
        .header(http::header::HOST, target.authority.clone())
        .header(http::header::USER_AGENT, "cellgate-health-check")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    match &target.server_name {
        None if target.protocol == Protocol::Http2 => send_h2(TokioIo::new(tcp), req, target).await,
        None => send(TokioIo::new(tcp), req).await,
        Some(name) => {
            let s = tls
                .of(target.protocol)
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                send_h2(TokioIo::new(s), req, target).await
            } else if target.protocol == Protocol::Http2 {
                Err("TLS: the target did not agree to h2 over ALPN".to_owned())
            } else {
                send(TokioIo::new(s), req).await
            }
        }
    }
}

async fn send<I>(io: I, mut req: Request<Empty<bytes::Bytes>>) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    req.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    // Read the (small) body so the target sees a complete exchange.
    let _ = resp.into_body().collect().await;
    conn.abort();
    Ok(status)
}

async fn send_h2<I>(
    io: I,
    mut req: Request<Empty<bytes::Bytes>>,
    target: &Target,
) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    req.headers_mut().remove(http::header::HOST);
    let scheme = if target.server_name.is_some() {
        "https"
    } else {
        "http"
    };
    *req.uri_mut() = http::Uri::builder()
        .scheme(scheme)
        .authority(target.authority.as_bytes())
        .path_and_query(req.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    conn.abort();
    Ok(status)
}
