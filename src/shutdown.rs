//! The shutdown signal: one trigger (SIGTERM, SIGINT, or a test), many waiters (the accept
//! loop, background jobs). Cloning shares the signal.

use smol::channel::{bounded, Receiver, Sender};

#[derive(Clone)]
pub struct Shutdown {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = bounded(1);
        Shutdown { tx, rx }
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Signals every waiter, now and later. Idempotent.
    pub fn trigger(&self) {
        self.tx.close();
    }

    pub fn is_triggered(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once [`Shutdown::trigger`] has been called.
    pub async fn wait(&self) {
        // recv fails only when the channel is closed: that is the signal.
        while self.rx.recv().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_the_trigger() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        s.trigger();
        assert!(c.is_triggered());
        smol::block_on(c.wait());
    }
}
