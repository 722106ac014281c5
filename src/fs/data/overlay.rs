//! An overlay session (issue #39; docs/FORMAT.md §13.5): a write session on a committed
//! chunked file stages only the chunks it writes, over the committed version (its base).
//!
//! The staged file is sparse and as long as the file; the chunks it holds are *present*.
//! Every other chunk reads from the base while it lies below `base_len` (what a truncate
//! left of the base), and as zeros past it. One invariant makes an upload need no byte of
//! the base: a chunk that is not present and lies below `base_len` has the very extent and
//! bytes it has in the base, so its stored chunk is reused as it is. A change that would
//! alter such a chunk's extent or bytes (a partial write into it, a truncate that cuts it,
//! a size change that moves the end of a short last chunk) first *fills* it: its bytes are
//! fetched from the base into the staged file and it becomes present. So a small change to
//! a large file fetches at most the two chunks at the edges of the change, never the file.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::format::chunks::{CHUNK, chunks_touched};
use crate::fs::store::Blob;

#[derive(Debug)]
pub struct Overlay {
    base: Blob,
    state: Mutex<State>,
    /// Held while a chunk is fetched from the base into the staged file, so that two
    /// writers never fill one chunk (the second would overwrite the first's write).
    filling: Arc<tokio::sync::Mutex<()>>,
}

/// What the staged file holds over the base; journaled with each close of an overlay
/// session, so a replay rebuilds the version from the staged file and the base.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub base_len: u64,
    pub present: BTreeSet<u64>,
    /// The session closed: this is a version now, and nothing fills it any more.
    pub frozen: bool,
}

/// An overlay version in the journal (`Op::Close`): the base's table top and size, what
/// is left of it, and the present chunks as `[start, end)` runs of indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub base: String,
    pub base_size: u64,
    pub base_len: u64,
    pub present: Vec<(u64, u64)>,
}

impl Overlay {
    /// An overlay with nothing written yet over `base` (a chunked version: its table known).
    pub fn new(base: Blob) -> Overlay {
        let base_len = base.size;
        Overlay::with_state(
            base,
            State {
                base_len,
                ..State::default()
            },
        )
    }

