//! A TCP forwarder the test can switch off: a sink's outage as the client sees one. While off,
//! it accepts and at once drops every connection, and it cuts the ones it was carrying, so a
//! pooled connection does not outlive the outage.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Toggle {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    carried: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Toggle {
    /// Forwards 127.0.0.1:<free port> to `target`, on.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let (on, list) = (Arc::clone(&up), Arc::clone(&carried));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !on.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { addr, up, carried }
    }

    /// Switches the forwarder on or off (off cuts what it carries).
    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for t in self.carried.lock().unwrap().drain(..) {
                t.abort();
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
