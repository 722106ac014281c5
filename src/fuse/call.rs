//! One kernel request from its arrival to its answer: the `tracing` span it runs in, and
//! what the metrics count of it (operation, errno, latency). The errno is noted by the
//! adapter's one errno helper while the answer is being given, in a task-local slot, so
//! no reply arm passes it along.

use std::cell::Cell;
use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

tokio::task_local! {
    /// The errno the request in this scope was answered with (0: success).
    static ANSWERED: Cell<i32>;
}

pub struct Call {
    op: &'static str,
    started: Instant,
    span: tracing::Span,
}

impl Call {
    pub fn new(op: &'static str, span: tracing::Span) -> Call {
        Call {
            op,
            started: Instant::now(),
            span,
        }
    }

    /// Run `f` inside the request's span (work before the answer).
    pub fn within<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span.in_scope(f)
    }

    /// Answer right here (on the FUSE thread): `reply` replies.
    pub fn answer_now(self, reply: impl FnOnce()) {
        let errno = self.span.in_scope(|| {
            ANSWERED.sync_scope(Cell::new(0), || {
                reply();
                ANSWERED.with(Cell::get)
            })
        });
        crate::metrics::fuse_request(self.op, errno, self.started.elapsed());
    }

    /// Answer once `replying` (which replies) has run, on the runtime.
    pub async fn answer_later(self, replying: impl Future<Output = ()>) {
        let scoped = ANSWERED.scope(Cell::new(0), async {
            replying.await;
            ANSWERED.with(Cell::get)
        });
        let errno = scoped.instrument(self.span).await;
        crate::metrics::fuse_request(self.op, errno, self.started.elapsed());
    }
}

/// The request being answered fails with `errno` (outside a request: nothing to note).
pub fn note_errno(errno: i32) {
    let _ = ANSWERED.try_with(|c| c.set(errno));
}
