//! The stop signal every background task waits on: one `watch` channel of `bool`, set once when
//! the process stops. Tasks take a [`Stop`] and `select!` on [`stopped`] beside their work, so
//! they all end the same way. It imports nothing of ours.

use tokio::sync::watch;

/// The sending side: [`Signal::stop`] ends every task holding one of its receivers.
#[derive(Debug)]
pub struct Signal(watch::Sender<bool>);

/// What a background task holds: it has stopped once [`stopped`] resolves.
pub type Stop = watch::Receiver<bool>;

impl Signal {
    /// A signal not yet given, and its first receiver.
    #[must_use]
    pub fn new() -> (Self, Stop) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), rx)
    }

    /// Stops every receiver (those already waiting, and any subscribed later).
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Another receiver of this signal.
    #[must_use]
    pub fn subscribe(&self) -> Stop {
        self.0.subscribe()
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
pub async fn stopped(rx: &mut Stop) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_reaches_waiting_and_later_receivers() {
        let (signal, mut rx) = Signal::new();
        let mut later = signal.subscribe();
        let waiting = tokio::spawn(async move { stopped(&mut rx).await });
        signal.stop();
        waiting.await.unwrap_or_default();
        stopped(&mut later).await;
        let mut after = signal.subscribe();
        stopped(&mut after).await;
    }

    #[tokio::test]
    async fn a_dropped_signal_counts_as_stopped() {
        let (signal, mut rx) = Signal::new();
        drop(signal);
        stopped(&mut rx).await;
    }
}
