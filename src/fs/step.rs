//! `Step`: what an operation of the core gives its caller: the answer at once when memory
//! holds all it needs (most lookups, getattrs, closes), or the work that must wait (a
//! manifest to load, content to fetch). One entry point per operation: the FUSE adapter
//! answers a ready step on its own thread, without starting a task, and spawns the rest;
//! other callers `.await` either.

use std::future::{Future, IntoFuture};

use futures::future::{BoxFuture, Either, Ready};

use crate::fs::DirEntry;

pub enum Step<T> {
    Ready(T),
    Wait(BoxFuture<'static, T>),
}

impl<T> Step<T> {
    pub(crate) fn wait(f: impl Future<Output = T> + Send + 'static) -> Step<T> {
        Step::Wait(Box::pin(f))
    }
}

impl<T: Send + 'static> IntoFuture for Step<T> {
    type Output = T;
    type IntoFuture = Either<Ready<T>, BoxFuture<'static, T>>;

    fn into_future(self) -> Self::IntoFuture {
        match self {
            Step::Ready(t) => Either::Left(futures::future::ready(t)),
            Step::Wait(f) => Either::Right(f),
        }
    }
}

/// Where `readdir` puts entries: the kernel's reply buffer, or a list.
pub trait DirSink: Send + 'static {
    /// Take `entry`; `true` when full (the entry was not taken: the kernel asks again
    /// from there).
    fn offer(&mut self, entry: &DirEntry) -> bool;
}
