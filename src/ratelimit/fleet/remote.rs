//! The Redis side of the fleet limiter: one multiplexed connection, the two Lua scripts, and
//! what a failed exchange is called in the metrics.
//!
//! The flush script is a GCRA over the fleet: a tenant's key holds its theoretical arrival time
//! (TAT, microseconds on Redis's own `TIME`, so nodes' clocks never meet). A node reports the
//! requests it admitted; the script moves the TAT by that many intervals (they ran: they are
//! charged, never refused) and answers the credit left in the fleet's bucket, in nanoseconds,
//! negative when the fleet is over. A `floor` lets a node coming back from the local fallback
//! say how far its own bucket was charged, so recovery starts from there and not from a full
//! bucket. The membership script keeps a sorted set of node ids scored by their last heartbeat
//! and answers how many are live. Both touch one key each, so they run on any single primary
//! (cluster mode needs one key per call, which holds too).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, ServerErrorKind, Value,
};

use crate::config::RedisTarget;
use crate::metrics::RedisErrorKind;

/// Charges `ARGV[1]` requests to tenant key `KEYS[1]` and answers the fleet credit (ns).
/// ARGV: admitted, interval (µs), tolerance (µs), floor (µs ahead of now), window (µs: the
/// requests were admitted within this long before now, so the bucket is charged as of the
/// window's start at the earliest: a full bucket then has refilled since, and a report that
/// comes a flush late is not capped at a bucket it was never held to).
pub(super) const FLUSH_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tol = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local start = now - tonumber(ARGV[5])
if tat < start then tat = start end
local floor = now + tonumber(ARGV[4])
if tat < floor then tat = floor end
tat = tat + n * interval
local cap = now + tol + math.max(tol, 1000000)
if tat > cap then tat = cap end
local ahead = math.max(tat, now)
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((ahead - now) / 1000) + 1000)
return math.floor((now + tol - ahead) * 1000)
";

/// Renews node `ARGV[1]` in the membership set `KEYS[1]`, drops nodes silent for `ARGV[2]`
/// ms, and answers the live count; with `ARGV[3]` = 1 the node leaves instead.
pub(super) const MEMBERS_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
";

/// A password read at start-up; never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A failed exchange: its kind for the metrics, and a message that names no secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(super) struct Failure {
    pub(super) kind: RedisErrorKind,
    pub(super) message: String,
}

impl Failure {
    fn timeout(after: Duration) -> Self {
        Self {
            kind: RedisErrorKind::Timeout,
            message: format!("no answer within {after:?}"),
        }
    }
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        let kind = match e.kind() {
            _ if e.is_timeout() => RedisErrorKind::Timeout,
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
                RedisErrorKind::Auth
            }
            _ if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) => RedisErrorKind::Auth,
            ErrorKind::Server(ServerErrorKind::NoScript | ServerErrorKind::ExecAbort) => {
                RedisErrorKind::Script
            }
            _ if e.is_connection_refusal() => RedisErrorKind::Connect,
            _ if e.is_io_error() || e.is_connection_dropped() => RedisErrorKind::Io,
            _ if e.detail().is_some_and(|d| d.contains("script")) => RedisErrorKind::Script,
            _ => RedisErrorKind::Response,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

/// One connection to the fleet's Redis, opened on demand and dropped after any failure (a
/// stale connection is never reused: the next exchange opens a fresh one).
pub(super) struct Remote {
    client: Client,
    config: AsyncConnectionConfig,
    timeout: Duration,
    conn: Option<MultiplexedConnection>,
    /// SHA1s of the flush and membership scripts, loaded on each new connection.
    flush_sha: String,
    members_sha: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub(super) fn new(
        target: &RedisTarget,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let addr = if target.tls {
            ConnectionAddr::TcpTls {
                host: target.host.clone(),
                port: target.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(target.host.clone(), target.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(i64::from(target.db));
        if let Some(user) = &target.username {
            settings = settings.set_username(user);
        }
        if let Some(p) = password {
            settings = settings.set_password(&p.0);
        }
        let info = addr.into_connection_info()?.set_redis_settings(settings);
        Ok(Self {
            client: Client::open(info)?,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            timeout,
            conn: None,
            flush_sha: String::new(),
            members_sha: String::new(),
        })
    }

    pub(super) fn flush_sha(&self) -> &str {
        &self.flush_sha
    }

    pub(super) fn members_sha(&self) -> &str {
        &self.members_sha
    }

    /// Drops the connection; the next exchange opens a new one.
    pub(super) fn reset(&mut self) {
        self.conn = None;
    }

    /// The connection, opened (and the scripts loaded) if there is none.
    async fn connection(&mut self) -> Result<MultiplexedConnection, Failure> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let opened = tokio::time::timeout(self.timeout * 2, async {
            let mut c = self
                .client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await?;
            let mut load = redis::pipe();
            load.cmd("SCRIPT").arg("LOAD").arg(FLUSH_SCRIPT);
            load.cmd("SCRIPT").arg("LOAD").arg(MEMBERS_SCRIPT);
            let (flush, members): (String, String) = load.query_async(&mut c).await?;
            Ok::<_, RedisError>((c, flush, members))
        })
        .await
        .map_err(|_| Failure {
            kind: RedisErrorKind::Connect,
            message: format!("no connection within {:?}", self.timeout * 2),
        })?;
        let (c, flush, members) = opened.map_err(|e| {
            let mut f = Failure::from(e);
            if f.kind == RedisErrorKind::Timeout || f.kind == RedisErrorKind::Io {
                f.kind = RedisErrorKind::Connect;
            }
            f
        })?;
        self.flush_sha = flush;
        self.members_sha = members;
        self.conn = Some(c.clone());
        Ok(c)
    }

    /// Opens the connection if needed (so the caller can name the loaded scripts).
    pub(super) async fn ready(&mut self) -> Result<(), Failure> {
        self.connection().await.map(drop)
    }

    /// Sends `pipe` and returns one reply per command, failing on the first error reply.
    pub(super) async fn exchange(&mut self, pipe: &Pipeline) -> Result<Vec<Value>, Failure> {
        let mut c = self.connection().await?;
        let replies: Vec<Value> = tokio::time::timeout(self.timeout, pipe.query_async(&mut c))
            .await
            .map_err(|_| Failure::timeout(self.timeout))??;
        if let Some(Value::ServerError(e)) =
            replies.iter().find(|v| matches!(v, Value::ServerError(_)))
        {
            return Err(Failure::from(RedisError::from(e.clone())));
        }
        Ok(replies)
    }
}

/// An integer reply.
pub(super) fn int(v: &Value) -> Result<i64, Failure> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(Failure {
            kind: RedisErrorKind::Response,
            message: format!("expected an integer reply, got {other:?}"),
        }),
    }
}
