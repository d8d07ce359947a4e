//! Zero-downtime upgrade: a new process takes the listening sockets from the running one over
//! a Unix socket (`server.handover_socket`), starts serving on them, and only then tells the
//! old one to drain and exit.
//!
//! The sockets themselves pass (`SCM_RIGHTS`), not their addresses: the kernel's accept queues
//! never close, so no connection is refused at any moment of the upgrade, and a connection
//! waiting in a queue is accepted by whichever process asks first. The old process drains as
//! on a signal (in-flight requests finish; HTTP/1 connections close after their next answer or
//! once quiet; HTTP/2 gets GOAWAY). If the new process dies before it reports ready, the old
//! one simply goes on serving. Only the owner of the socket file (mode 0600) can take over.
//!
//! ```text
//!  new: connect ──► "cellgate-takeover 1\n"
//!  old:            ◄── manifest (JSON) + every listener's sockets and the admin socket
//!  new: serves on them ──► "ready\n"
//!  old: stops accepting, drains, exits          new: binds the handover socket for next time
//! ```

use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::shutdown::{Stop, stopped};

const HELLO: &str = "cellgate-takeover 1\n";
const READY: &str = "ready\n";
/// At most this many descriptors in one message (the kernel's limit is 253).
const MAX_FDS: usize = 250;
const MAX_MANIFEST: usize = 64 * 1024;
/// How long the old process waits for its successor to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("server.handover_socket is not set: there is no running process to take over from")]
    NotConfigured,
    #[error("takeover via {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("takeover via {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
    #[error(
        "{path}: another cellgate is serving there; start this one with --takeover, or stop that one"
    )]
    InUse { path: PathBuf },
}

/// What the old process sends: each listener's configured address and how many sockets it
/// has, in config order; the admin address. The descriptors follow in the same order.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    listeners: Vec<(String, usize)>,
    admin: String,
}

/// Sockets on offer to a successor (duplicates of the serving ones).
#[derive(Debug)]
pub struct Offer {
    /// (configured address, its sockets), in config order.
    pub listeners: Vec<(String, Vec<TcpListener>)>,
    pub admin: (String, TcpListener),
}

/// Sockets taken from the old process, to be claimed by configured address.
#[derive(Debug)]
pub struct Inherited {
    listeners: Vec<(String, Vec<TcpListener>)>,
    admin: Option<(String, TcpListener)>,
    peer: UnixStream,
}

impl Inherited {
    /// The sockets of listener `index`, if the old process had one there at `address`.
    pub fn take_listener(&mut self, index: usize, address: &str) -> Vec<TcpListener> {
        match self.listeners.get_mut(index) {
            Some((a, sockets)) if a == address => std::mem::take(sockets),
            _ => Vec::new(),
        }
    }

    pub fn take_admin(&mut self, address: &str) -> Option<TcpListener> {
        match self.admin.take() {
            Some((a, l)) if a == address => Some(l),
            other => {
                self.admin = other;
                None
            }
        }
    }

