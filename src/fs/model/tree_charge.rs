//! A token's usage as the tree changes (docs/FORMAT.md §7): what each loaded inode adds
//! to its sNFT's ledger, kept in step as files grow, get uploaded or lose their names, and
//! the usage a commit publishes.

use crate::fs::error::FsResult;
use crate::fs::model::inode::{Body, Ino, TokenId};
use crate::fs::model::ledger::{Charge, CommittedUsage};

use super::tree::Tree;

impl Tree {
    /// A linked file's size changed: keep the token's usage in step.
    pub fn size_changed(&mut self, ino: Ino, old: u64, new: u64) {
        if old != new {
            self.recharge(ino, false);
        }
    }

    /// What `ino` adds to its token's usage now (docs/FORMAT.md §7): a file its uploaded
    /// content (one object however many names it has) or, while a newer version is not on
    /// the node, that version's bytes; a directory its committed manifest (once its size is
    /// known); nothing once it has no name.
    pub(super) fn desired_charge(&self, ino: Ino) -> Option<Charge> {
        let inode = self.inodes.get(&ino)?;
        if inode.links.is_empty() && !self.is_token_root(ino) {
            return None;
        }
        if self.named_in_unloaded_dir(ino) {
            // Looked up alone: what it stores is still in the figure of what is not loaded.
            return None;
        }
        match &inode.body {
            Body::File(f) => match &f.blob {
                Some(b) if b.size == f.size && !f.upload_pending && f.session.is_none() => {
                    Some(Charge::of_blob(b))
                }
                // Not on the node yet: what it will store once it is.
                _ => (f.size > 0).then(|| {
                    Charge::Own(match inode.token.and_then(|t| self.tokens.get(&t)) {
                        Some(t) => crate::fs::data::content::stored_len(&t.sealing, f.size),
                        None => f.size,
                    })
                }),
            },
            Body::Dir(d) => d.objects.clone().map(Charge::Pages),
            Body::Symlink(_) | Body::Special(_) => None,
        }
    }

    /// Bring `ino`'s charge in its token's usage up to date with its state. `loaded`: it
    /// was just read from a committed manifest (its object is in the committed figure).
    pub fn recharge(&mut self, ino: Ino, loaded: bool) {
        let Some(token) = self.inodes.get(&ino).and_then(|i| i.token) else {
            return;
        };
        let charge = self.desired_charge(ino);
        if let Some(t) = self.tokens.get_mut(&token) {
            t.ledger.set(ino, charge, loaded);
            t.usage = t.ledger.usage();
        }
    }

    /// [`Tree::recharge`] every loaded inode of `token`.
    pub fn recharge_token(&mut self, token: TokenId) {
        let inos: Vec<Ino> = self
            .inodes
            .iter()
            .filter(|(_, i)| i.token == Some(token))
            .map(|(ino, _)| *ino)
            .collect();
        for ino in inos {
            self.recharge(ino, false);
        }
    }

    /// `token`'s usage and file count as a commit that rewrites the manifests of
    /// `rewritten` publishes them: what its manifests hold, i.e. each file's last uploaded
    /// version, without what open sessions added since and without files never closed (a
    /// crash or another machine does not see those, and the oracle does not count them).
    /// Files in directories not loaded are unchanged, so only loaded inodes can differ from
    /// the live counts.
    pub fn committed_usage(
        &self,
        token: TokenId,
        rewritten: &[Ino],
    ) -> FsResult<(CommittedUsage, u64)> {
        let t = self.token(token)?;
        let mut files = t.files;
        // Only files without an uploaded version count differently (swept first).
        for inode in self
            .tracked
            .blobless
            .iter()
            .filter_map(|i| self.inodes.get(i))
        {
            let Body::File(f) = &inode.body else {
                continue;
            };
            let names = inode.links.len() as u64;
            if inode.token != Some(token) || names == 0 {
                continue;
            }
            if f.blob.is_none() {
                files = files.saturating_sub(names);
            }
        }
        let usage = t.ledger.committed(rewritten, |ino| {
            self.inodes
                .get(&ino)
                .and_then(|i| i.file())
                .and_then(|f| f.blob.as_ref())
                .map(|b| b.objects().into_iter().map(|(c, n, _)| (c, n)).collect())
                .unwrap_or_default()
        });
        Ok((usage, files))
    }
}
