//! The bytes of run reads out at the node at once (`ChunkCache::read_sealed_run`), granted
//! in the order the runs were asked for: a reader's read-ahead asks for its runs in the
//! order it will read them, and the tasks that send them may run in any order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Units out at once, granted first come, first served.
#[derive(Debug)]
pub(super) struct RunBudget {
    total: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: u64,
    /// Reservations not granted yet, oldest first.
    waiting: VecDeque<(u64, oneshot::Sender<Lease>)>,
}

/// Units granted; given back as they arrive ([`Lease::give_back`]) or when dropped.
#[derive(Debug)]
pub(super) struct Lease {
    budget: Arc<RunBudget>,
    units: u64,
}

/// A reservation taken now, granted once the units ahead of it are back.
pub(super) enum Reservation {
    Granted(Lease),
    Waiting(oneshot::Receiver<Lease>),
}

impl RunBudget {
    pub(super) fn new(total: u64) -> Arc<RunBudget> {
        Arc::new(RunBudget {
            total,
            state: Mutex::new(State {
                free: total,
                waiting: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve `units` (at most the whole budget), behind every reservation taken before.
    pub(super) fn reserve(self: &Arc<Self>, units: u64) -> Reservation {
        let units = units.min(self.total);
        let mut state = self.lock();
        if state.waiting.is_empty() && state.free >= units {
            state.free -= units;
            return Reservation::Granted(Lease {
                budget: self.clone(),
                units,
            });
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.push_back((units, tx));
        Reservation::Waiting(rx)
    }

    /// `units` are back: grant the reservations at the front that now fit.
    fn give_back(self: &Arc<Self>, units: u64) {
        let mut state = self.lock();
        state.free = (state.free + units).min(self.total);
        while let Some((want, _)) = state.waiting.front() {
            if *want > state.free {
                break;
            }
            let (want, tx) = state.waiting.pop_front().expect("a front was just seen");
            state.free -= want;
            let lease = Lease {
                budget: self.clone(),
                units: want,
            };
            // A reservation given up: its units are free again at once.
            if let Err(mut lease) = tx.send(lease) {
                state.free += std::mem::take(&mut lease.units);
            }
        }
    }

    #[cfg(test)]
    fn free(&self) -> u64 {
        self.lock().free
    }
}

impl Reservation {
    /// The lease, once granted (`None`: the budget is gone, never while it is used).
    pub(super) async fn granted(self) -> Option<Lease> {
        match self {
            Reservation::Granted(lease) => Some(lease),
            Reservation::Waiting(rx) => rx.await.ok(),
        }
    }
}

impl Lease {
    /// Give back `units` of the lease (what arrived).
    pub(super) fn give_back(&mut self, units: u64) {
        let units = units.min(self.units);
        if units > 0 {
            self.units -= units;
            self.budget.give_back(units);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.units > 0 {
            let units = std::mem::take(&mut self.units);
            self.budget.give_back(units);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(r: Reservation) -> Lease {
        match r {
            Reservation::Granted(l) => l,
            Reservation::Waiting(_) => panic!("made to wait"),
        }
    }

    fn waits(r: Reservation) -> oneshot::Receiver<Lease> {
        match r {
            Reservation::Granted(_) => panic!("granted at once"),
            Reservation::Waiting(rx) => rx,
        }
    }

    #[test]
    fn reservations_are_granted_in_the_order_taken_as_units_come_back() {
        let budget = RunBudget::new(8);
        let mut a = now(budget.reserve(4));
        let b = now(budget.reserve(4));
        let mut c = waits(budget.reserve(6));
        // Small, but behind c: not ahead of it.
        let mut d = waits(budget.reserve(1));
        a.give_back(2);
        assert!(c.try_recv().is_err(), "6 wanted, 2 free");
        assert!(d.try_recv().is_err(), "behind c");
        drop(b);
        let c = c.try_recv().expect("6 free");
        assert!(d.try_recv().is_err(), "none free");
        drop(a);
        let d = d.try_recv().expect("2 back");
        assert_eq!(budget.free(), 1);
        drop((c, d));
        assert_eq!(budget.free(), 8);
    }

    #[test]
    fn a_reservation_given_up_frees_its_units_and_a_large_one_takes_the_whole_budget() {
        let budget = RunBudget::new(8);
        let a = now(budget.reserve(100));
        assert_eq!(budget.free(), 0, "clamped to the budget");
        let b = waits(budget.reserve(3));
        let mut c = waits(budget.reserve(3));
        drop(b);
        drop(a);
        let c = c.try_recv().expect("b gave up");
        assert_eq!(budget.free(), 5);
        drop(c);
        assert_eq!(budget.free(), 8);
    }
}
