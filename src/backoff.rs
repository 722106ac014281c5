//! `Backoff`: the one retry schedule (the core's uploads, commits and journal replay, the
//! replicas' copies): wait, double, up to a cap; a wait ends early on cancellation.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits `first`, then twice as long each time, at most `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { next: first, max }
    }

    /// The wait that [`Backoff::wait`] will sleep next.
    pub fn next_delay(&self) -> Duration {
        self.next
    }

    /// Sleep the next delay and double it.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }

    /// Like [`Backoff::wait`], but returns `false` at once if `cancel` fires first.
    pub async fn wait_unless(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.advance();
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| b.advance().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
    }
}
