//! Per-output accounting of numbered datagrams against an expected count.

use super::payload::{self, PayloadError};
use super::report::OutputReport;

/// What one received datagram turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy of an expected sequence number, in order.
    New,
    /// First copy of an expected sequence number, after a higher one.
    Reordered,
    /// A sequence number already received.
    Duplicate,
    /// Intact, but of another stream or beyond the expected count.
    Unexpected,
    /// Not an intact lab datagram.
    Corrupted(PayloadError),
}

/// Counts what one output received of sequence numbers `0..expected`.
///
/// `received` counts distinct expected sequence numbers, so
/// `received + missing == expected` always holds; duplicates, foreign or
/// out-of-range datagrams and corrupted ones have counters of their own and
/// never count as received. `bytes` counts every datagram's length.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    expected: u64,
    stream: Option<u32>,
    seen: Vec<u64>,
    highest: Option<u64>,
    received: u64,
    duplicated: u64,
    reordered: u64,
    corrupted: u64,
    unexpected: u64,
    bytes: u64,
}

impl SeqTracker {
    /// A tracker expecting sequence numbers `0..expected`, of `stream` only
    /// when given (other streams count as unexpected).
    ///
    /// # Panics
    ///
    /// If `expected` does not fit the address space (one bit per datagram).
    pub fn new(expected: u64, stream: Option<u32>) -> SeqTracker {
        let words = usize::try_from(expected.div_ceil(64)).expect("expected count too large");
        SeqTracker {
            expected,
            stream,
            seen: vec![0; words],
            highest: None,
            received: 0,
            duplicated: 0,
            reordered: 0,
            corrupted: 0,
            unexpected: 0,
            bytes: 0,
        }
    }

