//! Usage over time: the chain of an sNFT's usage documents, newest first, each pointing at
//! the one before (`prev`). Documents are immutable, so each is fetched once per process.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::format::usage::AnyUsageDoc;
use crate::storage::NodeClient;

/// One commit's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsagePoint {
    /// When the document was written (Unix seconds).
    pub at: u64,
    pub usage: u64,
    pub quota: u64,
    pub seq: u64,
}

/// What was read of each document (by CID), and what it points back to.
#[derive(Default)]
pub struct History {
    seen: Mutex<HashMap<String, (UsagePoint, Option<String>)>>,
}

impl History {
    /// At most `limit` points back from the document `head`, oldest first. A document that
    /// cannot be read ends the walk there (what was read is shown).
    pub async fn walk(&self, client: &NodeClient, head: &str, limit: usize) -> Vec<UsagePoint> {
        let mut points = Vec::new();
        let mut next = Some(head.to_string());
        while let Some(cid) = next.take()
            && points.len() < limit
        {
            let known = self.lock().get(&cid).cloned();
            let (point, prev) = match known {
                Some(k) => k,
                None => match crate::btns::fetch(client, &cid).await {
                    Ok(doc) => {
                        let read = point_of(&doc);
                        self.lock().insert(cid, read.clone());
                        read
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "usage history stops at an unreadable document");
                        break;
                    }
                },
            };
            points.push(point);
            next = prev;
        }
        points.reverse();
        points
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (UsagePoint, Option<String>)>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn point_of(doc: &AnyUsageDoc) -> (UsagePoint, Option<String>) {
    let at = match doc {
        AnyUsageDoc::V1(d) => d.updated_at,
        AnyUsageDoc::V2(d) => d.updated_at,
    };
    let point = UsagePoint {
        at,
        usage: doc.usage(),
        quota: doc.quota(),
        seq: doc.seq(),
    };
    (point, doc.prev().map(str::to_string))
}
