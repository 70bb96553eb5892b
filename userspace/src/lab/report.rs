//! The JSON report of `fanout lab sink --report`.

use serde::{Deserialize, Serialize};

/// What one listen address (one output) received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputReport {
    /// The listen address (`IP:PORT`).
    pub name: String,
    /// Datagrams expected (sequence numbers `0..expected`).
    pub expected: u64,
    /// Distinct expected sequence numbers received.
    pub received: u64,
    /// `expected - received`.
    pub missing: u64,
    /// Extra copies of sequence numbers already received.
    pub duplicated: u64,
    /// First copies that arrived after a higher sequence number.
    pub reordered: u64,
    /// Datagrams that were not intact lab payloads.
    pub corrupted: u64,
    /// Intact datagrams of another stream or beyond the expected count.
    pub unexpected: u64,
    /// Bytes of every datagram received.
    pub bytes: u64,
    /// The first few missing sequence numbers.
    pub first_missing: Vec<u64>,
}

impl OutputReport {
    /// `ok`, or the most serious fault: `CORRUPT`, `LOSS`, `DUPLICATES`, `UNEXPECTED`.
    pub fn status(&self) -> &'static str {
        if self.corrupted > 0 {
            "CORRUPT"
        } else if self.missing > 0 {
            "LOSS"
        } else if self.duplicated > 0 {
            "DUPLICATES"
        } else if self.unexpected > 0 {
            "UNEXPECTED"
        } else {
            "ok"
        }
    }

    /// Nothing lost, corrupted, duplicated or unexpected.
    pub fn is_clean(&self) -> bool {
        self.status() == "ok"
    }
}

/// The whole report of one `fanout lab sink` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkReport {
    /// One entry per listen address, in command-line order.
    pub outputs: Vec<OutputReport>,
    /// Why the sink stopped: `complete`, `idle-timeout` or `deadline`.
    pub stopped: String,
    /// Milliseconds from the sink's ready point to its stop.
    pub elapsed_ms: u64,
}

impl SinkReport {
    /// Every output is clean.
    pub fn is_clean(&self) -> bool {
        self.outputs.iter().all(OutputReport::is_clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let report = SinkReport {
            outputs: vec![OutputReport {
                name: "10.202.0.2:6001".into(),
                expected: 3,
                received: 2,
                missing: 1,
                duplicated: 0,
                reordered: 0,
                corrupted: 0,
                unexpected: 0,
                bytes: 10,
                first_missing: vec![1],
            }],
            stopped: "idle-timeout".into(),
            elapsed_ms: 5,
        };
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<SinkReport>(&json).unwrap(), report);
        assert!(!report.is_clean());
        assert_eq!(report.outputs[0].status(), "LOSS");
    }
}
