//! Reads: a handle's bytes from its session or staged version, or from the node (a
//! stored version's content, chunk by chunk for a chunked one).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::fs::Fs;
use crate::fs::data::content;
use crate::fs::data::staged::StagedFile;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::TokenId;
use crate::fs::store::Blob;

/// Where a read is served from, taken under the lock and used outside it.
enum Source {
    /// A staged version (of a token's tree, for an overlay's base).
    Local(Option<TokenId>, Arc<StagedFile>),
    /// Content on the node, of a token's tree (`None`: the dApp's files, stored as is).
    Node(Option<TokenId>, Blob),
    Empty,
}

impl Fs {
    /// Content of a stored version; a sealed chunk that does not open is logged and `EIO`.
    pub(in crate::fs) async fn read_content(
        &self,
        token: Option<TokenId>,
        sealing: &content::Sealing,
        blob: &Blob,
        offset: u64,
        len: u64,
    ) -> FsResult<Bytes> {
        let range = content::Range {
            offset,
            len,
            reader: true,
        };
        self.read_range(token, sealing, blob, range).await
    }

    /// `range` of `blob`'s content; a fill (`ops::overlay`) reads as no reader
    /// (`reader: false`): the chunks a change needs and nothing ahead of them.
    pub(in crate::fs) async fn read_range(
        &self,
        token: Option<TokenId>,
        sealing: &content::Sealing,
        blob: &Blob,
        range: content::Range,
    ) -> FsResult<Bytes> {
        let store = self.store_of(token);
        let r = content::read(&store, sealing, &self.inner.opened, blob, range).await;
        if let Err(content::ContentError::Tampered(t)) = &r {
            tracing::error!(
                offset = range.offset,
                len = range.len,
                "{t}: the node returned data that does not authenticate"
            );
        }
        Ok(r?)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        match self.read_once(fh, offset, size).await {
            // A commit deleted the staged version between choosing it and opening it:
            // the tree now names the committed content.
            Err(FsError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                self.read_once(fh, offset, size).await
            }
            r => r,
        }
    }

    async fn read_once(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let h = self.handle(fh)?;
        let (source, file_size) = {
            let tree = self.tree();
            let inode = tree.get(h.ino)?;
            let f = inode.file().ok_or(FsError::IsDir)?;
            let source = if let Some(s) = f.session.as_ref().or(f.staged.as_ref()) {
                Source::Local(inode.reads_as(), s.clone())
            } else if let Some(b) = &f.blob {
                Source::Node(inode.reads_as(), b.clone())
            } else {
                Source::Empty
            };
            (source, f.size)
        };
        if offset >= file_size {
            return Ok(Bytes::new());
        }
        let len = (size as u64).min(file_size - offset);
        let data = match source {
            Source::Local(token, s) => self.read_staged(token, &s, offset, len).await?.into(),
            Source::Node(token, blob) => {
                let sealing = self.sealing(token);
                self.read_content(token, &sealing, &blob, offset, len)
                    .await?
            }
            Source::Empty => Bytes::new(),
        };
        if data.len() as u64 >= len {
            return Ok(data.slice(..len as usize));
        }
        // A hole at the end (size set beyond the data) reads as zeros.
        let mut padded = BytesMut::with_capacity(len as usize);
        padded.extend_from_slice(&data);
        padded.resize(len as usize, 0);
        Ok(padded.freeze())
    }
}
