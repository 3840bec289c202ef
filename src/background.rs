//! Periodic jobs (htpasswd reload, certificate renewal, GC, cache eviction, upload purge):
//! each runs on a timer until the shutdown signal, never twice at once, and its work takes
//! `now` as a value so the policy inside is tested without clocks.

use std::future::Future;
use std::time::Duration;

use smol::future::FutureExt;
use smol::Timer;

use crate::shutdown::Shutdown;

/// Runs `job` every `period` (first after one period) until `shutdown`. A job that takes
/// longer than `period` delays the next run instead of overlapping it.
pub async fn every<F, Fut>(period: Duration, shutdown: Shutdown, job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    every_after(period, period, shutdown, job).await
}

/// Like [`every`], with the first run after `first`.
pub async fn every_after<F, Fut>(first: Duration, period: Duration, shutdown: Shutdown, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut wait = first;
    loop {
        let stop = async {
            shutdown.wait().await;
            true
        };
        let this_wait = wait;
        let tick = async move {
            Timer::after(this_wait).await;
            false
        };
        wait = period;
        if tick.or(stop).await {
            return;
        }
        job().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn runs_on_its_period_and_stops_on_shutdown() {
        let runs = Arc::new(AtomicUsize::new(0));
        let shutdown = Shutdown::new();
        let (r, s) = (runs.clone(), shutdown.clone());
        smol::block_on(async move {
            let job = every(Duration::from_millis(10), s.clone(), || {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            });
            let stopper = async {
                Timer::after(Duration::from_millis(105)).await;
                s.trigger();
            };
            smol::future::zip(job, stopper).await;
        });
        let n = runs.load(Ordering::SeqCst);
        assert!(
            (5..=11).contains(&n),
            "{n} runs in ~100 ms at a 10 ms period"
        );
    }
}
