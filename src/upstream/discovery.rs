//! The upstream control task: keeps [`Upstreams`] in step with the registry snapshot,
//! re-resolves targets named by DNS, and runs the active health checks.
//!
//! One task per target. A target named by IP has one fixed endpoint. A target named by host
//! (an ALB's DNS name, a Cloud Map service) is resolved at once and again when its answer
//! expires: the record TTL clamped to `upstream.dns.min_ttl ..= max_ttl`, because ALB
//! addresses change over time. Every address answered becomes an endpoint; an address that
//! disappears is retired (its pooled connections are dropped as they come back, in-flight
//! requests finish), and a failed or empty resolution keeps the last good set and retries
//! sooner. Each endpoint gets its own health-check task when `upstream.health_check` is set.
//! A target that leaves the registry has its task (and its checkers) aborted.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::task::{AbortHandle, JoinSet};

use super::Target;
use super::checks;
use super::endpoint::{Endpoint, TargetState, Upstreams};
use super::h2::Connectors;
use crate::config::{DnsConfig, HealthCheckConfig, UpstreamConfig};
use crate::shutdown::{Stop, stopped};

/// Looks host names up, with the TTL of the answer.
#[derive(Clone)]
pub struct Dns {
    resolver: Option<TokioResolver>,
    cfg: DnsConfig,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("nameservers", &self.cfg.nameservers)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// A resolver for `cfg` (configured name servers, else the system's). When the system
    /// configuration cannot be read, lookups fall back to the OS resolver with `max_ttl`.
    #[must_use]
    pub fn new(cfg: &DnsConfig) -> Self {
        let builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| tracing::warn!(error = %e, "system DNS config unreadable; using the OS resolver without TTLs"))
                .ok()
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|a| {
                    let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                    udp.port = a.port();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            Some(TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            ))
        };
        let resolver = builder.and_then(|mut b| {
            let o = b.options_mut();
            o.timeout = cfg.timeout;
            o.attempts = 1;
            // The cache must not outlive our ceiling, or re-resolving would read a stale answer.
            o.positive_max_ttl = Some(cfg.max_ttl);
            o.negative_max_ttl = Some(cfg.min_ttl);
            b.build()
                .map_err(|e| tracing::warn!(error = %e, "DNS resolver setup failed; using the OS resolver without TTLs"))
                .ok()
        });
        Self {
            resolver,
            cfg: cfg.clone(),
        }
    }

    /// The addresses of `host` and how long to keep them (clamped TTL).
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Duration), String> {
        let (ips, ttl): (Vec<IpAddr>, Duration) = match &self.resolver {
            Some(r) => {
                let answer = r.lookup_ip(host).await.map_err(|e| e.to_string())?;
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                (answer.iter().collect(), ttl)
            }
            None => {
                let addrs =
                    tokio::time::timeout(self.cfg.timeout, tokio::net::lookup_host((host, port)))
                        .await
                        .map_err(|_| "timed out".to_owned())?
                        .map_err(|e| e.to_string())?;
                (addrs.map(|a| a.ip()).collect(), self.cfg.max_ttl)
            }
        };
        if ips.is_empty() {
            return Err("no address in the answer".to_owned());
        }
        let mut addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        Ok((addrs, ttl.clamp(self.cfg.min_ttl, self.cfg.max_ttl)))
    }
}

/// Everything a target's task needs.
#[derive(Clone)]
struct Ctx {
    up: Arc<Upstreams>,
    dns: Dns,
    health: Option<Arc<HealthCheckConfig>>,
    tls: Connectors,
}

/// What discovery follows: the targets named now, and a signal whenever they may have changed.
/// The placement snapshot handle is one: each generation may name other targets.
pub trait Watched: Send + Sync + 'static {
    /// A receiver that sees a change whenever the targets may have changed.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Calls `f` with every target named now (a target may come more than once).
    fn each_target(&self, f: &mut dyn FnMut(&Target));
}

/// Runs until `stop`: follows what `watched` names and targets first met by requests.
pub async fn run<W: Watched>(
    up: Arc<Upstreams>,
    watched: Arc<W>,
    cfg: UpstreamConfig,
    tls: Arc<rustls::ClientConfig>,
    mut stop: Stop,
) {
    let ctx = Ctx {
        dns: Dns::new(&cfg.dns),
        health: cfg.health_check.map(Arc::new),
        tls: Connectors::new(&tls),
        up: Arc::clone(&up),
    };
    let mut changes = watched.changes();
    let mut tasks: HashMap<Arc<str>, (Arc<TargetState>, AbortHandle)> = HashMap::new();
    let mut set = JoinSet::new();
    loop {
        sync(&ctx, &*watched, &mut tasks, &mut set);
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            () = up.wake.notified() => {}
            () = stopped(&mut stop) => break,
        }
        // Reap tasks that ended (they only end by being aborted).
        while set.try_join_next().is_some() {}
    }
    set.shutdown().await;
}

