//! A reader's runs of reads of one content, and how far ahead of one to open chunks: the
//! kernel sends a sequential reader's reads several at once, in any order; a run is a
//! sequential reader's once its reads cover most of its span.

/// How far ahead of a sequential reader chunks are opened: as far as it has read in order,
/// between these bounds. A short run opens little it may not need; a long one keeps
/// enough requests out to fill a link's bandwidth × delay (8 MiB: 200 Mbit/s over
/// 320 ms), and the node's cores busy on a fast one.
pub(super) const OPEN_AHEAD_MIN: u64 = 256 << 10;
pub(super) const OPEN_AHEAD_MAX: u64 = 16 << 20;
/// The kernel sends a sequential reader's read-ahead (4 MiB, `cli::mount::readahead`) as
/// several requests at once, which arrive in any order: a read this close to a run, before
/// or after it, continues it.
const RUN_REORDER: u64 = 8 << 20;
/// A run of reads is a sequential reader's once it has read this much in order. Less is
/// not one: the kernel reads the two pages around a write that covers them in part, one
/// after the other, and a small change in place must not fetch the chunks after it.
const SEQUENTIAL_RUN: u64 = 128 << 10;

/// A run of reads of one content: the span its reads cover, how much they read, and how
/// far past it chunks have been opened already.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) cid: String,
    start: u64,
    reached: u64,
    /// Bytes its reads asked for (a reader that covers its span in order reads about all
    /// of it; one that jumps about in a region reads much less).
    read: u64,
    reads: u32,
    opened_to: u64,
}

impl Run {
    pub(super) fn new(cid: &str, offset: u64, end: u64) -> Run {
        Run {
            cid: cid.to_owned(),
            start: offset,
            reached: end,
            read: end - offset,
            reads: 1,
            opened_to: end,
        }
    }

    /// Whether a read at `offset` belongs to this run: within [`RUN_REORDER`] of its span.
    pub(super) fn continued_by(&self, offset: u64) -> bool {
        offset.saturating_add(RUN_REORDER) >= self.start
            && offset <= self.reached.saturating_add(RUN_REORDER)
    }

    /// Read `offset..end` continues this run.
    pub(super) fn extend(&mut self, offset: u64, end: u64) {
        self.start = self.start.min(offset);
        self.reached = self.reached.max(end);
        self.read = self.read.saturating_add(end - offset);
        self.reads = self.reads.saturating_add(1);
    }

    /// The part past `from` to open ahead now, as bytes of the content: none unless this is a
    /// sequential reader's run (more than one read, at least [`SEQUENTIAL_RUN`] in order,
    /// its span mostly read), else as far past where it has reached as it has read, within
    /// [`OPEN_AHEAD_MIN`]..[`OPEN_AHEAD_MAX`], less what was opened for it before.
    pub(super) fn ahead(&mut self, from: u64) -> std::ops::Range<u64> {
        let span = self.reached - self.start;
        let read = self.read.min(span);
        if self.reads < 2 || span < SEQUENTIAL_RUN || read.saturating_mul(2) < span {
            return 0..0;
        }
        let upto = self
            .reached
            .saturating_add(read.clamp(OPEN_AHEAD_MIN, OPEN_AHEAD_MAX));
        let from = from.max(self.opened_to);
        self.opened_to = self.opened_to.max(upto);
        from..upto.max(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn reads(run: &mut Run, at: &[u64], len: u64) -> std::ops::Range<u64> {
        let mut last = 0..0;
        for &offset in at {
            assert!(run.continued_by(offset), "a read at {offset} left the run");
            run.extend(offset, offset + len);
            last = run.ahead(offset + len);
        }
        last
    }

    #[test]
    fn reads_out_of_order_continue_a_run_and_open_past_its_reach() {
        let mut run = Run::new("c", 0, MIB);
        assert_eq!(run.ahead(MIB), 0..0, "one read is no run");
        // The kernel's read-ahead arrives out of order, up to 4 MiB apart.
        let ahead = reads(&mut run, &[3 * MIB, MIB, 4 * MIB, 2 * MIB], MIB);
        assert_eq!(run.reached, 5 * MIB);
        assert!(ahead.end == 10 * MIB, "{ahead:?}");
        // Opened once: the next read opens only what lies past the last opening.
        let next = reads(&mut run, &[5 * MIB], MIB);
        assert_eq!(next, 10 * MIB..12 * MIB);
        let far = reads(&mut run, &(6..40).map(|i| i * MIB).collect::<Vec<_>>(), MIB);
        assert_eq!(far.end, 40 * MIB + OPEN_AHEAD_MAX);
        assert!(!run.continued_by(60 * MIB), "a jump far away is a new run");
    }

    #[test]
    fn small_or_scattered_reads_open_nothing_ahead() {
        // The two pages around a small write.
        let mut run = Run::new("c", 8192, 12288);
        assert_eq!(reads(&mut run, &[4096], 4096), 0..0);
        // 4 KiB reads scattered over 8 MiB.
        let mut run = Run::new("c", 0, 4096);
        let scattered: Vec<u64> = (1..64).map(|i| (i * 7919 % 2048) * 4096).collect();
        assert_eq!(reads(&mut run, &scattered, 4096), 0..0);
    }
}
