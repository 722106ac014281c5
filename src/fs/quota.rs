//! The one decision on whether a change may add data to an sNFT: quota (`EDQUOT`) and
//! sync-overdue (`EACCES`). Every data-adding operation asks [`decide`] before it changes
//! anything, so a refused operation leaves the tree and the usage exactly as they were.

use super::error::FsError;

/// What the chain says about a token, as far as adding data is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub quota: u64,
    pub overdue: bool,
    /// Nothing may change: `--read-only`, or a manifest of the token could not be read.
    pub read_only: bool,
}

/// The kind of change an operation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Adds names or metadata but no bytes (create, mkdir, symlink, link, rename into,
    /// setxattr, open for writing).
    AddsEntry,
    /// Grows live content by this many bytes (write, truncate up).
    Grows(u64),
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
        Change::AddsEntry => Ok(()),
        Change::Grows(0) => Ok(()),
        Change::Grows(n) => match usage.checked_add(n) {
            Some(total) if total <= allowance.quota => Ok(()),
            _ => Err(FsError::QuotaExceeded),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Allowance = Allowance {
        quota: 100,
        overdue: false,
        read_only: false,
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
}
