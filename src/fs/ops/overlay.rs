//! Overlay sessions (`crate::fs::data::overlay`): fetching the base's chunks a change needs
//! into the staged file, and reading a version that is partly staged, partly the base.

use crate::format::chunks::{CHUNK, chunk_len, is_hole};
use crate::fs::Fs;
use crate::fs::data::content;
use crate::fs::data::staged::StagedFile;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::TokenId;

impl Fs {
    /// Fetch `chunks` of the base of `session`'s overlay into it (those still read from the
    /// base; a closed session is left as it is: the writer starts a new one).
    pub(in crate::fs) async fn fill(
        &self,
        token: TokenId,
        session: &StagedFile,
        chunks: Vec<u64>,
    ) -> FsResult<()> {
        let Some(overlay) = session.overlay() else {
            return Ok(());
        };
        let _filling = overlay.filling().await;
        let sealing = self.sealing(Some(token));
        let base = overlay.base();
        let mut wanted: Vec<u64> = chunks
            .into_iter()
            .filter(|i| overlay.from_base(*i))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Neighbouring chunks in one read (so it does not look like a sequential reader's,
        // which would open chunks ahead).
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in wanted {
            match runs.last_mut() {
                Some((_, end)) if *end == i => *end += 1,
                _ => runs.push((i, i + 1)),
            }
        }
        for (first, end) in runs {
            let from = first * CHUNK;
            let to = (end * CHUNK).min(base.size);
            if from >= to {
                continue;
            }
            // Not a reader's read: no chunk after these is opened ahead.
            let range = content::Range {
                offset: from,
                len: to - from,
                reader: false,
            };
            let bytes = self.read_range(Some(token), &sealing, base, range).await?;
            // Like a write: a close or a resize waits for it.
            let _writing = session.writing();
            for index in first..end {
                // Cut meanwhile (nothing of the base is read there now), or closed.
                if overlay.is_frozen() || !overlay.from_base(index) {
                    continue;
                }
                let at = ((index - first) * CHUNK) as usize;
                let len = chunk_len(base.size, index).unwrap_or(0) as usize;
                let Some(chunk) = bytes.get(at..at + len) else {
                    return Err(FsError::Store(crate::fs::store::StoreError::permanent(
                        "content shorter than its size",
                    )));
                };
                // What is not present is a hole in the staged file: zeros need no write.
                if !is_hole(chunk) {
                    session
                        .write_at(index * CHUNK, chunk)
                        .map_err(|e| self.disk_failed(e))?;
                }
                overlay.filled(index);
            }
        }
        Ok(())
    }

    /// Before a write of `len` bytes at `offset` through `fh`: fill what it needs of its
    /// session's base.
    pub(in crate::fs) async fn fill_for_write(
        &self,
        fh: u64,
        offset: u64,
        len: u64,
    ) -> FsResult<()> {
        let h = self.handle(fh)?;
        let (token, session, fill) = {
            let tree = self.tree();
            let token = tree.token_of(h.ino)?;
            let f = tree.get(h.ino)?.file().ok_or(FsError::IsDir)?;
            let Some(session) = f.session.clone() else {
                return Ok(());
            };
            let Some(overlay) = session.overlay() else {
                return Ok(());
            };
            let offset = if h.append { f.size } else { offset };
            let fill = overlay.to_fill_for_write(offset, len, f.size);
            (token, session, fill)
        };
        if fill.is_empty() {
            // A fill in flight holds the chunks this write lands in: wait for it.
            if let Some(o) = session.overlay() {
                drop(o.filling().await);
            }
            return Ok(());
        }
        self.fill(token, &session, fill).await
    }

    /// `len` bytes at `offset` of a staged version (the caller clips to its size): an
    /// overlay's chunks not present come from its base.
    pub(in crate::fs) async fn read_staged(
        &self,
        token: Option<TokenId>,
        staged: &StagedFile,
        offset: u64,
        len: u64,
    ) -> FsResult<Vec<u8>> {
        let Some(overlay) = staged.overlay() else {
            return Ok(staged.read_at(offset, len as usize)?);
        };
        let sealing = self.sealing(token);
        let mut out = Vec::with_capacity(len as usize);
        for (range, from_base) in overlay.runs(offset, len) {
            let want = (range.end - range.start) as usize;
            let mut part = if from_base {
                self.read_content(token, &sealing, overlay.base(), range.start, want as u64)
                    .await?
                    .to_vec()
            } else {
                staged.read_at(range.start, want)?
            };
            // Past the base's end, or the staged file's: zeros.
            part.resize(want, 0);
            out.extend_from_slice(&part);
        }
        Ok(out)
    }
}
