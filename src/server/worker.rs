//! The worker threads: one current-thread runtime each, with its own upstream pool, its share
//! of every listener's sockets, and the follower that closes long-lived exchanges of tenants
//! that moved. A worker stops accepting on the stop signal and gives its connections up to
//! `server.shutdown_grace` to finish.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::bind::BoundListener;
use crate::proxy::accept::{ConnTracker, ListenerCtx, accept_loop, http_builder};
use crate::proxy::{Shared, Worker};
use crate::shutdown::{Stop, stopped};
use crate::upstream::Pool;

/// Starts `server.workers` threads; each receiver resolves when its thread has ended.
pub(super) fn start(
    shared: &Arc<Shared>,
    listeners: &[BoundListener],
    upstream_tls: &Arc<rustls::ClientConfig>,
    stop: &Stop,
) -> std::io::Result<Vec<oneshot::Receiver<()>>> {
    let workers = shared.config.server.workers;
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let mut mine = Vec::with_capacity(listeners.len());
        for l in listeners {
            for sock in l.sockets.iter().skip(id).step_by(workers) {
                mine.push((l.index, sock.try_clone()?, l.tls.clone()));
            }
        }
        let shared = Arc::clone(shared);
        let tls = Arc::clone(upstream_tls);
        let stop = stop.clone();
        let grace = shared.config.server.shutdown_grace;
        let (done_tx, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("cellgate-worker-{id}"))
            .spawn(move || {
                if let Err(e) = worker_main(id, shared, tls, mine, stop, grace) {
                    tracing::error!(worker = id, error = %e, "worker failed");
                }
                drop(done_tx);
            })?;
        threads.push(done_rx);
    }
    Ok(threads)
}

fn worker_main(
    id: usize,
    shared: Arc<Shared>,
    upstream_tls: Arc<rustls::ClientConfig>,
    listeners: Vec<(usize, std::net::TcpListener, Option<TlsAcceptor>)>,
    mut stop: Stop,
    grace: Duration,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let pool = Pool::new(&shared.config.upstream, upstream_tls);
        let long_lived = Rc::new(crate::proxy::moves::LongLived::default());
        let worker = Rc::new(Worker {
            shared: Arc::clone(&shared),
            pool: Rc::clone(&pool),
            long_lived: Rc::clone(&long_lived),
            meter: shared.meter(id),
        });
        let follower = tokio::task::spawn_local(crate::proxy::moves::follow(
            long_lived,
            Arc::clone(&shared.snapshot),
            stop.clone(),
        ));
        let sweeper = tokio::task::spawn_local(async move {
            let every = pool.idle_timeout() / 2;
            loop {
                tokio::time::sleep(every).await;
                pool.sweep();
            }
        });
        let tracker = Rc::new(ConnTracker::default());
        let builder = Rc::new(http_builder(&shared.config.server));
        let mut loops = Vec::with_capacity(listeners.len());
        for (index, std_listener, tls) in listeners {
            let listener = TcpListener::from_std(std_listener)?;
            let ctx = ListenerCtx {
                index,
                tls,
                proxy_protocol: shared.config.listeners[index].proxy_protocol,
                worker: Rc::clone(&worker),
                builder: Rc::clone(&builder),
                tracker: Rc::clone(&tracker),
                stop: stop.clone(),
            };
            loops.push(tokio::task::spawn_local(accept_loop(listener, ctx)));
        }
        stopped(&mut stop).await;
        for l in loops {
            let _ = l.await;
        }
        sweeper.abort();
        follower.abort();
        if tokio::time::timeout(grace, tracker.all_closed()).await.is_err() {
            tracing::warn!(grace = ?grace, "shutdown grace expired; closing the remaining connections");
        }
        Ok(())
    })
}
