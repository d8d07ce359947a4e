//! Zero-downtime upgrade, with real processes: under continuous load (keep-alive clients and a
//! new connection per request), a second `cellgate serve --takeover` takes the listening
//! sockets from the first, which drains and exits; not one request fails, and every answer is
//! metered exactly once across the two processes. A successor that goes away before it is
//! ready leaves the old process serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cells::{urls, within};
use common::upstream::Upstream;
use common::{base_config, registry};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "acme.app.test";

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    admin: SocketAddr,
    _up: Arc<Upstream>,
}

/// Whatever happens in the test, no process it started outlives it: every cellgate serving
/// this set-up's config is killed with it.
impl Drop for Setup {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(self.dir.path().join("cellgate.toml"))
            .status();
    }
}

async fn setup() -> Setup {
    let up = Upstream::start("a", "a-1").await;
    let (addr, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("handover.sock");
    // Both processes meter into one file (appends of whole lines) and one spool directory.
    let metering = format!(
        "[metering]\nwindow = \"1s\"\nspool_dir = \"{}\"\n[metering.file]\npath = \"{}\"\n",
        dir.path().join("spool").display(),
        dir.path().join("usage.jsonl").display()
    );
    let config = base_config(&metering)
        .replacen(
            "address = \"127.0.0.1:0\"",
            &format!("address = \"{addr}\""),
            1,
        )
        .replacen(
            "address = \"127.0.0.1:0\"",
            &format!("address = \"{admin}\""),
            1,
        )
        .replace(
            "shutdown_grace = \"5s\"",
            &format!(
                "shutdown_grace = \"5s\"\nhandover_socket = \"{}\"",
                sock.display()
            ),
        )
        .replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(dir.path().join("cellgate.toml"), config).unwrap();
    let cells = vec![("a".to_owned(), urls(&[&up]))];
    std::fs::write(
        dir.path().join("registry.toml"),
        registry(&cells, &[("acme", "a", "ACTIVE")]),
    )
    .unwrap();
    Setup {
        dir,
        addr,
        admin,
        _up: up,
    }
}

fn spawn(dir: &Path, takeover: bool, log: &str) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cellgate"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("cellgate.toml"))
        .stdout(std::fs::File::create(dir.join(log)).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{log}.err"))).unwrap());
    if takeover {
        cmd.arg("--takeover");
    }
    cmd.spawn().unwrap()
}

async fn ready(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(admin).await {
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            if out.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cellgate never became ready");
}

/// One request on a new connection is answered 200.
async fn served(addr: SocketAddr) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// Waits for `child` to exit by itself; its exit status.
async fn exited(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.errors.lock().unwrap().push(e);
            }
        }
    }
}

/// Requests until `stop`: `keep_alive` clients reuse pooled connections, the others open a
/// connection per request.
fn load(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{addr}/"))
                    .header("host", HOST)
                    .body(Empty::new())
                    .unwrap();
                let r = match client.request(req).await {
                    Ok(resp) if resp.status() == 200 => resp
                        .into_body()
                        .collect()
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Ok(resp) => Err(format!("status {}", resp.status())),
                    Err(e) => Err(format!("keep-alive: {e:?}")),
                };
                tally.record(r);
            }
        }));
    }
    for _ in 0..2 {
        let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = async {
                    let mut s = TcpStream::connect(addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    s.write_all(
                        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                    let mut out = Vec::new();
                    s.read_to_end(&mut out)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    if out.starts_with(b"HTTP/1.1 200") {
                        Ok(())
                    } else {
                        Err(format!(
                            "fresh connection: {:?}",
                            String::from_utf8_lossy(&out[..out.len().min(40)])
                        ))
                    }
                }
                .await;
                tally.record(r);
            }
        }));
    }
    tasks
}