    /// Checks and accounts one received datagram. Never allocates.
    pub fn record(&mut self, datagram: &[u8]) -> Arrival {
        self.bytes += datagram.len() as u64;
        let (stream, seq) = match payload::check(datagram) {
            Ok(id) => id,
            Err(err) => {
                self.corrupted += 1;
                return Arrival::Corrupted(err);
            }
        };
        if seq >= self.expected || self.stream.is_some_and(|s| s != stream) {
            self.unexpected += 1;
            return Arrival::Unexpected;
        }
        // seq < expected, and `seen` holds expected.div_ceil(64) words.
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return Arrival::Duplicate;
        }
        self.seen[word] |= bit;
        self.received += 1;
        match self.highest {
            Some(high) if seq < high => {
                self.reordered += 1;
                Arrival::Reordered
            }
            _ => {
                self.highest = Some(seq);
                Arrival::New
            }
        }
    }

    /// The expected count.
    pub fn expected(&self) -> u64 {
        self.expected
    }
    /// Distinct expected sequence numbers received.
    pub fn received(&self) -> u64 {
        self.received
    }
    /// Expected sequence numbers not (yet) received.
    pub fn missing(&self) -> u64 {
        self.expected - self.received
    }
    /// Extra copies of sequence numbers already received.
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }
    /// First copies that arrived after a higher sequence number.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }
    /// Datagrams that failed [`payload::check`].
    pub fn corrupted(&self) -> u64 {
        self.corrupted
    }
    /// Intact datagrams of another stream or beyond the expected count.
    pub fn unexpected(&self) -> u64 {
        self.unexpected
    }
    /// Bytes of every datagram recorded.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Every expected sequence number arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.expected
    }
    /// Complete, and nothing duplicated, corrupted or unexpected arrived.
    /// (Reordering is reported but is not a fault.)
    pub fn is_clean(&self) -> bool {
        self.is_complete() && self.duplicated == 0 && self.corrupted == 0 && self.unexpected == 0
    }

    /// The sequence numbers still missing, in order (at most `limit`).
    pub fn missing_seqs(&self, limit: usize) -> Vec<u64> {
        (0..self.expected)
            .filter(|&s| self.seen[(s / 64) as usize] & (1 << (s % 64)) == 0)
            .take(limit)
            .collect()
    }

    /// A report of this tracker's counters under `name`.
    pub fn report(&self, name: &str) -> OutputReport {
        OutputReport {
            name: name.to_owned(),
            expected: self.expected,
            received: self.received,
            missing: self.missing(),
            duplicated: self.duplicated,
            reordered: self.reordered,
            corrupted: self.corrupted,
            unexpected: self.unexpected,
            bytes: self.bytes,
            first_missing: self.missing_seqs(16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(stream: u32, seq: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        payload::fill(stream, seq, &mut buf);
        buf
    }

    #[test]
    fn in_order_complete() {
        let mut t = SeqTracker::new(130, Some(1));
        for seq in 0..130 {
            assert_eq!(t.record(&datagram(1, seq, 64)), Arrival::New);
        }
        assert!(t.is_complete() && t.is_clean());
        assert_eq!((t.received(), t.missing(), t.bytes()), (130, 0, 130 * 64));
        assert_eq!(t.missing_seqs(10), Vec::<u64>::new());
    }

    #[test]
    fn loss_duplicates_reordering_corruption_unexpected() {
        let mut t = SeqTracker::new(10, Some(1));
        let order = [0, 1, 3, 2, 3, 5, 9];
        let arrivals: Vec<Arrival> = order
            .iter()
            .map(|&s| t.record(&datagram(1, s, 100)))
            .collect();
        assert_eq!(
            arrivals,
            [
                Arrival::New,
                Arrival::New,
                Arrival::New,
                Arrival::Reordered,
                Arrival::Duplicate,
                Arrival::New,
                Arrival::New
            ]
        );
        assert_eq!(t.record(&datagram(2, 4, 100)), Arrival::Unexpected);
        assert_eq!(t.record(&datagram(1, 10, 100)), Arrival::Unexpected);
        let mut bad = datagram(1, 4, 100);
        bad[50] ^= 1;
        assert_eq!(
            t.record(&bad),
            Arrival::Corrupted(PayloadError::Pattern { offset: 50 })
        );
        assert_eq!(t.received(), 6);
        assert_eq!(t.missing(), 4);
        assert_eq!(t.missing_seqs(10), vec![4, 6, 7, 8]);
        assert_eq!(t.missing_seqs(2), vec![4, 6]);
        assert_eq!(t.duplicated(), 1);
        assert_eq!(t.reordered(), 1);
        assert_eq!(t.unexpected(), 2);
        assert_eq!(t.corrupted(), 1);
        assert_eq!(t.bytes(), 10 * 100);
        assert!(!t.is_complete() && !t.is_clean());
        let r = t.report("x");
        assert_eq!(
            (r.expected, r.received, r.missing, r.duplicated, r.reordered),
            (10, 6, 4, 1, 1)
        );
        assert_eq!((r.corrupted, r.unexpected, r.bytes), (1, 2, 1000));
        assert_eq!(r.first_missing, vec![4, 6, 7, 8]);
        assert_eq!(r.status(), "CORRUPT", "corruption outranks loss");
    }

    #[test]
    fn any_stream_when_unfiltered_and_complete_but_dirty() {
        let mut t = SeqTracker::new(2, None);
        assert_eq!(t.record(&datagram(7, 0, 24)), Arrival::New);
        assert_eq!(t.record(&datagram(8, 1, 24)), Arrival::New);
        assert!(t.is_clean());
        assert_eq!(t.record(&datagram(8, 1, 24)), Arrival::Duplicate);
        assert!(t.is_complete() && !t.is_clean());
        assert_eq!(t.report("y").status(), "DUPLICATES");
    }

    #[test]
    fn zero_expected() {
        let mut t = SeqTracker::new(0, None);
        assert!(t.is_clean());
        assert_eq!(t.record(&datagram(0, 0, 24)), Arrival::Unexpected);
        assert!(!t.is_clean());
    }
}
