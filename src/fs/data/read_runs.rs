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
/// Bytes of chunks opened ahead kept on their way to a sequential reader: below this, each
/// arrival opens more (up to [`OPEN_AHEAD_MAX`] past its reach), so the link never waits for
/// the reader's next read to be asked for more. Several times the bandwidth × delay of the
/// links pxfs is measured over (200 Mbit/s × 40 ms is 1 MB).
const REFILL_BELOW: u64 = 4 << 20;

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
    /// Bytes of the chunks opened ahead for it not arrived yet.
    in_flight: u64,
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
            in_flight: 0,
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
        if !self.sequential() {
            return 0..0;
        }
        let upto = self
            .reached
            .saturating_add(read.clamp(OPEN_AHEAD_MIN, OPEN_AHEAD_MAX));
        let from = from.max(self.opened_to);
        self.opened_to = self.opened_to.max(upto);
        from..upto.max(from)
    }

    /// A sequential reader's run: more than one read, at least [`SEQUENTIAL_RUN`] in order,
    /// its span mostly read.
    fn sequential(&self) -> bool {
        let span = self.reached - self.start;
        let read = self.read.min(span);
        self.reads >= 2 && span >= SEQUENTIAL_RUN && read.saturating_mul(2) >= span
    }

    /// Requests for `bytes` of chunks opened ahead went out.
    pub(super) fn sent(&mut self, bytes: u64) {
        self.in_flight = self.in_flight.saturating_add(bytes);
    }

    /// `bytes` of them arrived (or are fetched another way now).
    pub(super) fn arrived(&mut self, bytes: u64) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
    }

    /// What to open now that chunks arrived: for a sequential reader's run with fewer than
    /// [`REFILL_BELOW`] bytes on their way, the next `step` bytes past what was opened,
    /// within [`OPEN_AHEAD_MAX`] of where it has reached and the content's `size`.
    pub(super) fn refill(&mut self, step: u64, size: u64) -> std::ops::Range<u64> {
        if !self.sequential() || self.in_flight >= REFILL_BELOW {
            return 0..0;
        }
        let from = self.opened_to;
        let upto = from
            .saturating_add(step)
            .min(self.reached.saturating_add(OPEN_AHEAD_MAX))
            .min(size);
        if upto <= from {
            return 0..0;
        }
        self.opened_to = upto;
        from..upto
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

    /// Arrivals keep [`REFILL_BELOW`] on the way, never past [`OPEN_AHEAD_MAX`] beyond the
    /// reach nor the content's end, and only for a sequential reader.
    #[test]
    fn arrivals_open_more_while_little_is_on_its_way() {
        let step = 4 * MIB;
        let size = 100 * MIB;
        let mut run = Run::new("c", 0, MIB);
        assert_eq!(run.refill(step, size), 0..0, "one read is no run");
        let ahead = reads(&mut run, &[MIB, 2 * MIB, 3 * MIB], MIB);
        assert_eq!(ahead.end, 8 * MIB);
        run.sent(4 * MIB);
        // 4 MiB on the way: nothing more.
        assert_eq!(run.refill(step, size), 0..0);
        run.arrived(MIB);
        assert_eq!(run.refill(step, size), 8 * MIB..12 * MIB);
        run.sent(4 * MIB);
        // The reader stopped at 4 MiB: at most 16 MiB past it.
        run.arrived(7 * MIB);
        assert_eq!(run.refill(step, size), 12 * MIB..16 * MIB);
        run.sent(4 * MIB);
        run.arrived(4 * MIB);
        assert_eq!(run.refill(step, size), 16 * MIB..20 * MIB);
        run.arrived(4 * MIB);
        assert_eq!(run.refill(step, size), 0..0, "16 MiB past the reach");
        // Near the end of the content: up to its end, then nothing.
        let mut run = Run::new("c", 0, MIB);
        reads(&mut run, &[MIB, 2 * MIB, 3 * MIB], MIB);
        assert_eq!(run.refill(step, 9 * MIB), 8 * MIB..9 * MIB);
        assert_eq!(run.refill(step, 9 * MIB), 0..0);
        // Scattered reads: none.
        let mut run = Run::new("c", 0, 4096);
        let scattered: Vec<u64> = (1..64).map(|i| (i * 7919 % 2048) * 4096).collect();
        reads(&mut run, &scattered, 4096);
        assert_eq!(run.refill(step, size), 0..0);
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
