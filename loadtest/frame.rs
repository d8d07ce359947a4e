//! The frame of every scenario that runs the proxy as its own process (all but `flip`): a
//! current-thread runtime, the proxy binary checked (exit 2 with a hint when it is missing), a
//! temporary directory with the scenario's registry and the proxy's config, `cellgate serve`
//! started with a time bound and waited for until `/readyz` answers, then the scenario's body;
//! afterwards the proxy is stopped, and its last log lines go to stderr when the run did not pass.
//!
//! Exit codes: 0 when the body's checks pass, 1 when one fails, 2 when the scenario could not
//! run (no binary, a setup or start-up error, or an error from the body).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::{HttpClient, client, free_port, proxy_config};
use crate::process::{Proxy, ProxyArgs};

/// The proxy's addresses, chosen before it starts.
#[derive(Clone, Copy)]
pub struct Ports {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

/// What the body gets once the proxy is ready.
pub struct Ready {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The proxy process, for `CpuMark`.
    pub pid: u32,
    /// The client that waited for `/readyz`, for the scenario's own probes and scrapes.
    pub probe: HttpClient,
}

/// Runs scenario `name` against the release proxy `proxy`, which ends by itself after `bound`
/// even if the driver dies without stopping it.
///
/// `setup` gets the temporary directory (the proxy's working directory for relative paths: a
/// file registry is `registry.toml` there) and the ports; it starts the echo cells, writes the
/// registry and returns what the body needs and the config's body (the `[registry]` table and
/// anything else, for `common::proxy_config`). `body` runs the phases, prints the summary and
/// returns whether every check passed. An `Err` from either is printed as `NAME: ERROR`.
pub fn run_proxied<W>(
    name: &str,
    proxy: &ProxyArgs,
    bound: Duration,
    setup: impl AsyncFnOnce(&Path, Ports) -> Result<(W, String), String>,
    body: impl AsyncFnOnce(W, Ready) -> Result<bool, String>,
) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if !proxy.bin.is_file() {
            eprintln!(
                "{name}: no proxy binary at {} (cargo build --release --bin cellgate, or use loadtest/run.sh {name})",
                proxy.bin.display()
            );
            return 2;
        }
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports {
            listen: free_port(),
            admin: free_port(),
        };
        let (world, registry) = match setup(dir.path(), ports).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: {e}");
                return 2;
            }
        };
        let config = dir.path().join("cellgate.toml");
        std::fs::write(&config, proxy_config(ports.listen, ports.admin, &registry)).unwrap();
        let log_path = dir.path().join("proxy.log");
        let mut running = match Proxy::spawn(proxy, &config, &log_path, bound) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{name}: cannot start the proxy: {e}");
                return 2;
            }
        };
        let code = match start(&mut running, ports, world, body).await {
            Ok(pass) => i32::from(!pass),
            Err(e) => {
                eprintln!("{name}: {e}");
                2
            }
        };
        if code != 0 {
            running.print_log_tail();
        }
        running.stop();
        code
    })
}

/// Waits until the proxy is ready, then runs the body.
async fn start<W>(
    proxy: &mut Proxy,
    ports: Ports,
    world: W,
    body: impl AsyncFnOnce(W, Ready) -> Result<bool, String>,
) -> Result<bool, String> {
    let probe = client();
    proxy.wait_ready(&probe, ports.admin).await?;
    let ready = Ready {
        listen: ports.listen,
        admin: ports.admin,
        pid: proxy.pid(),
        probe,
    };
    body(world, ready).await
}
