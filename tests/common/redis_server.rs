//! Redis for the fleet-limits tests: the suite's shared server (`CELLGATE_TEST_REDIS`, started
//! by `tests/run.sh`) with a key prefix of each test's own, or a private `redis-server` a test
//! can stop and start again; plus a connection for setting state and reading Redis's clock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// The suite's Redis.
pub fn url() -> String {
    std::env::var("CELLGATE_TEST_REDIS").unwrap_or_else(|_| {
        panic!("CELLGATE_TEST_REDIS is not set: run the suite with `bash tests/run.sh`")
    })
}

/// A key prefix no other test uses.
pub fn prefix(test: &str) -> String {
    format!("test:{test}:{:08x}:", fastrand::u32(..))
}

pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Redis's clock as the flush script reads it: microseconds since 1700000000 s.
pub async fn now_us(c: &mut MultiplexedConnection) -> f64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query_async(c).await.unwrap();
    (s - 1_700_000_000) as f64 * 1e6 + us as f64
}

/// A private redis-server on a fixed loopback port, stopped when dropped.
pub struct OwnRedis {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OwnRedis {
    /// Starts one with `args` added (e.g. `--requirepass x`).
    pub fn start(args: &[&str]) -> Self {
        let mut r = Self {
            port: free_port(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        r.up();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (a crash, not a shutdown).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
    }
}
