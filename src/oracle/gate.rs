//! The bound on requests measured at a time: a fair semaphore, so requests beyond it wait
//! their turn in the order they came (none is dropped), and a waiting request holds only its
//! parameters. Its gauges (measuring now, waiting, the most ever measured at once) are in
//! the log and the adapter's `GET /status`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::Semaphore;

pub struct Gate {
    permits: Semaphore,
    max: usize,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    peak: AtomicUsize,
    done: AtomicU64,
}

/// A snapshot of the gate's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gauge {
    pub max_requests: usize,
    pub in_flight: usize,
    pub waiting: usize,
    pub peak_in_flight: usize,
    pub finished: u64,
}

/// Held while a request is measured.
pub struct Pass<'a> {
    gate: &'a Gate,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.gate.done.fetch_add(1, Ordering::SeqCst);
    }
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        let max = max.max(1);
        Gate {
            permits: Semaphore::new(max),
            max,
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            done: AtomicU64::new(0),
        }
    }

    /// Waits for a turn (first come, first served).
    pub async fn enter(&self) -> Pass<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the gate is never closed");
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Pass {
            gate: self,
            _permit: permit,
        }
    }

    pub fn gauge(&self) -> Gauge {
        Gauge {
            max_requests: self.max,
            in_flight: self.in_flight.load(Ordering::SeqCst),
            waiting: self.waiting.load(Ordering::SeqCst),
            peak_in_flight: self.peak.load(Ordering::SeqCst),
            finished: self.done.load(Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_requests_at_once_never_exceed_the_bound_and_all_finish() {
        for seed in 0..5u64 {
            let gate = Arc::new(Gate::new(3));
            let mut tasks = Vec::new();
            for i in 0..100u64 {
                let gate = gate.clone();
                tasks.push(tokio::spawn(async move {
                    let _pass = gate.enter().await;
                    assert!(gate.gauge().in_flight <= 3);
                    let ms = (i * 7 + seed * 13) % 5;
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let g = gate.gauge();
            assert_eq!((g.finished, g.in_flight, g.waiting), (100, 0, 0));
            assert!(g.peak_in_flight <= 3, "{g:?}");
        }
    }
}
