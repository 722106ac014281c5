//! One commit's new pages, sent to the node together once every directory is written.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::StreamExt;

use super::pages::Added;
use crate::fs::error::{FsError, FsResult};
use crate::fs::store::ContentStore;

/// New pages of one commit, sent to the node together ([`Outbox::send`]) once every
/// directory is written, rather than one request per page as each is built: over a link
/// 20 ms away, a commit of 80 pages took 3.5 s one by one. Their CIDs are computed here
/// (one raw block each, docs/FORMAT.md §1.1), so the parents are built before the node
/// has them; nothing names them until the commit publishes, after the send.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Objects on the node already, or sent by this commit: not sent again.
    pub have: HashSet<String>,
    /// What this commit added (its tree objects).
    pub added: Added,
    pages: Vec<(String, Bytes)>,
    /// Where each of `pages` is, by CID.
    index: HashMap<String, usize>,
}

/// Pages per add request, and bytes.
const OUTBOX_BATCH_PAGES: usize = 64;
const OUTBOX_BATCH_BYTES: usize = 4 << 20;
/// Add requests of one commit out at once.
const OUTBOX_REQUESTS: usize = 4;

impl Outbox {
    /// For a commit whose objects in `have` are on the node already.
    pub fn new(have: HashSet<String>) -> Outbox {
        Outbox {
            have,
            ..Outbox::default()
        }
    }

    pub(super) fn push(&mut self, cid: String, bytes: Bytes) {
        self.index.insert(cid.clone(), self.pages.len());
        self.pages.push((cid, bytes));
    }

    /// Page `cid`, pushed and not sent yet.
    pub fn get(&self, cid: &str) -> Option<Bytes> {
        self.index.get(cid).map(|&i| self.pages[i].1.clone())
    }

    /// The pages fit in one add request with a document: they can go with it
    /// ([`Outbox::take`]) instead of a round trip before it.
    pub fn fits_one_request(&self) -> bool {
        self.pages.len() < OUTBOX_BATCH_PAGES
            && self.pages.iter().map(|(_, b)| b.len()).sum::<usize>() < OUTBOX_BATCH_BYTES
    }

    /// The pages pushed, to be sent by the caller (each must come back under its CID).
    pub fn take(&mut self) -> Vec<(String, Bytes)> {
        self.index.clear();
        std::mem::take(&mut self.pages)
    }

    /// Adds every page pushed, in batches, several at once; each must come back under the
    /// CID computed for it.
    pub async fn send(&mut self, store: &dyn ContentStore) -> FsResult<()> {
        let mut batches: Vec<Vec<(String, Bytes)>> = Vec::new();
        let mut bytes = 0;
        for (cid, page) in self.take() {
            let full = batches.last().is_none_or(|b| {
                b.len() >= OUTBOX_BATCH_PAGES || bytes + page.len() > OUTBOX_BATCH_BYTES
            });
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += page.len();
            if let Some(b) = batches.last_mut() {
                b.push((cid, page));
            }
        }
        let mut sends = futures::stream::iter(batches.into_iter().map(|batch| async move {
            let objects = batch.iter().map(|(_, b)| b.clone()).collect();
            let cids = store.add_manifests(objects).await?;
            crate::fs::store::check_added(&batch, &cids).map_err(FsError::Journal)
        }))
        .buffer_unordered(OUTBOX_REQUESTS);
        while let Some(sent) = sends.next().await {
            sent?;
        }
        Ok(())
    }
}