    /// Tells the old process this one is serving: it drains and exits. Sockets it offered and
    /// nobody claimed close with it.
    pub fn ready(mut self) -> io::Result<()> {
        self.peer.write_all(READY.as_bytes())
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> HandoverError + '_ {
    move |error| HandoverError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Takes the listening sockets from the process serving `path` (blocking; at start-up).
pub fn take(path: &Path) -> Result<Inherited, HandoverError> {
    let io = io_err(path);
    let proto = |reason: String| HandoverError::Protocol {
        path: path.to_owned(),
        reason,
    };
    let mut peer = UnixStream::connect(path).map_err(&io)?;
    peer.set_read_timeout(Some(IO_TIMEOUT)).map_err(&io)?;
    peer.write_all(HELLO.as_bytes()).map_err(&io)?;
    let mut buf = vec![0u8; MAX_MANIFEST];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            peer.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| io(e.into()))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| io(e.into()))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(raw.into_iter().map(owned));
            }
        }
        (msg.bytes, fds)
    };
    let manifest: Manifest = serde_json::from_slice(&buf[..len])
        .map_err(|e| proto(format!("unreadable manifest: {e}")))?;
    let wanted = manifest.listeners.iter().map(|(_, n)| n).sum::<usize>() + 1;
    if fds.len() != wanted {
        return Err(proto(format!(
            "{} sockets sent, {wanted} announced",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter().map(TcpListener::from);
    let mut listeners = Vec::with_capacity(manifest.listeners.len());
    for (address, n) in manifest.listeners {
        let sockets: Vec<TcpListener> = fds.by_ref().take(n).collect();
        for s in &sockets {
            s.set_nonblocking(true).map_err(&io)?;
        }
        listeners.push((address, sockets));
    }
    let admin = fds.next().ok_or_else(|| proto("no admin socket".into()))?;
    admin.set_nonblocking(true).map_err(&io)?;
    Ok(Inherited {
        listeners,
        admin: Some((manifest.admin, admin)),
        peer,
    })
}

/// Takes ownership of a descriptor received with `SCM_RIGHTS`.
#[allow(unsafe_code)]
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel has just installed `fd` in this process for this message; it is open,
    // and nothing else in the process knows it, so this is its one owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Binds the handover socket (mode 0600). `successor`: this process took over from the one
/// that served there, so the file is stale by design; otherwise a live listener there is
/// another proxy, and an error.
pub fn listen(path: &Path, successor: bool) -> Result<UnixListener, HandoverError> {
    let io = io_err(path);
    if path.exists() {
        if !successor && UnixStream::connect(path).is_ok() {
            return Err(HandoverError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(&io)?;
    }
    let listener = UnixListener::bind(path).map_err(&io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(&io)?;
    listener.set_nonblocking(true).map_err(&io)?;
    Ok(listener)
}

/// Offers the sockets to whoever connects, until one successor reports ready (`true`: this
/// process should drain) or `stop` is set (then the socket file is removed, if still ours).
pub async fn offer(listener: UnixListener, path: PathBuf, offer: Offer, mut stop: Stop) -> bool {
    let inode = std::fs::metadata(&path).map(|m| m.ino()).ok();
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "handover socket unusable");
            return false;
        }
    };
    let offer = std::sync::Arc::new(offer);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "handover accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => {
                if inode.is_some() && std::fs::metadata(&path).map(|m| m.ino()).ok() == inode {
                    let _ = std::fs::remove_file(&path);
                }
                return false;
            }
        };
        let offer = std::sync::Arc::clone(&offer);
        let handed = tokio::task::spawn_blocking(move || {
            let s = stream.into_std()?;
            s.set_nonblocking(false)?;
            hand_over(&s, &offer)
        })
        .await;
        match handed {
            Ok(Ok(())) => {
                tracing::info!(path = %path.display(), "a new process took over the listeners");
                return true;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "takeover did not complete; still serving"),
            Err(e) => tracing::warn!(error = %e, "takeover task failed; still serving"),
        }
    }
}

/// One successor: hello, sockets, then its ready line.
fn hand_over(s: &UnixStream, offer: &Offer) -> io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line != HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a cellgate takeover",
        ));
    }
    let manifest = Manifest {
        listeners: offer
            .listeners
            .iter()
            .map(|(a, s)| (a.clone(), s.len()))
            .collect(),
        admin: offer.admin.0.clone(),
    };
    let mut fds: Vec<RawFd> = offer
        .listeners
        .iter()
        .flat_map(|(_, s)| s.iter().map(AsRawFd::as_raw_fd))
        .collect();
    fds.push(offer.admin.1.as_raw_fd());
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(format!(
            "{} sockets: at most {MAX_FDS}",
            fds.len()
        )));
    }
    let body = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    sendmsg::<()>(
        s.as_raw_fd(),
        &[IoSlice::new(&body)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    s.set_read_timeout(Some(READY_TIMEOUT))?;
    line.clear();
    reader.read_line(&mut line)?;
    if line == READY {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the new process went away before it was ready",
        ))
    }
}
