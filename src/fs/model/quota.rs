//! The one decision on whether a change may add data to an sNFT: quota (`EDQUOT`) and
//! sync-overdue (`EACCES`). Every data-adding operation asks [`decide`] before it changes
//! anything, so a refused operation leaves the tree and the usage exactly as they were.

use crate::fs::error::FsError;

/// What the chain says about a token, as far as adding data is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub quota: u64,
    pub overdue: bool,
    /// Nothing may change: `--read-only`, or a manifest of the token could not be read.
    pub read_only: bool,
    /// Bytes the contract already counts and never gives back (PX.sol's on-chain usage;
    /// 0 for pxfs's contract): growth is judged from `max(usage, floor)`.
    pub floor: u64,
    /// The contract's upload counter is spent (PX.sol's `bandwidth == 0`): nothing may be
    /// added, as `canUpload` would refuse it.
    pub no_bandwidth: bool,
}

/// The kind of change an operation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Adds names or metadata but no bytes (create, mkdir, symlink, link, rename into,
    /// setxattr, open for writing).
    AddsEntry,
    /// Grows live content by this many bytes (write, fallocate).
    Grows(u64),
    /// Sets a file's length upwards (truncate): grows live content by `growth` bytes, to a
    /// file that stores `stored_size` bytes. A length that this sNFT's quota could never
    /// hold is `EFBIG` (POSIX: past the largest file size), one that fits the quota but not
    /// the room left is `EDQUOT`.
    Extends { growth: u64, stored_size: u64 },
    /// Removes or shrinks: always allowed, even when overdue or over quota.
    Shrinks,
}

/// `Ok` if `change` may happen to a token whose live content is `usage` bytes.
pub fn decide(allowance: Allowance, usage: u64, change: Change) -> Result<(), FsError> {
    if allowance.read_only {
        return Err(FsError::ReadOnly("this sNFT is served read-only"));
    }
    match change {
        Change::Shrinks => Ok(()),
        _ if allowance.overdue => Err(FsError::SyncOverdue),
        _ if allowance.no_bandwidth => Err(FsError::QuotaExceeded),
        Change::AddsEntry => Ok(()),
        Change::Extends { stored_size, .. } if stored_size > allowance.quota => {
            Err(FsError::FileTooBig)
        }
        Change::Grows(0) | Change::Extends { growth: 0, .. } => Ok(()),
        Change::Grows(n) | Change::Extends { growth: n, .. } => {
            match usage.max(allowance.floor).checked_add(n) {
                Some(total) if total <= allowance.quota => Ok(()),
                _ => Err(FsError::QuotaExceeded),
            }
        }
    }
}

/// How many bytes live content may still grow by: what a write that does not fit whole
/// writes (a short write, as a local filesystem at its quota gives; the next one gets
/// `EDQUOT`). The same refusals as [`decide`] for anything that may not add data at all.
pub fn room(allowance: Allowance, usage: u64) -> Result<u64, FsError> {
    decide(allowance, usage, Change::AddsEntry)?;
    // PX.sol after deletes: the chain counts more than the tree holds, and growth is judged
    // against that count, which a write does not raise until it is reported. A cut-short
    // write would be judged against the same count again and again: no partial writes
    // there, each write is allowed or refused whole (issue #33 leaves this case as it was).
    if allowance.floor > usage {
        return Ok(0);
    }
    Ok(allowance.quota.saturating_sub(usage.max(allowance.floor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Allowance = Allowance {
        quota: 100,
        overdue: false,
        read_only: false,
        floor: 0,
        no_bandwidth: false,
    };

    #[test]
    fn growth_to_exactly_the_quota_is_allowed_and_one_byte_more_is_not() {
        assert!(decide(OPEN, 90, Change::Grows(10)).is_ok());
        assert_eq!(
            decide(OPEN, 90, Change::Grows(11)).unwrap_err().errno(),
            libc::EDQUOT
        );
    }

    #[test]
    fn a_length_past_the_quota_is_efbig_and_one_past_the_room_left_is_edquot() {
        let extend = |growth, stored_size| Change::Extends {
            growth,
            stored_size,
        };
        assert!(decide(OPEN, 90, extend(10, 100)).is_ok());
        assert_eq!(
            decide(OPEN, 90, extend(11, 101)).unwrap_err().errno(),
            libc::EFBIG
        );
        assert_eq!(
            decide(OPEN, 90, extend(20, 60)).unwrap_err().errno(),
            libc::EDQUOT
        );
        // The lock and read-only come first, as for every other addition.
        let overdue = Allowance {
            overdue: true,
            ..OPEN
        };
        assert_eq!(
            decide(overdue, 0, extend(1000, 1000)).unwrap_err().errno(),
            libc::EACCES
        );
    }

    #[test]
    fn room_is_what_is_left_of_the_quota_and_nothing_when_additions_are_refused() {
        assert_eq!(room(OPEN, 90).unwrap(), 10);
        assert_eq!(room(OPEN, 100).unwrap(), 0);
        assert_eq!(room(OPEN, 130).unwrap(), 0);
        assert_eq!(room(Allowance { floor: 95, ..OPEN }, 10).unwrap(), 0);
        assert_eq!(room(Allowance { floor: 95, ..OPEN }, 97).unwrap(), 3);
        let overdue = Allowance {
            overdue: true,
            ..OPEN
        };
        assert_eq!(room(overdue, 0).unwrap_err().errno(), libc::EACCES);
        let spent = Allowance {
            no_bandwidth: true,
            ..OPEN
        };
        assert_eq!(room(spent, 0).unwrap_err().errno(), libc::EDQUOT);
    }

    #[test]
    fn overdue_refuses_every_addition_but_allows_shrinking() {
        let overdue = Allowance {
            overdue: true,
            ..OPEN
        };
        assert_eq!(
            decide(overdue, 0, Change::AddsEntry).unwrap_err().errno(),
            libc::EACCES
        );
        assert_eq!(
            decide(overdue, 0, Change::Grows(1)).unwrap_err().errno(),
            libc::EACCES
        );
        assert!(decide(overdue, 500, Change::Shrinks).is_ok());
    }

    #[test]
    fn px_sol_counts_on_chain_usage_that_deletes_do_not_lower() {
        let px = Allowance { floor: 80, ..OPEN };
        // The tree holds 10 bytes after deletes, but the contract still counts 80.
        assert!(decide(px, 10, Change::Grows(20)).is_ok());
        assert_eq!(
            decide(px, 10, Change::Grows(21)).unwrap_err().errno(),
            libc::EDQUOT
        );
        assert!(decide(px, 95, Change::Grows(5)).is_ok());
        assert_eq!(
            decide(px, 95, Change::Grows(6)).unwrap_err().errno(),
            libc::EDQUOT
        );
    }

    #[test]
    fn spent_bandwidth_refuses_additions_with_edquot_and_the_lock_wins_with_eacces() {
        let spent = Allowance {
            no_bandwidth: true,
            ..OPEN
        };
        assert_eq!(
            decide(spent, 0, Change::Grows(1)).unwrap_err().errno(),
            libc::EDQUOT
        );
        assert_eq!(
            decide(spent, 0, Change::AddsEntry).unwrap_err().errno(),
            libc::EDQUOT
        );
        assert!(decide(spent, 0, Change::Shrinks).is_ok());
        let both = Allowance {
            overdue: true,
            ..spent
        };
        assert_eq!(
            decide(both, 0, Change::Grows(1)).unwrap_err().errno(),
            libc::EACCES
        );
    }
}
