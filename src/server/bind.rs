//! Binding: one `SO_REUSEPORT` socket per worker for each listener (or the sockets a
//! predecessor handed over), each TLS listener's acceptor and certificate watch, and the admin
//! socket. Binding happens before anything runs, so port 0 resolves at once.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio_rustls::TlsAcceptor;

use super::ServeError;
use super::handover::Inherited;
use crate::certs::{CertWatch, TlsSetupError};
use crate::config::{Config, ListenerTls};
use crate::metrics::Metrics;

/// A listener's sockets, at least one per worker.
pub(super) struct BoundListener {
    pub index: usize,
    /// One socket per worker (`SO_REUSEPORT`).
    pub sockets: Vec<std::net::TcpListener>,
    pub tls: Option<TlsAcceptor>,
    pub addr: SocketAddr,
}

pub(super) fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The listener's acceptor and the watch that reloads its certificates (see [`crate::certs`]).
fn listener_tls(
    index: usize,
    tls: &ListenerTls,
    metrics: &Metrics,
) -> Result<(TlsAcceptor, CertWatch), TlsSetupError> {
    let (cfg, watch) = crate::certs::listener(index, tls, metrics)?;
    Ok((TlsAcceptor::from(cfg), watch))
}

/// Every listener of `config`, in order, taking inherited sockets first; with the certificate
/// watch of each TLS listener.
pub(super) fn listeners(
    config: &Config,
    mut inherited: Option<&mut Inherited>,
    metrics: &Metrics,
) -> Result<(Vec<BoundListener>, Vec<CertWatch>), ServeError> {
    let workers = config.server.workers;
    let mut listeners = Vec::with_capacity(config.listeners.len());
    let mut cert_watches = Vec::new();
    for (index, l) in config.listeners.iter().enumerate() {
        let mut sockets = inherited
            .as_mut()
            .map(|i| i.take_listener(index, &l.address.to_string()))
            .unwrap_or_default();
        if sockets.is_empty() {
            sockets.push(bind_socket(l.address).map_err(|error| ServeError::Bind {
                addr: l.address,
                error,
            })?);
        }
        let addr = sockets[0].local_addr()?;
        // One socket per worker at least (`SO_REUSEPORT`); inherited extras are served too.
        while sockets.len() < workers {
            sockets.push(bind_socket(addr).map_err(|error| ServeError::Bind { addr, error })?);
        }
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                let (acceptor, watch) =
                    listener_tls(index, t, metrics).map_err(|e| ServeError::ListenerTls {
                        addr,
                        reason: e.to_string(),
                    })?;
                cert_watches.push(watch);
                Some(acceptor)
            }
        };
        listeners.push(BoundListener {
            index,
            sockets,
            tls,
            addr,
        });
    }
    Ok((listeners, cert_watches))
}

/// The admin socket: inherited, or bound to `admin.address`.
pub(super) fn admin(
    config: &Config,
    inherited: Option<&mut Inherited>,
) -> Result<std::net::TcpListener, ServeError> {
    let admin = match inherited.and_then(|i| i.take_admin(&config.admin.address.to_string())) {
        Some(admin) => admin,
        None => {
            std::net::TcpListener::bind(config.admin.address).map_err(|error| ServeError::Bind {
                addr: config.admin.address,
                error,
            })?
        }
    };
    Ok(admin)
}
