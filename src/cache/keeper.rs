//! Chunks kept in the background: one thread writes what readers opened into the packs, in
//! the order they were handed over. A cold sequential read hands over a chunk every
//! millisecond or so; a blocking task each had a pool of threads appending to the same pack
//! at once, waiting on its file lock and on each other. Being a cache, the queue is bounded
//! and a chunk that finds it full is not kept (the read it came from is served anyway).

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use bytes::Bytes;
use tracing::{debug, warn};

use super::store::{ChunkKey, ChunkStore};

/// Chunks waiting to be written, at most (a chunk is at most the cache's chunk size, so
/// 8 MiB with format 3's 128 KiB chunks, 16 MiB with the 256 KiB ones of the v2 form).
const QUEUED: usize = 64;

/// The sending side; the thread ends once it is dropped and the queue is written.
pub(super) struct Keeper {
    queue: Option<SyncSender<(ChunkKey, Bytes)>>,
}

impl Keeper {
    /// Starts the writing thread for `store`.
    pub(super) fn start(store: Arc<ChunkStore>) -> Keeper {
        Keeper::with_writer(move |key, data| {
            if let Err(e) = store.insert(key, &data) {
                warn!(error = %e, "cannot cache chunk");
            }
        })
    }

    /// Starts a thread handing each queued chunk to `write`, in order. Without a thread (the
    /// system refused one) nothing is kept in the background, which only costs later reads.
    fn with_writer(mut write: impl FnMut(ChunkKey, Bytes) + Send + 'static) -> Keeper {
        let (tx, rx) = sync_channel::<(ChunkKey, Bytes)>(QUEUED);
        let started = std::thread::Builder::new()
            .name("pxfs-cache-keep".into())
            .spawn(move || {
                for (key, data) in rx {
                    write(key, data);
                }
            });
        match started {
            Ok(_) => Keeper { queue: Some(tx) },
            Err(e) => {
                warn!(error = %e, "cannot start the cache's writer: opened chunks are not kept");
                Keeper { queue: None }
            }
        }
    }

    /// Queues `data` to be kept under `key`; `false` when it is dropped instead, the writer
    /// being that far behind (or gone).
    pub(super) fn keep(&self, key: ChunkKey, data: Bytes) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        match queue.try_send((key, data)) {
            Ok(()) => true,
            Err(TrySendError::Full((key, _))) => {
                debug!(cid = %key.cid, "cache writer behind: chunk not kept");
                crate::metrics::chunk_cache_drop();
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use super::*;

    fn key(i: usize) -> ChunkKey {
        ChunkKey {
            cid: Arc::from(format!("chunk-{i}")),
            index: 0,
        }
    }

    #[test]
    fn a_writer_behind_drops_what_finds_the_queue_full_and_writes_the_rest_in_order() {
        let (took, first_taken) = channel();
        let (open_gate, gate) = channel::<()>();
        let (wrote, written) = channel();
        let mut first = true;
        let keeper = Keeper::with_writer(move |key, data| {
            if std::mem::take(&mut first) {
                took.send(()).unwrap();
                gate.recv().unwrap();
            }
            wrote.send((key, data)).unwrap();
        });
        assert!(keeper.keep(key(0), Bytes::from_static(b"0")));
        first_taken.recv_timeout(Duration::from_secs(10)).unwrap();
        // The writer holds chunk 0: the queue takes QUEUED more, and refuses the next ones.
        for i in 1..=QUEUED {
            assert!(keeper.keep(key(i), Bytes::from(i.to_string())), "chunk {i}");
        }
        for i in QUEUED + 1..QUEUED + 6 {
            assert!(
                !keeper.keep(key(i), Bytes::from(i.to_string())),
                "chunk {i}"
            );
        }
        open_gate.send(()).unwrap();
        for i in 0..=QUEUED {
            let (k, d) = written.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!((k, d), (key(i), Bytes::from(i.to_string())));
        }
        // Caught up, it takes chunks again; once the keeper is gone the thread ends.
        assert!(keeper.keep(key(100), Bytes::from_static(b"x")));
        assert_eq!(
            written.recv_timeout(Duration::from_secs(10)).unwrap().0,
            key(100)
        );
        drop(keeper);
        assert!(written.recv_timeout(Duration::from_secs(10)).is_err());
    }
}
