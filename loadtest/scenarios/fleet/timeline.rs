//! Phases 1-5 of the fleet scenario, on one timeline under load: the nodes see each other, then
//! accuracy, Redis killed, Redis restarted, a fourth node; the report follows (`report`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Uri;

use super::counters::{NodeMetrics, PhaseCpu};
use super::load::{Hit, monitor, stream, wait_gauges};
use super::report::{self, Timeline};
use super::world::{FLEET_TIER, NOISY, Node, QUIET, World, config_body};
use super::{Args, BREAKER_CLOSED_WITHIN, POLL, QUIET_SHARE, SETTLE};
use crate::common::{client, host, one};
use crate::process::{CpuMark, driver_cpus};

/// Runs phases 1-5 on `w`'s three nodes (adding the fourth to `w.nodes`); whether every check
/// passed.
pub async fn run(a: &Args, w: &mut World) -> Result<bool, String> {
    for n in &w.nodes {
        let uri: Uri = format!("http://{}/", n.listen).parse().unwrap();
        for t in [NOISY, QUIET] {
            let s = one(&w.probe, &uri, &host(t), Duration::ZERO, false).await;
            if s.status != 200 {
                return Err(format!(
                    "tenant {t} is not served by {} before the test (status {})",
                    n.name, s.status
                ));
            }
        }
    }
    let noisy_rates: Vec<f64> = a
        .split
        .iter()
        .map(|p| a.rate * a.overload * p / 100.0)
        .collect();
    let quiet_rate = a.rate * QUIET_SHARE / 3.0;
    let len = a.load_len();
    let kill_at = SETTLE + a.accuracy;
    println!(
        "scenario fleet: 3 cellgate nodes on one Redis (own redis-server on 127.0.0.1:{}); tier \
         {FLEET_TIER}: {}/s, burst {}, fleet-wide; [limits.fleet] at its defaults (sync_interval \
         20ms, timeout 50ms, heartbeat_interval 1s, breaker_cooldown 500ms, mode enforce)",
        w.redis.port, a.rate, a.burst
    );
    println!(
        "load, open loop: {NOISY} {:.0}/s = {}x the rate, split {:.0}/{:.0}/{:.0} over node-1/2/3 \
         ({:.0}/{:.0}/{:.0} per s); {QUIET} {:.0}/s = {QUIET_SHARE}x, {:.1}/s on each node",
        noisy_rates.iter().sum::<f64>(),
        a.overload,
        a.split[0],
        a.split[1],
        a.split[2],
        noisy_rates[0],
        noisy_rates[1],
        noisy_rates[2],
        quiet_rate * 3.0,
        quiet_rate
    );
    println!(
        "pinning: every proxy {} (1 worker each); driver, echo cells and redis-server: {}",
        a.proxy.pinning(),
        driver_cpus()
    );
    println!(
        "timeline: settle {:.0} s, accuracy {:.0} s; Redis SIGKILLed at {:.1} s for {:.0} s; \
         restarted, recovery up to {:.1} s; node-4 started then, load ends at {:.1} s; every \
         node's /metrics scraped every {} ms",
        SETTLE.as_secs_f64(),
        a.accuracy.as_secs_f64(),
        kill_at.as_secs_f64(),
        a.outage.as_secs_f64(),
        (kill_at + a.outage + BREAKER_CLOSED_WITHIN + a.recovery).as_secs_f64(),
        len.as_secs_f64(),
        POLL.as_millis()
    );

    // Phase 1: every node counts three live nodes.
    let admins: Vec<SocketAddr> = w.nodes.iter().map(|n| n.admin).collect();
    let warm = match wait_gauges(&w.probe, &admins, Duration::from_secs(10), |g| {
        g.nodes == 3.0 && g.breaker == 0.0
    })
    .await
    {
        Ok(d) => d,
        Err(last) => {
            let seen: Vec<String> = last
                .iter()
                .map(|g| g.map_or("no scrape".to_owned(), |g| format!("{} nodes", g.nodes)))
                .collect();
            println!(
                "check every node counts 3 nodes before the load: {} after 10 s -> FAILED",
                seen.join(", ")
            );
            return Ok(false);
        }
    };

    let origin = Instant::now() + Duration::from_millis(200);
    let mut noisy = Vec::new();
    let mut quiet = Vec::new();
    for (i, n) in w.nodes.iter().enumerate() {
        let uri: Uri = format!("http://{}/", n.listen).parse().unwrap();
        let offset = i as f64 / 3.0;
        // A node with no share of `noisy` (--split 100,0,0) gets none of it.
        if noisy_rates[i] > 0.0 {
            noisy.push(tokio::spawn(stream(
                client(),
                uri.clone(),
                host(NOISY),
                noisy_rates[i],
                origin,
                offset,
                len,
                i,
            )));
        }
        quiet.push(tokio::spawn(stream(
            client(),
            uri,
            host(QUIET),
            quiet_rate,
            origin,
            offset + 0.5 / 3.0,
            len,
            i,
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut monitors: Vec<_> = w
        .nodes
        .iter()
        .map(|n| tokio::spawn(monitor(client(), n.admin, origin, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep_until(origin.into()).await;
    let cpu: Vec<CpuMark> = w.nodes.iter().map(|n| CpuMark::now(n.pid)).collect();
    let mut phase_cpu = Vec::new();
    let mut mark = Marks::now(w);

    // Phase 3: Redis dies.
    tokio::time::sleep_until((origin + kill_at).into()).await;
    phase_cpu.push(mark.since());
    let killed = w.redis.kill().await.duration_since(origin);
    mark = Marks::now(w);
    // Phase 4: Redis comes back on the same port, empty.
    tokio::time::sleep_until((origin + killed + a.outage).into()).await;
    phase_cpu.push(mark.since());
    let restarted = origin.elapsed();
    let redis_up = w.redis.start().await?;
    mark = Marks::now(w);
    // Phase 5: a fourth node.
    let node4_at = restarted + BREAKER_CLOSED_WITHIN + a.recovery;
    tokio::time::sleep_until((origin + node4_at).into()).await;
    phase_cpu.push(mark.since());
    mark = Marks::now(w);
    let spawned = origin.elapsed();
    let url = w.redis.url();
    let body = config_body(a, Some((url.as_str(), "loadtest:")));
    let n4 = Node::start(&w.dir, "node-4", &a.proxy, w.bound, &body, &w.probe).await?;
    let ready4 = origin.elapsed() - spawned;
    monitors.push(tokio::spawn(monitor(
        client(),
        n4.admin,
        origin,
        Arc::clone(&stop),
    )));
    w.nodes.push(n4);

    tokio::time::sleep_until((origin + len).into()).await;
    phase_cpu.push(mark.since());
    let mut noisy_hits: Vec<Hit> = Vec::new();
    for s in noisy {
        noisy_hits.extend(s.await.unwrap());
    }
    let mut quiet_hits: Vec<Hit> = Vec::new();
    for s in quiet {
        quiet_hits.extend(s.await.unwrap());
    }
    let cpu: Vec<f64> = cpu
        .iter()
        .zip(&w.nodes)
        .map(|(m, n)| m.since(n.pid).proxy)
        .collect();
    stop.store(true, Ordering::Relaxed);
    let mut gauges = Vec::new();
    for m in monitors {
        gauges.push(m.await.unwrap());
    }
    let mut metrics = Vec::new();
    for n in &w.nodes {
        metrics.push(NodeMetrics::scrape(&w.probe, n.admin).await?);
    }
    Ok(report::timeline(
        a,
        Timeline {
            offered: noisy_rates,
            phase_cpu,
            noisy: noisy_hits,
            quiet: quiet_hits,
            gauges,
            metrics,
            cpu,
            warm,
            killed,
            restarted,
            redis_up,
            spawned,
            ready4,
            len,
        },
    ))
}

/// CPU marks at the start of a phase: the three loaded nodes, and Redis while it runs.
struct Marks {
    nodes: Vec<(u32, CpuMark)>,
    redis: Option<(u32, CpuMark)>,
}

impl Marks {
    fn now(w: &World) -> Self {
        Self {
            nodes: w
                .nodes
                .iter()
                .take(3)
                .map(|n| (n.pid, CpuMark::now(n.pid)))
                .collect(),
            redis: w.redis.server_pid().map(|p| (p, CpuMark::now(p))),
        }
    }

    /// `CpuMark` splits the machine into one process, this driver and the rest; the rest less
    /// the other nodes and Redis is what nothing here started.
    fn since(&self) -> PhaseCpu {
        let per: Vec<_> = self.nodes.iter().map(|(p, m)| m.since(*p)).collect();
        let redis = self.redis.as_ref().map_or(0.0, |(p, m)| m.since(*p).proxy);
        let proxies: Vec<f64> = per.iter().map(|c| c.proxy).collect();
        let rest: f64 = proxies.iter().skip(1).sum();
        PhaseCpu {
            driver: per.first().map_or(0.0, |c| c.driver),
            other: per.first().map_or(0.0, |c| c.other - rest - redis).max(0.0),
            proxies,
            redis,
        }
    }
}
