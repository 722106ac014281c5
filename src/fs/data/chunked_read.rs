//! Reads of a chunked version (docs/FORMAT.md §13), and the chunks opened ahead of a
//! sequential reader: on each of its reads (`read_runs::Run::ahead`), and as the chunks
//! opened ahead arrive (`read_runs::Run::refill`), so that a slow link is kept busy while
//! the reader waits for the oldest of them rather than idling until its next read asks.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::content::{
    ChunkForm, ChunkRef, ContentError, OpenChunks, Opening, RUN_CHUNKS, Range, Refill, Sealing,
    Tampered,
};
use crate::format::chunks;
use crate::fs::store::{Blob, ChunkTable, ContentStore};

/// A chunked version being read, what opening its chunks needs.
#[derive(Clone)]
struct Version {
    store: Arc<dyn ContentStore>,
    sealing: Sealing,
    cid: String,
    size: u64,
    table: Arc<ChunkTable>,
}

impl Version {
    fn chunk(&self, index: u64) -> Option<ChunkRef> {
        self.table.chunks.get(&index).map(|c| ChunkRef {
            store: self.store.clone(),
            sealing: self.sealing.clone(),
            cid: c.cid.clone(),
            index,
            form: ChunkForm::Table {
                salt: c.salt,
                size: self.size,
            },
        })
    }
}

/// Opens the chunks of `bytes` of the version ahead of its reader: in runs of
/// [`RUN_CHUNKS`] where they can be fetched together, else one by one.
fn open_ahead(version: &Arc<Version>, opened: &OpenChunks, bytes: std::ops::Range<u64>) {
    let upto = bytes.end.div_ceil(chunks::CHUNK);
    let refill: Arc<dyn Refill> = version.clone();
    let mut run = Vec::new();
    for (index, _) in version
        .table
        .chunks
        .range(bytes.start / chunks::CHUNK..upto)
    {
        match version.chunk(*index) {
            Some(c) if c.in_runs() => run.push(c),
            Some(c) => drop(opened.open(c)),
            None => {}
        }
        if run.len() == RUN_CHUNKS {
            opened.open_run(std::mem::take(&mut run), Some(refill.clone()));
        }
    }
    opened.open_run(run, Some(refill));
}

impl Refill for Version {
    fn content(&self) -> &str {
        &self.cid
    }

    fn arrived(&self, opened: &OpenChunks, bytes: u64) {
        let step = RUN_CHUNKS as u64 * chunks::CHUNK;
        let next = opened.arrived(&self.cid, bytes, step, self.size);
        if !next.is_empty() {
            // Handles only (the table is shared).
            open_ahead(&Arc::new(self.clone()), opened, next);
        }
    }
}

/// [`read`] of a chunked version (docs/FORMAT.md §13): each chunk the range touches is
/// looked up in the table and opened on its own; a hole reads as zeros. A sequential
/// reader gets the next stored chunks opened ahead.
pub(super) async fn read_chunked(
    store: &Arc<dyn ContentStore>,
    sealing: &Sealing,
    opened: &OpenChunks,
    blob: &Blob,
    table: &Arc<ChunkTable>,
    range: Range,
) -> Result<Bytes, ContentError> {
    let Range { offset, len, .. } = range;
    if let Some(why) = &table.invalid {
        return Err(Tampered(why.clone()).into());
    }
    if offset >= blob.size || len == 0 {
        return Ok(Bytes::new());
    }
    let end = blob.size.min(offset.saturating_add(len));
    let touched = chunks::chunks_touched(offset, end - offset);
    let version = Arc::new(Version {
        store: store.clone(),
        sealing: sealing.clone(),
        cid: blob.cid.clone(),
        size: blob.size,
        table: table.clone(),
    });
    let opening: Vec<Option<Opening>> = touched
        .clone()
        .map(|i| version.chunk(i).map(|c| opened.open(c)))
        .collect();
    if range.reader {
        let ahead = opened.ahead(&blob.cid, offset, end, touched.end * chunks::CHUNK);
        open_ahead(&version, opened, ahead);
    }
    let mut out = BytesMut::with_capacity((end - offset) as usize);
    for (index, opening) in touched.zip(opening) {
        let start = index * chunks::CHUNK;
        let len = chunks::chunk_len(blob.size, index).unwrap_or(0);
        let from = (offset.max(start) - start) as usize;
        let to = (end.min(start + len) - start) as usize;
        match opening {
            None => out.resize(out.len() + (to - from), 0),
            Some(opening) => {
                let plain = opening.await?;
                if to > plain.len() {
                    return Err(Tampered(format!(
                        "chunk {index} of {} is shorter than its place",
                        blob.cid
                    ))
                    .into());
                }
                out.extend_from_slice(&plain[from..to]);
            }
        }
    }
    Ok(out.freeze())
}