#[tokio::test]
async fn a_takeover_under_load_fails_no_request() {
    within(async {
        let s = setup().await;
        let mut old = spawn(s.dir.path(), false, "old.log");
        ready(s.admin).await;
        let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
        let tasks = load(s.addr, &stop, &tally);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let before = tally.ok.load(Ordering::Relaxed);
        assert!(before > 0, "no load before the takeover");

        let mut new = spawn(s.dir.path(), true, "new.log");
        let status = exited(&mut old, Duration::from_secs(20)).await;
        assert!(status.success(), "the old process exited with {status}");
        let at_exit = tally.ok.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let after = tally.ok.load(Ordering::Relaxed);
        let log = |name: &str| {
            let read = |f: &str| std::fs::read_to_string(s.dir.path().join(f)).unwrap_or_default();
            read(name) + &read(&format!("{name}.err"))
        };
        assert_eq!(
            tally.failed.load(Ordering::Relaxed),
            0,
            "requests failed across the takeover: {:?}\nold:\n{}\nnew:\n{}",
            tally
                .errors
                .lock()
                .unwrap()
                .iter()
                .take(5)
                .collect::<Vec<_>>(),
            log("old.log"),
            log("new.log")
        );
        assert!(
            after > at_exit + 50,
            "the new process served {} requests",
            after - at_exit
        );
        assert!(log("old.log").contains("a new process took over the listeners"));
        // The successor can itself be taken over: it bound the handover socket.
        assert!(s.dir.path().join("handover.sock").exists());
        terminate(&mut new);
        let status = exited(&mut new, Duration::from_secs(10)).await;
        assert!(status.success(), "the new process exited with {status}");
        assert!(
            !s.dir.path().join("handover.sock").exists(),
            "the socket file was left behind"
        );
        // Each process flushed its open window as it stopped: every answer the clients got is
        // metered once, across the takeover.
        let usage = std::fs::read_to_string(s.dir.path().join("usage.jsonl")).unwrap();
        let metered: u64 = usage
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["tenant"] == "acme")
            .map(|e| e["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(metered, after, "metered vs answered across the takeover");
    })
    .await;
}

#[tokio::test]
async fn a_successor_that_never_gets_ready_leaves_the_old_process_serving() {
    within(async {
        let s = setup().await;
        let mut old = spawn(s.dir.path(), false, "old.log");
        ready(s.admin).await;
        // A second plain start is refused: the handover socket is taken.
        let mut second = spawn(s.dir.path(), false, "second.log");
        let status = exited(&mut second, Duration::from_secs(10)).await;
        assert!(!status.success());
        let second_log = std::fs::read_to_string(s.dir.path().join("second.log.err")).unwrap();
        assert!(second_log.contains("--takeover"), "{second_log}");

        // Take the sockets, then go away without saying ready.
        let path = s.dir.path().join("handover.sock");
        let taken = tokio::task::spawn_blocking(move || cellgate::server::handover::take(&path))
            .await
            .unwrap()
            .unwrap();
        drop(taken);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(old.try_wait().unwrap().is_none(), "the old process stopped");
        served(s.addr).await;
        terminate(&mut old);
        assert!(exited(&mut old, Duration::from_secs(10)).await.success());
    })
    .await;
}

#[tokio::test]
async fn a_log_written_to_a_file_carries_no_terminal_colours() {
    within(async {
        let s = setup().await;
        let path = s.dir.path().join("cellgate.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let text = config.replace("level = \"info\"", "level = \"info\"\nformat = \"text\"");
        assert_ne!(config, text, "the set-up's [log] table changed");
        std::fs::write(&path, text).unwrap();
        let mut proxy = spawn(s.dir.path(), false, "text.log");
        ready(s.admin).await;
        terminate(&mut proxy);
        assert!(exited(&mut proxy, Duration::from_secs(10)).await.success());
        let log = std::fs::read_to_string(s.dir.path().join("text.log.err")).unwrap();
        assert!(log.contains("cellgate serving"), "{log}");
        assert!(!log.contains('\x1b'), "ANSI escapes in a log file: {log:?}");
    })
    .await;
}

/// One request over a fresh connection: the status line and the body.
async fn exchange(addr: SocketAddr, host: &str) -> (String, Vec<u8>) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (
        head.lines().next().unwrap_or_default().to_owned(),
        out[split + 4..].to_vec(),
    )
}

#[tokio::test]
async fn each_answer_is_logged_once_with_the_bytes_of_its_body() {
    within(async {
        let s = setup().await;
        let path = s.dir.path().join("cellgate.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let logged = config.replace(
            "[access_log]\nenabled = false",
            "[access_log]\nenabled = true",
        );
        assert_ne!(config, logged, "the set-up's [access_log] table changed");
        std::fs::write(&path, logged).unwrap();
        let mut proxy = spawn(s.dir.path(), false, "access.log");
        ready(s.admin).await;
        let (routed, routed_body) = exchange(s.addr, HOST).await;
        assert!(routed.starts_with("HTTP/1.1 200"), "{routed}");
        let (refused, refused_body) = exchange(s.addr, "nobody.app.test").await;
        assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");
        terminate(&mut proxy);
        assert!(exited(&mut proxy, Duration::from_secs(10)).await.success());

        let log = std::fs::read_to_string(s.dir.path().join("access.log")).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let by = |outcome: &str| -> Vec<&serde_json::Value> {
            lines.iter().filter(|l| l["outcome"] == outcome).collect()
        };
        // The routed line is written by the response body when it ends: once, with its bytes.
        let routed = by("routed");
        assert_eq!(routed.len(), 1, "{log}");
        assert_eq!(routed[0]["bytes"], routed_body.len(), "{log}");
        assert_eq!(routed[0]["status"], 200);
        assert_eq!(routed[0]["cell"], "a");
        assert!(routed[0].get("incomplete").is_none(), "{log}");
        // A refusal is logged when it is answered, with the JSON body's length.
        let refused = by("unknown_tenant");
        assert_eq!(refused.len(), 1, "{log}");
        assert_eq!(refused[0]["bytes"], refused_body.len(), "{log}");
        assert_eq!(lines.len(), 2, "{log}");
    })
    .await;
}

/// Runs `deploy/upgrade.sh` for the config in `dir`; the pid it recorded.
fn run_script(dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/upgrade.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir.join("cellgate.toml"))
        .arg(env!("CARGO_BIN_EXE_cellgate"))
        .env("CELLGATE_RUN_DIR", dir.join("run"))
        .env("CELLGATE_WAIT_SECS", "20")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("run/cellgate.pid"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `deploy/upgrade.sh`: the first run starts cellgate, the second replaces it by a takeover.
#[tokio::test]
async fn the_deploy_script_starts_then_upgrades() {
    within(async {
        let s = setup().await;
        let dir = s.dir.path().to_owned();
        let first = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || run_script(&dir)
        })
        .await
        .unwrap();
        ready(s.admin).await;
        let second = tokio::task::spawn_blocking(move || run_script(&dir))
            .await
            .unwrap();
        assert_ne!(first, second, "the pid file still names the old process");
        let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
        assert!(alive(&second));
        served(s.addr).await;
        let _ = Command::new("kill").arg("-TERM").arg(&second).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&second) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
