//! Minimal Pingora reverse proxy for the e2e bench: every request goes to one fixed
//! plain-HTTP peer. One thread, no work stealing, mimalloc; built with the `release-lto`
//! profile (fat LTO, codegen-units = 1, panic = abort).
//!
//! Usage: pingora-minimal LISTEN_ADDR UPSTREAM_ADDR   (e.g. 127.0.0.1:18082 127.0.0.1:18080)

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct FixedPeer {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for FixedPeer {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: pingora-minimal LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let upstream = upstream.parse().expect("UPSTREAM_ADDR must be ip:port");

    // Private pid/upgrade-socket paths so parallel runs don't collide on /tmp/pingora.*.
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: tmp.join(format!("pingora-minimal-{pid}.pid")).display().to_string(),
        upgrade_sock: tmp.join(format!("pingora-minimal-{pid}.sock")).display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = http_proxy_service(&server.configuration, FixedPeer { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