/// Starts a task for every target named now that has none, and drops targets no longer
/// named.
fn sync<W: Watched + ?Sized>(
    ctx: &Ctx,
    watched: &W,
    tasks: &mut HashMap<Arc<str>, (Arc<TargetState>, AbortHandle)>,
    set: &mut JoinSet<()>,
) {
    watched.each_target(&mut |t| {
        let state = Arc::clone(t.state(&ctx.up));
        let running = tasks
            .get(&t.url)
            .is_some_and(|(s, _)| Arc::ptr_eq(s, &state));
        if !running {
            if let Some((_, old)) = tasks.remove(&t.url) {
                old.abort();
            }
            let h = set.spawn(target_task(ctx.clone(), t.clone(), Arc::clone(&state)));
            tasks.insert(Arc::clone(&t.url), (state, h));
        }
    });
    let gone = ctx.up.retain(|| {
        let mut named = HashSet::new();
        watched.each_target(&mut |t| {
            named.insert(Arc::clone(&t.url));
        });
        named
    });
    for state in gone {
        if let Some((_, h)) = tasks.remove(&state.url) {
            h.abort();
        }
        for e in state.endpoints().iter() {
            ctx.up.metrics.removed(&state.url, e.addr);
        }
        ctx.up.metrics.target_removed(&state.url);
        tracing::info!(target = %state.url, "target left the registry");
    }
}

/// One target: resolve (if named by host) and keep a checker per endpoint, until aborted.
async fn target_task(ctx: Ctx, target: Target, state: Arc<TargetState>) {
    let mut checkers: HashMap<u64, AbortHandle> = HashMap::new();
    let mut set = JoinSet::new();
    let Some(host) = state.host.clone() else {
        for e in state.endpoints().iter() {
            start_checker(&ctx, &target, e, &mut set, &mut checkers);
        }
        std::future::pending::<()>().await;
        return;
    };
    let mut retry = ctx.dns.cfg.min_ttl;
    loop {
        let wait = match ctx.dns.resolve(&host, state.port).await {
            Ok((addrs, ttl)) => {
                let (added, gone) = state.set_addresses(&addrs);
                for e in &added {
                    start_checker(&ctx, &target, e, &mut set, &mut checkers);
                }
                for e in &gone {
                    if let Some(h) = checkers.remove(&e.id) {
                        h.abort();
                    }
                    ctx.up.metrics.removed(&target.url, e.addr);
                }
                if !added.is_empty() || !gone.is_empty() {
                    tracing::info!(target = %target.url, addresses = ?addrs, added = added.len(),
                        removed = gone.len(), ttl = ?ttl, "target addresses changed");
                }
                ctx.up.metrics.resolved(&target.url, Some(addrs.len()));
                let mut st = state.dns.lock().unwrap_or_else(PoisonError::into_inner);
                st.resolved_at = Some(SystemTime::now());
                // `ttl` is what is left of the answer's TTL: round, not truncate.
                st.ttl_secs = (ttl + Duration::from_millis(500)).as_secs();
                st.last_error = None;
                retry = ctx.dns.cfg.min_ttl;
                ttl
            }
            Err(e) => {
                ctx.up.metrics.resolved(&target.url, None);
                let kept = state.endpoints().len();
                tracing::warn!(target = %target.url, error = %e, kept_addresses = kept,
                    "DNS resolution failed; keeping the last good addresses");
                let mut st = state.dns.lock().unwrap_or_else(PoisonError::into_inner);
                st.last_error = Some(e);
                st.failures += 1;
                let w = retry;
                retry = (retry * 2).min(ctx.dns.cfg.max_ttl);
                w
            }
        };
        state.mark_resolved();
        while set.try_join_next().is_some() {}
        tokio::time::sleep(wait).await;
    }
}

fn start_checker(
    ctx: &Ctx,
    target: &Target,
    ep: &Arc<Endpoint>,
    set: &mut JoinSet<()>,
    checkers: &mut HashMap<u64, AbortHandle>,
) {
    ctx.up.metrics.set_up(&target.url, ep.addr, ep.usable());
    if let Some(cfg) = &ctx.health {
        let h = set.spawn(checks::check_loop(
            Arc::clone(&ctx.up),
            target.clone(),
            Arc::clone(ep),
            Arc::clone(cfg),
            ctx.tls.clone(),
        ));
        checkers.insert(ep.id, h);
    }
}
