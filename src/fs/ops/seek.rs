//! `lseek(SEEK_DATA / SEEK_HOLE)`: where a file's data and holes are, so that `cp
//! --sparse=auto`, `tar -S` and `rsync --sparse` copy a sparse file out sparse. Answered
//! per 128 KiB chunk from what is known without reading content: a chunked version's table
//! (a chunk it does not store is a hole, docs/FORMAT.md §13.1), an overlay's present chunks
//! over its base, a staged whole file's own holes (the cache disk's `SEEK_DATA`); a version
//! stored whole is data throughout (allowed: a hole may always be reported as data).

use std::os::fd::AsRawFd;

use crate::format::chunks::CHUNK;
use crate::fs::Fs;
use crate::fs::data::staged::StagedFile;
use crate::fs::error::{FsError, FsResult};
use crate::fs::store::ChunkTable;

/// Where the data of one version is.
enum Layout {
    /// Everything is data.
    Whole,
    /// A chunked version: the chunks its table stores.
    Table(std::sync::Arc<ChunkTable>),
    /// A staged file (its holes are the cache disk's).
    Staged(std::sync::Arc<StagedFile>),
}

impl Fs {
    /// The offset of the first data (`data`) or hole at or after `offset`; `ENXIO` at or past
    /// the end, or (for data) when only holes follow.
    pub async fn seek_data_or_hole(&self, fh: u64, offset: u64, data: bool) -> FsResult<u64> {
        let h = self.handle(fh)?;
        let (layout, size) = {
            let tree = self.tree();
            let f = tree.get(h.ino)?.file().ok_or(FsError::IsDir)?;
            let layout = match f.session.as_ref().or(f.staged.as_ref()) {
                Some(s) => Layout::Staged(s.clone()),
                None => match f.blob.as_ref().and_then(|b| b.chunks.clone()) {
                    Some(t) => Layout::Table(t),
                    None => Layout::Whole,
                },
            };
            (layout, f.size)
        };
        if offset >= size {
            return Err(FsError::NoMoreData);
        }
        let found = match layout {
            Layout::Whole => Some(if data { offset } else { size }),
            Layout::Table(t) => by_chunk(offset, size, data, |i| t.chunks.contains_key(&i)),
            Layout::Staged(s) => match s.overlay() {
                Some(o) => {
                    let table = o.base().chunks.clone();
                    let state = o.state();
                    let has = |i: u64| {
                        if state.present.contains(&i) {
                            return true;
                        }
                        i * CHUNK < state.base_len
                            && table.as_ref().is_some_and(|t| t.chunks.contains_key(&i))
                    };
                    by_chunk(offset, size, data, has)
                }
                None => staged_seek(&s, offset, size, data)?,
            },
        };
        found.ok_or(FsError::NoMoreData)
    }
}

/// The first chunk at or after `offset`'s that holds data (`data`) or is a hole, as an
/// offset no smaller than `offset`; a hole is always found at `size`.
fn by_chunk(offset: u64, size: u64, data: bool, has: impl Fn(u64) -> bool) -> Option<u64> {
    let last = size.div_ceil(CHUNK);
    let mut i = offset / CHUNK;
    while i < last {
        if has(i) == data {
            return Some((i * CHUNK).max(offset));
        }
        i += 1;
    }
    (!data).then_some(size)
}

/// The staged file's own answer (its sparse regions are holes); past its length is a hole
/// up to the file's size.
fn staged_seek(s: &StagedFile, offset: u64, size: u64, data: bool) -> FsResult<Option<u64>> {
    let file = std::fs::File::open(s.path())?;
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    // SAFETY: lseek on a descriptor this function owns; no memory is passed.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some((r as u64).min(size)));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Past the staged file's end: a hole up to the size.
        Some(libc::ENXIO) => Ok((!data).then_some(offset)),
        // A cache disk that cannot say: all data.
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(Some(if data { offset } else { size })),
        _ => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_holes_are_found_per_chunk() {
        let size = 10 * CHUNK;
        let has = |i: u64| i == 3 || i == 4;
        assert_eq!(by_chunk(0, size, true, has), Some(3 * CHUNK));
        assert_eq!(
            by_chunk(3 * CHUNK + 5, size, true, has),
            Some(3 * CHUNK + 5)
        );
        assert_eq!(by_chunk(3 * CHUNK + 5, size, false, has), Some(5 * CHUNK));
        assert_eq!(by_chunk(0, size, false, has), Some(0));
        assert_eq!(by_chunk(5 * CHUNK, size, true, has), None);
        // The end is a hole.
        assert_eq!(by_chunk(3 * CHUNK, 5 * CHUNK, false, has), Some(5 * CHUNK));
    }
}
