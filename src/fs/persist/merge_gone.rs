//! A merge past what the node collected (docs/FORMAT.md §9.3): a writer that slept through
//! another writer's commits may find the merge base's pages, or its own last commit's,
//! gone from the node (the other writer's commits superseded them, and the node collected
//! what they unpinned). The merge then goes on against what this mount knows of its last
//! commit, and checks that what it keeps against the other writer's change still reads.

use std::collections::BTreeSet;

use crate::format;
use crate::fs::Fs;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Ino, TokenId};
use crate::fs::model::tree::Tree;

use super::merge::{Changed, current_entry};

impl Fs {
    /// Of the files a merge against what this mount knows of its last commit kept against
    /// the other writer's change (`doubtful`), those whose content the node no longer has
    /// go: the other writer replaced or removed that version and the node collected it, so
    /// keeping the name would keep only an unreadable entry. The others are pinned: this
    /// tree refers to them again.
    pub(super) async fn drop_collected_versions(
        &self,
        token: TokenId,
        doubtful: Changed,
    ) -> FsResult<()> {
        let store = self.store_of(Some(token));
        for (dir, name) in doubtful {
            let objects = {
                let tree = self.tree();
                let Some(ino) = tree.child(dir, name.as_bytes())? else {
                    continue;
                };
                match tree.get(ino)?.file().and_then(|f| f.blob.as_ref()) {
                    Some(b) => b.objects(),
                    None => continue,
                }
            };
            let mut gone = false;
            for (cid, _, _) in &objects {
                match store.pin(cid).await {
                    Ok(()) => {}
                    Err(e) if !e.transient => {
                        gone = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if gone {
                tracing::warn!(
                    token,
                    "a version kept by a merge is gone from the node (another writer replaced \
                     it and the node collected it): its name is dropped"
                );
                tracing::debug!(token, name = %name, "dropped");
                self.tree().unlink_child(dir, name.as_bytes())?;
            }
        }
        Ok(())
    }

    /// [`committed_entries`] of `dir`, loaded first.
    pub(super) async fn base_from_memory(
        &self,
        dir: Ino,
        top: Option<&str>,
    ) -> FsResult<Option<Vec<format::Entry>>> {
        self.ensure_loaded(dir).await?;
        committed_entries(&mut self.tree(), dir, top)
    }

    /// Whether `dir`'s parent is among `dirs`.
    pub(super) fn parent_in(&self, dir: Ino, dirs: &BTreeSet<Ino>) -> bool {
        let tree = self.tree();
        tree.get(dir)
            .ok()
            .and_then(|i| i.links.first())
            .is_some_and(|(p, _)| dirs.contains(p))
    }
}

/// The base's entries of `dir` when the base's version of it is this mount's last
/// committed one (`top`) and the node collected its pages (another writer's commits
/// superseded them): every entry not changed here since, as it is. A name changed here
/// is left out, as if the base had not had it: a file both sides have then differs only as
/// a conflict copy, one ours removed comes back with theirs' version, nothing is lost; a
/// directory changed inside is merged against what this mount last committed of it, the
/// same way. The directory's pages are built whole at the next commit (its old ones are
/// gone). `None` when the base's version is not this mount's (`top` `None`: whatever
/// this mount last committed there; `None` if it never did); an error when what changed
/// here is not known name by name.
fn committed_entries(
    tree: &mut Tree,
    dir: Ino,
    top: Option<&str>,
) -> FsResult<Option<Vec<format::Entry>>> {
    let d = tree.get(dir)?.dir().ok_or(FsError::NotDir)?;
    let matches = match top {
        Some(top) => d.top.as_deref() == Some(top),
        None => d.top.is_some() && d.entries.is_some(),
    };
    if !matches {
        return Ok(None);
    }
    if d.changes.all {
        // What changed here is not known name by name (a failed commit, a rename): taking
        // every entry for changed would make conflict copies of versions the other writer
        // replaced, whose content the node may have collected. The commit fails, and the
        // next mount replays the journal onto the published tree (§9.3).
        return Err(FsError::Store(crate::fs::store::StoreError::permanent(
            "the merge base's pages of a directory changed here are gone from the node and \
             its changes are not known name by name; remount to replay them onto the \
             published tree",
        )));
    }
    let changed = d.changes.names.clone();
    let mut entries = Vec::new();
    for (name, ino) in tree.entries(dir)?.iter() {
        if changed.contains(name) {
            continue;
        }
        if let Some(e) = current_entry(tree, name, ino) {
            entries.push(e);
        }
    }
    tracing::warn!(
        dir,
        "the merge base's pages of a directory are gone from the node (another writer's \
         commits superseded them and the node collected them): merging against what this \
         mount last committed there"
    );
    tree.mark_dirty(dir);
    Ok(Some(entries))
}

/// A store error that says the node does not have what was asked (not that it did not
/// answer).
pub(super) fn is_gone(e: &FsError) -> bool {
    matches!(e, FsError::Store(s) if !s.transient)
}

pub(super) fn gone_from_node(token: TokenId, e: &FsError) {
    tracing::warn!(
        token,
        error = %e,
        "a directory this mount never read is gone from the node (another writer's commits \
         superseded it and the node collected it): the other writer's version is taken"
    );
}

/// A file with no version of its own pending here (nothing written, uploading or open):
/// its content is one this mount or another writer uploaded before.
pub(super) fn settled_file(tree: &Tree, ino: Ino) -> bool {
    tree.get(ino).ok().and_then(|i| i.file()).is_some_and(|f| {
        f.session.is_none() && !f.upload_pending && f.writers == 0 && f.blob.is_some()
    })
}