    fn with_state(base: Blob, state: State) -> Overlay {
        Overlay {
            base,
            state: Mutex::new(state),
            filling: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// A new session's overlay over what `self` (a closed version) holds: the same base and
    /// the same present chunks (the caller copies their bytes).
    pub fn reopened(&self) -> Overlay {
        let mut state = self.state();
        state.frozen = false;
        Overlay::with_state(self.base.clone(), state)
    }

    /// The overlay a journal record describes, over `base` (its table read again).
    pub fn from_record(base: Blob, record: &Record) -> Overlay {
        let present = record
            .present
            .iter()
            .flat_map(|(start, end)| *start..*end)
            .collect();
        Overlay::with_state(
            base,
            State {
                base_len: record.base_len.min(record.base_size),
                present,
                frozen: false,
            },
        )
    }

    pub fn record(&self) -> Record {
        let state = self.state();
        let mut present: Vec<(u64, u64)> = Vec::new();
        for i in state.present {
            match present.last_mut() {
                Some((_, end)) if *end == i => *end += 1,
                _ => present.push((i, i + 1)),
            }
        }
        Record {
            base: self.base.cid.clone(),
            base_size: self.base.size,
            base_len: state.base_len,
            present,
        }
    }

    pub fn base(&self) -> &Blob {
        &self.base
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().clone()
    }

    pub fn freeze(&self) {
        self.lock().frozen = true;
    }

    pub fn is_frozen(&self) -> bool {
        self.lock().frozen
    }

    /// Chunk `index` reads from the base (it is not present and lies below `base_len`).
    pub fn from_base(&self, index: u64) -> bool {
        from_base(&self.lock(), index)
    }

    /// The chunks that must be filled before `offset..offset + len` is written into a file
    /// of `size` bytes: those the write touches without covering what they hold of the base,
    /// and a short last chunk of the base whose end the write moves.
    pub fn to_fill_for_write(&self, offset: u64, len: u64, size: u64) -> Vec<u64> {
        let state = self.lock();
        let end = offset + len;
        // The write replaces every byte the chunk holds of the base.
        let covered = |i: u64| {
            let base_end = ((i + 1) * CHUNK).min(state.base_len);
            offset <= i * CHUNK && end >= base_end
        };
        let mut fill: Vec<u64> = chunks_touched(offset, len)
            .filter(|i| from_base(&state, *i) && !covered(*i))
            .collect();
        if end > size {
            fill.extend(moved_end(&state, size).filter(|i| !covered(*i)));
        }
        fill.sort_unstable();
        fill.dedup();
        fill
    }

    /// The chunks that must be filled before the file is cut or extended from `size` to
    /// `new_size`.
    pub fn to_fill_for_resize(&self, size: u64, new_size: u64) -> Vec<u64> {
        let state = self.lock();
        let mut fill = Vec::new();
        if new_size < size && !new_size.is_multiple_of(CHUNK) && from_base(&state, new_size / CHUNK)
        {
            fill.push(new_size / CHUNK);
        }
        if new_size > size {
            fill.extend(moved_end(&state, size));
        }
        fill
    }

    /// A write of `offset..offset + len` lands in the staged file: its chunks are present
    /// (the caller filled those that needed it).
    pub fn wrote(&self, offset: u64, len: u64) {
        self.lock().present.extend(chunks_touched(offset, len));
    }

    /// The file was cut to `size`: nothing of the base past it reads any more.
    pub fn cut(&self, size: u64) {
        let mut state = self.lock();
        state.base_len = state.base_len.min(size);
    }

    /// Runs of `offset..offset + len` (clipped to nothing past `size`), each read from the
    /// base (`true`) or the staged file (`false`).
    pub fn runs(&self, offset: u64, len: u64) -> Vec<(Range<u64>, bool)> {
        let state = self.lock();
        let end = offset + len;
        let mut runs: Vec<(Range<u64>, bool)> = Vec::new();
        for i in chunks_touched(offset, len) {
            let from = (i * CHUNK).max(offset);
            let to = ((i + 1) * CHUNK).min(end);
            let base = from_base(&state, i);
            match runs.last_mut() {
                Some((r, b)) if *b == base && r.end == from => r.end = to,
                _ => runs.push((from..to, base)),
            }
        }
        runs
    }

    /// Serializes fills (see [`Overlay::filling`]).
    pub async fn filling(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.filling.clone().lock_owned().await
    }

    /// A write of `offset..offset + len` that needs no fill but lands in chunks not present
    /// yet takes the fill lock without waiting (`None`: a fill runs; wait for it with
    /// [`Overlay::filling`]), so that no fill of those chunks overwrites it.
    pub fn guard_write(
        &self,
        offset: u64,
        len: u64,
    ) -> Option<Option<tokio::sync::OwnedMutexGuard<()>>> {
        let all_present = {
            let state = self.lock();
            chunks_touched(offset, len).all(|i| state.present.contains(&i))
        };
        if all_present {
            return Some(None);
        }
        self.filling.clone().try_lock_owned().ok().map(Some)
    }

    /// Chunk `index` was filled from the base.
    pub fn filled(&self, index: u64) {
        self.lock().present.insert(index);
    }
}

fn from_base(state: &State, index: u64) -> bool {
    !state.present.contains(&index) && index.saturating_mul(CHUNK) < state.base_len
}

/// The chunk holding the end of a `size`-byte file, if it is a short chunk read from the
/// base (a size change moves its end, so it is stored anew).
fn moved_end(state: &State, size: u64) -> Option<u64> {
    (!size.is_multiple_of(CHUNK) && from_base(state, size / CHUNK)).then_some(size / CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(size: u64) -> Overlay {
        Overlay::new(Blob::plain("top".into(), size))
    }

    #[test]
    fn an_aligned_write_fills_nothing_and_a_partial_one_fills_its_chunk() {
        let o = over(10 * CHUNK);
        assert!(o.to_fill_for_write(3 * CHUNK, CHUNK, 10 * CHUNK).is_empty());
        assert_eq!(
            o.to_fill_for_write(3 * CHUNK + 5, 4096, 10 * CHUNK),
            vec![3]
        );
        // Straddling two chunks: both edges.
        assert_eq!(
            o.to_fill_for_write(4 * CHUNK - 10, 20, 10 * CHUNK),
            vec![3, 4]
        );
        o.wrote(3 * CHUNK + 5, 4096);
        assert!(
            o.to_fill_for_write(3 * CHUNK + 100, 10, 10 * CHUNK)
                .is_empty()
        );
        assert!(!o.from_base(3) && o.from_base(4));
    }

    #[test]
    fn growing_past_a_short_last_chunk_fills_it_and_cutting_fills_the_cut_chunk() {
        let size = 5 * CHUNK + 100;
        let o = over(size);
        // An append moves the end of chunk 5 (100 bytes in the base).
        assert_eq!(o.to_fill_for_write(size, 10, size), vec![5]);
        assert_eq!(o.to_fill_for_write(9 * CHUNK, 10, size), vec![5]);
        assert_eq!(o.to_fill_for_resize(size, 2 * CHUNK + 7), vec![2]);
        assert!(o.to_fill_for_resize(size, 2 * CHUNK).is_empty());
        o.cut(2 * CHUNK);
        // Past the cut nothing reads from the base: a write there fills nothing.
        assert!(!o.from_base(2));
        assert!(o.to_fill_for_write(2 * CHUNK + 1, 10, 2 * CHUNK).is_empty());
        assert!(o.to_fill_for_resize(2 * CHUNK, 8 * CHUNK).is_empty());
    }

    #[test]
    fn a_record_round_trips_the_present_chunks_as_runs() {
        let o = over(100 * CHUNK);
        o.wrote(0, 3 * CHUNK);
        o.wrote(10 * CHUNK, 1);
        o.cut(50 * CHUNK);
        let r = o.record();
        assert_eq!(r.present, vec![(0, 3), (10, 11)]);
        assert_eq!(r.base_len, 50 * CHUNK);
        let back = Overlay::from_record(Blob::plain("top".into(), 100 * CHUNK), &r);
        assert_eq!(back.state().present, o.state().present);
        assert_eq!(back.state().base_len, 50 * CHUNK);
    }

    #[test]
    fn runs_split_a_read_between_the_base_and_the_staged_file() {
        let o = over(10 * CHUNK);
        o.wrote(2 * CHUNK, 10);
        let runs = o.runs(CHUNK + 5, 2 * CHUNK);
        assert_eq!(
            runs,
            vec![
                (CHUNK + 5..2 * CHUNK, true),
                (2 * CHUNK..3 * CHUNK, false),
                (3 * CHUNK..3 * CHUNK + 5, true)
            ]
        );
    }
}
