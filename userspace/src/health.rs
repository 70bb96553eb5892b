//! Stream health: the damage a stream arrives with, counted at ingress once
//! per datagram (never per replica), before any replica is made.
//!
//! Contract: a [`StreamHealth`] is one flow's checker in one worker; it reads
//! the first bytes of each datagram of the flow that came from the right
//! sender (TTL-expired and rate-limited datagrams included: they arrived),
//! through [`StreamHealth::observe`], and counts into the flow's
//! [`HealthCounters`]. Nothing here allocates after [`StreamHealth::new`],
//! and nothing panics on any input: a datagram that is not what the flow
//! carries is counted (`rtp_invalid`, `ts_sync_errors`), never trusted.
//!
//! - **RTP** (RFC 3550, version 2, CSRCs, header extension and padding
//!   understood): per source (SSRC) the highest sequence number and a window
//!   of the last [`WINDOW`] numbers. A number that never arrived is
//!   `rtp_lost` once [`WINDOW`] later numbers have (or when the source
//!   changes, or the engine stops); one that arrives after a later one is
//!   `rtp_reordered` (and fills its hole: it is not lost); one that arrives
//!   twice is `rtp_duplicates`. A new SSRC, or a jump of [`MAX_DROPOUT`]
//!   numbers or more either way, is `rtp_restarts`: counting starts again
//!   there. Only one source is followed at a time: two senders interleaved
//!   on one flow show as restarts (configure `source` to choose one).
//! - **MPEG-TS** (ISO/IEC 13818-1), directly in UDP or inside RTP. Inside
//!   RTP, TS counts what RTP does not explain (damage before the RTP
//!   packetizer): only the RTP packets that are new (neither late nor
//!   duplicate) are read, and after an RTP gap every PID starts again, so
//!   that one lost RTP packet is one `rtp_lost`, not also a continuity
//!   error per PID it carried. Either way: 188-byte packets, each
//!   starting with the sync byte 0x47, else the datagram is one
//!   `ts_sync_errors` and is not read further. Per PID, the 4-bit continuity
//!   counter must advance by one on each packet with a payload and stay on
//!   one without (adaptation field only); one repeat of a packet with a
//!   payload is a legal duplicate (`ts_duplicates`), a second one is an
//!   error; a packet whose adaptation field sets the discontinuity indicator
//!   may jump; the null PID (0x1FFF) and reserved `adaptation_field_control`
//!   packets are not checked. Every other break is one `ts_cc_errors`, and
//!   the PID continues from the new value. The transport error indicator is
//!   `ts_transport_errors` (the packet is still checked).
//! - **`auto`** (the default) looks at the datagrams until [`LOCK`] in a row
//!   are the same kind (whole TS packets; or RTP from one SSRC with
//!   consecutive numbers, with or without TS inside), then checks that kind;
//!   [`UNLOCK`] datagrams in a row that are not that kind any more start the
//!   detection again. A stream that is neither (market data, raw video) is
//!   never counted, and once [`IDLE`] datagrams in a row brought no kind
//!   closer, `auto` looks at one datagram in [`IDLE`] only (and at the next
//!   few after one that looks like something): [`StreamHealth::wants`]
//!   tells the engine whether to hand it this datagram at all, so that such
//!   a stream costs a counter per datagram. `rtp` and `ts` check from the
//!   first datagram.

use serde::{Deserialize, Serialize};

/// How far back the RTP window reaches (sequence numbers).
pub const WINDOW: u32 = 128;
/// An RTP sequence jump of this many numbers or more, forward or back, is a
/// restart of the source, not a loss (RFC 3550 appendix A.1).
pub const MAX_DROPOUT: u32 = 3000;
/// Datagrams of one kind in a row before `auto` checks that kind.
pub const LOCK: u32 = 4;
/// Datagrams in a row not of the detected kind before `auto` looks again.
pub const UNLOCK: u32 = 16;
/// Datagrams in a row that bring `auto` no closer to a kind before it looks
/// at one in this many only.
pub const IDLE: u32 = 64;

const TS_PACKET: usize = 188;
const TS_SYNC: u8 = 0x47;
const TS_NULL_PID: usize = 0x1FFF;
const TS_PIDS: usize = 8192;
const RTP_HEADER: usize = 12;

/// The configured check of a flow (`health = ...` in the TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthMode {
    /// Detect RTP, MPEG-TS or RTP-wrapped MPEG-TS, then check it.
    #[default]
    Auto,
    /// RTP (and MPEG-TS inside it, where the payload is whole TS packets).
    Rtp,
    /// MPEG-TS directly in UDP.
    Ts,
    /// No check.
    Off,
}

impl HealthMode {
    /// Every mode's name, as in the TOML.
    pub const NAMES: &'static str = "auto, rtp, ts or off";

    /// The mode of a TOML value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(HealthMode::Auto),
            "rtp" => Some(HealthMode::Rtp),
            "ts" => Some(HealthMode::Ts),
            "off" => Some(HealthMode::Off),
            _ => None,
        }
    }

    /// The name, as in the TOML.
    pub fn name(self) -> &'static str {
        match self {
            HealthMode::Auto => "auto",
            HealthMode::Rtp => "rtp",
            HealthMode::Ts => "ts",
            HealthMode::Off => "off",
        }
    }
}

/// What a flow's datagrams were found to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum StreamKind {
    /// Nothing recognised (yet), or the check is off.
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "ts")]
    Ts,
    #[serde(rename = "rtp")]
    Rtp,
    /// RTP whose payload is MPEG-TS: both are checked.
    #[serde(rename = "rtp+ts")]
    RtpTs,
}

impl StreamKind {
    /// The name in the JSON, the table and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::None => "none",
            StreamKind::Ts => "ts",
            StreamKind::Rtp => "rtp",
            StreamKind::RtpTs => "rtp+ts",
        }
    }
}

/// One flow's health counters in one worker (summed over workers like the
/// other counters; `kind` is the most specific any worker found).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounters {
    pub kind: StreamKind,
    /// RTP datagrams checked.
    pub rtp_packets: u64,
    /// RTP sequence numbers that never arrived.
    pub rtp_lost: u64,
    /// RTP datagrams that came after a later one.
    pub rtp_reordered: u64,
    /// RTP datagrams that came twice (or more).
    pub rtp_duplicates: u64,
    /// A new SSRC, or a sequence jump of [`MAX_DROPOUT`] or more.
    pub rtp_restarts: u64,
    /// Datagrams of an RTP flow without a valid RTP version 2 header.
    pub rtp_invalid: u64,
    /// MPEG-TS packets checked.
    pub ts_packets: u64,
    /// Continuity-counter errors (any PID).
    pub ts_cc_errors: u64,
    /// Legal repeats of a packet (same continuity counter, once).
    pub ts_duplicates: u64,
    /// Packets with the transport error indicator set.
    pub ts_transport_errors: u64,
    /// Datagrams of a TS flow that are not whole 188-byte packets each
    /// starting with the sync byte.
    pub ts_sync_errors: u64,
}

impl HealthCounters {
    /// Every counter with its name (as in the JSON, the table and the
    /// metrics), in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 11] {
        [
            ("rtp_packets", self.rtp_packets),
            ("rtp_lost", self.rtp_lost),
            ("rtp_reordered", self.rtp_reordered),
            ("rtp_duplicates", self.rtp_duplicates),
            ("rtp_restarts", self.rtp_restarts),
            ("rtp_invalid", self.rtp_invalid),
            ("ts_packets", self.ts_packets),
            ("ts_cc_errors", self.ts_cc_errors),
            ("ts_duplicates", self.ts_duplicates),
            ("ts_transport_errors", self.ts_transport_errors),
            ("ts_sync_errors", self.ts_sync_errors),
        ]
    }

    /// Damage of any kind: every counter but the packet counts and the
    /// legal TS duplicates.
    pub fn errors(&self) -> u64 {
        self.rtp_lost
            + self.rtp_reordered
            + self.rtp_duplicates
            + self.rtp_restarts
            + self.rtp_invalid
            + self.ts_cc_errors
            + self.ts_transport_errors
            + self.ts_sync_errors
    }

    /// Adds `other` (another worker's count of the same flow).
    pub fn add(&mut self, other: &HealthCounters) {
        self.kind = self.kind.max(other.kind);
        self.rtp_packets += other.rtp_packets;
        self.rtp_lost += other.rtp_lost;
        self.rtp_reordered += other.rtp_reordered;
        self.rtp_duplicates += other.rtp_duplicates;
        self.rtp_restarts += other.rtp_restarts;
        self.rtp_invalid += other.rtp_invalid;
        self.ts_packets += other.ts_packets;
        self.ts_cc_errors += other.ts_cc_errors;
        self.ts_duplicates += other.ts_duplicates;
        self.ts_transport_errors += other.ts_transport_errors;
        self.ts_sync_errors += other.ts_sync_errors;
    }
}

/// A datagram's payload in one or more pieces (an XDP multi-buffer chain),
/// read at byte offsets. At most [`Payload::MAX_PARTS`] pieces are looked
/// at; a longer chain is read as if it ended there.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    parts: [&'a [u8]; Payload::MAX_PARTS],
    count: usize,
    len: usize,
}

impl<'a> Payload<'a> {
    /// Most pieces (a 9000-byte datagram in 4096-byte frames has 3).
    pub const MAX_PARTS: usize = 8;

    /// A payload in one piece.
    pub fn one(bytes: &'a [u8]) -> Self {
        let mut p = Payload {
            parts: [&[]; Self::MAX_PARTS],
            count: 0,
            len: 0,
        };
        p.push(bytes);
        p
    }

    /// An empty payload, to [`Payload::push`] pieces onto.
    pub fn new() -> Self {
        Payload {
            parts: [&[]; Self::MAX_PARTS],
            count: 0,
            len: 0,
        }
    }

    /// Appends the next piece (ignored past [`Payload::MAX_PARTS`]).
    pub fn push(&mut self, bytes: &'a [u8]) {
        if self.count < Self::MAX_PARTS {
            self.parts[self.count] = bytes;
            self.count += 1;
            self.len += bytes.len();
        }
    }

    /// Bytes in all pieces.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `out` from offset `at`; false (and `out` partly filled) past
    /// the end.
    #[inline]
    fn read(&self, at: usize, out: &mut [u8]) -> bool {
        // Nearly always: within the first piece.
        if let Some(bytes) = self.parts[0].get(at..at + out.len()) {
            out.copy_from_slice(bytes);
            return true;
        }
        self.read_pieces(at, out)
    }

    fn read_pieces(&self, at: usize, out: &mut [u8]) -> bool {
        let mut base = 0;
        let mut done = 0;
        for part in &self.parts[..self.count] {
            let end = base + part.len();
            let want = at + done;
            if want < end {
                let from = want - base;
                let n = (part.len() - from).min(out.len() - done);
                out[done..done + n].copy_from_slice(&part[from..from + n]);
                done += n;
                if done == out.len() {
                    return true;
                }
            }
            base = end;
        }
        done == out.len()
    }

    #[inline]
    fn byte(&self, at: usize) -> Option<u8> {
        match self.parts[0].get(at) {
            Some(&b) => Some(b),
            None => {
                let mut b = [0u8; 1];
                self.read_pieces(at, &mut b).then_some(b[0])
            }
        }
    }
}

/// Reads a [`Payload`] front to back (offsets that only grow): each read
/// starts from the piece the last one ended in.
struct Cursor<'p, 'a> {
    p: &'p Payload<'a>,
    part: usize,
    /// Offset of piece `part` in the payload.
    base: usize,
}

impl<'p, 'a> Cursor<'p, 'a> {
    fn new(p: &'p Payload<'a>) -> Self {
        Cursor {
            p,
            part: 0,
            base: 0,
        }
    }

    /// The `N` bytes at `at` (`at` not before the last read's), or `None`
    /// past the end.
    #[inline]
    fn bytes<const N: usize>(&mut self, at: usize) -> Option<[u8; N]> {
        while self.part < self.p.count && at >= self.base + self.p.parts[self.part].len() {
            self.base += self.p.parts[self.part].len();
            self.part += 1;
        }
        let piece = self.p.parts.get(self.part)?;
        let off = at - self.base;
        match piece.get(off..off + N) {
            Some(b) => <[u8; N]>::try_from(b).ok(),
            None => {
                // Across two pieces.
                let mut out = [0u8; N];
                self.p.read_pieces(at, &mut out).then_some(out)
            }
        }
    }
}

impl Default for Payload<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// An RTP header's fields that matter here, and where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RtpHeader {
    seq: u16,
    ssrc: u32,
    /// Payload offset and length (padding excluded).
    payload: (usize, usize),
}

/// Parses an RTP version 2 header (CSRCs, extension, padding); `None` if
/// the datagram is not one.
fn rtp_header(p: &Payload<'_>) -> Option<RtpHeader> {
    let mut h = [0u8; RTP_HEADER];
    if !p.read(0, &mut h) || h[0] >> 6 != 2 {
        return None;
    }
    let mut off = RTP_HEADER + 4 * (h[0] & 0x0F) as usize;
    if h[0] & 0x10 != 0 {
        let mut ext = [0u8; 4];
        if !p.read(off, &mut ext) {
            return None;
        }
        off += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = p.len();
    if h[0] & 0x20 != 0 {
        let pad = p.byte(end.checked_sub(1)?)? as usize;
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    if off > end {
        return None;
    }
    Some(RtpHeader {
        seq: u16::from_be_bytes([h[2], h[3]]),
        ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        payload: (off, end - off),
    })
}

/// Whether `len` bytes at `at` look like whole TS packets (length and the
/// first two sync bytes; every packet's is checked when it is read).
fn looks_ts(p: &Payload<'_>, at: usize, len: usize) -> bool {
    len >= TS_PACKET
        && len.is_multiple_of(TS_PACKET)
        && p.byte(at) == Some(TS_SYNC)
        && (len == TS_PACKET || p.byte(at + TS_PACKET) == Some(TS_SYNC))
}

/// What `auto` makes of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Nothing,
    Ts,
    Rtp(RtpHeader),
}

fn sniff(p: &Payload<'_>) -> Sniffed {
    if looks_ts(p, 0, p.len()) {
        return Sniffed::Ts;
    }
    match rtp_header(p) {
        Some(h) => Sniffed::Rtp(h),
        None => Sniffed::Nothing,
    }
}

/// What the RTP window made of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// The newest so far: its payload is checked; `next` when it follows
    /// the previous newest directly (not the first of a source, not after
    /// a gap).
    New {
        next: bool,
    },
    Late,
    Duplicate,
}

/// One RTP source's sequence window.
#[derive(Debug, Clone, Default)]
struct RtpState {
    started: bool,
    ssrc: u32,
    /// The highest sequence number so far.
    max: u16,
    /// Bit `i`: `max - i` arrived.
    window: u128,
    /// How many numbers back from `max` (inclusive) belong to this source's
    /// run: older positions came before its first datagram.
    span: u32,
}

/// Bits `lo..hi` of a window (empty when `lo >= hi`).
fn bits(lo: u32, hi: u32) -> u128 {
    if lo >= hi {
        return 0;
    }
    let upto = |n: u32| {
        if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }
    };
    upto(hi) & !upto(lo)
}

impl RtpState {
    fn restart(&mut self, seq: u16, ssrc: u32, c: &mut HealthCounters) {
        if self.started {
            self.finish(c);
            c.rtp_restarts += 1;
        }
        *self = RtpState {
            started: true,
            ssrc,
            max: seq,
            window: 1,
            span: 1,
        };
    }

    /// Counts the holes still in the window as lost (the source changed or
    /// the engine stops), and forgets them.
    fn finish(&mut self, c: &mut HealthCounters) {
        if self.started {
            let tracked = bits(0, self.span);
            c.rtp_lost += u64::from(self.span - (self.window & tracked).count_ones());
            self.window |= tracked;
        }
    }

    fn arrive(&mut self, seq: u16, ssrc: u32, c: &mut HealthCounters) -> Arrival {
        if !self.started || ssrc != self.ssrc {
            self.restart(seq, ssrc, c);
            return Arrival::New { next: false };
        }
        let ahead = u32::from(seq.wrapping_sub(self.max));
        if ahead == 0 {
            c.rtp_duplicates += 1;
            return Arrival::Duplicate;
        }
        if ahead < 0x8000 {
            if ahead >= MAX_DROPOUT {
                self.restart(seq, ssrc, c);
                return Arrival::New { next: false };
            }
            // Positions p >= WINDOW - ahead leave the window: the tracked
            // ones among them that never arrived are lost; so are the
            // skipped numbers that land beyond the window at once.
            let leaving = bits(WINDOW.saturating_sub(ahead), self.span);
            c.rtp_lost += u64::from(leaving.count_ones() - (self.window & leaving).count_ones());
            c.rtp_lost += u64::from(ahead.saturating_sub(WINDOW));
            self.window = if ahead >= WINDOW {
                1
            } else {
                (self.window << ahead) | 1
            };
            self.span = (self.span + ahead).min(WINDOW);
            self.max = seq;
            return Arrival::New { next: ahead == 1 };
        }
        let back = u32::from(self.max.wrapping_sub(seq));
        if back >= MAX_DROPOUT {
            self.restart(seq, ssrc, c);
            return Arrival::New { next: false };
        }
        if back >= self.span {
            // Older than the window (already counted lost), or from before
            // the source's first datagram here: late, no hole to fill.
            c.rtp_reordered += 1;
            return Arrival::Late;
        }
        let bit = 1u128 << back;
        if self.window & bit != 0 {
            c.rtp_duplicates += 1;
            Arrival::Duplicate
        } else {
            self.window |= bit;
            c.rtp_reordered += 1;
            Arrival::Late
        }
    }
}

/// Per PID: bit 7 seen, bit 6 the last packet was a duplicate, bits 0-3 the
/// continuity counter.
const PID_SEEN: u8 = 0x80;
const PID_DUP: u8 = 0x40;

/// The continuity state of every PID.
#[derive(Debug, Clone)]
struct TsState {
    pids: Box<[u8; TS_PIDS]>,
    /// Whether any PID was seen since the last clear (a clear of a clean
    /// table is free).
    used: bool,
}

impl Default for TsState {
    fn default() -> Self {
        TsState {
            pids: Box::new([0; TS_PIDS]),
            used: false,
        }
    }
}

impl TsState {
    fn clear(&mut self) {
        if self.used {
            self.pids.fill(0);
            self.used = false;
        }
    }

    /// Checks the `len` bytes at `at` as TS packets.
    fn check(&mut self, p: &Payload<'_>, at: usize, len: usize, c: &mut HealthCounters) {
        if len == 0 || !len.is_multiple_of(TS_PACKET) {
            c.ts_sync_errors += 1;
            return;
        }
        // Nearly always: the packets are in the first piece.
        if let Some(bytes) = p.parts[0].get(at..at + len) {
            if bytes.chunks_exact(TS_PACKET).any(|pk| pk[0] != TS_SYNC) {
                c.ts_sync_errors += 1;
                return;
            }
            for pk in bytes.chunks_exact(TS_PACKET) {
                self.packet([pk[0], pk[1], pk[2], pk[3], pk[4], pk[5]], c);
            }
            return;
        }
        // Sync first: a datagram that lost it is not read as packets.
        let mut cur = Cursor::new(p);
        for k in 0..len / TS_PACKET {
            if cur.bytes::<1>(at + k * TS_PACKET) != Some([TS_SYNC]) {
                c.ts_sync_errors += 1;
                return;
            }
        }
        let mut cur = Cursor::new(p);
        for k in 0..len / TS_PACKET {
            // Every packet is whole (188 bytes): its first 6 are there.
            let h = cur.bytes::<6>(at + k * TS_PACKET).unwrap_or_default();
            self.packet(h, c);
        }
    }

    #[inline]
    fn packet(&mut self, h: [u8; 6], c: &mut HealthCounters) {
        c.ts_packets += 1;
        if h[1] & 0x80 != 0 {
            c.ts_transport_errors += 1;
        }
        let pid = usize::from(h[1] & 0x1F) << 8 | usize::from(h[2]);
        let afc = (h[3] >> 4) & 0x3;
        let cc = h[3] & 0x0F;
        if pid == TS_NULL_PID || afc == 0 {
            return;
        }
        self.used = true;
        let payload = afc & 1 != 0;
        let discontinuity = afc & 2 != 0 && h[4] > 0 && h[5] & 0x80 != 0;
        let state = self.pids[pid];
        let mut dup = false;
        if state & PID_SEEN != 0 && !discontinuity {
            let last = state & 0x0F;
            let ok = if !payload {
                cc == last
            } else if cc == last {
                // Once is a legal duplicate; twice is not.
                dup = state & PID_DUP == 0;
                dup
            } else {
                cc == (last + 1) & 0x0F
            };
            if dup {
                c.ts_duplicates += 1;
            } else if !ok {
                c.ts_cc_errors += 1;
            }
        }
        self.pids[pid] = PID_SEEN | if dup { PID_DUP } else { 0 } | cc;
    }
}

/// Where `auto` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detect {
    /// `count` datagrams in a row looked like `kind` so far (the last RTP
    /// one with `seq` from `ssrc`).
    Looking {
        kind: StreamKind,
        count: u32,
        ssrc: u32,
        seq: u16,
    },
    /// Checking `kind`; `misses` datagrams in a row were something else.
    Locked { kind: StreamKind, misses: u32 },
}

/// One flow's checker (see the module's contract).
#[derive(Debug, Clone)]
pub struct StreamHealth {
    mode: HealthMode,
    detect: Detect,
    rtp: RtpState,
    ts: TsState,
    /// What `auto` counted while detecting: added when it locks.
    trial: HealthCounters,
    /// Datagrams in a row that brought `auto` no closer to a kind.
    idle: u32,
    /// Datagrams passed over since the last one looked at, while idle.
    skipped: u32,
}

impl StreamHealth {
    /// A checker for a flow configured with `mode`.
    pub fn new(mode: HealthMode) -> Self {
        let detect = match mode {
            HealthMode::Auto | HealthMode::Off => Detect::Looking {
                kind: StreamKind::None,
                count: 0,
                ssrc: 0,
                seq: 0,
            },
            HealthMode::Rtp => Detect::Locked {
                kind: StreamKind::Rtp,
                misses: 0,
            },
            HealthMode::Ts => Detect::Locked {
                kind: StreamKind::Ts,
                misses: 0,
            },
        };
        StreamHealth {
            mode,
            detect,
            rtp: RtpState::default(),
            ts: TsState::default(),
            trial: HealthCounters::default(),
            idle: 0,
            skipped: 0,
        }
    }

    /// Whether the next datagram is to be checked: asked once per datagram,
    /// before [`StreamHealth::observe`] (and before reading its payload).
    /// False when the check is off, and for most datagrams while `auto` is
    /// idle (see the module's contract).
    #[inline]
    pub fn wants(&mut self) -> bool {
        if self.mode == HealthMode::Off {
            return false;
        }
        if self.idle < IDLE || !matches!(self.detect, Detect::Looking { .. }) {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= IDLE {
            self.skipped = 0;
            return true;
        }
        false
    }

    /// The configured mode.
    pub fn mode(&self) -> HealthMode {
        self.mode
    }

    /// Checks one datagram's UDP payload, counting into `c`.
    #[inline]
    pub fn observe(&mut self, p: &Payload<'_>, c: &mut HealthCounters) {
        match self.detect {
            _ if self.mode == HealthMode::Off => {}
            Detect::Locked { kind, misses } => {
                let hit = self.check(kind, p, c);
                if self.mode == HealthMode::Auto {
                    self.after_locked(kind, misses, hit);
                }
            }
            Detect::Looking { .. } => self.look(p, c),
        }
    }

    /// The engine stops: RTP numbers still missing in the window are lost.
    pub fn finish(&mut self, c: &mut HealthCounters) {
        if matches!(self.detect, Detect::Locked { .. }) {
            self.rtp.finish(c);
        }
    }

    /// Checks `p` as `kind`; false if it is not of that kind at all.
    fn check(&mut self, kind: StreamKind, p: &Payload<'_>, c: &mut HealthCounters) -> bool {
        if kind == StreamKind::Ts {
            c.kind = c.kind.max(StreamKind::Ts);
            // What is not whole TS packets is one sync error (counted by
            // the check).
            let hit = looks_ts(p, 0, p.len());
            self.ts.check(p, 0, p.len(), c);
            return hit;
        }
        let Some(h) = rtp_header(p) else {
            c.rtp_invalid += 1;
            return false;
        };
        c.rtp_packets += 1;
        let arrival = self.rtp.arrive(h.seq, h.ssrc, c);
        let (at, len) = h.payload;
        if c.kind == StreamKind::RtpTs || looks_ts(p, at, len) {
            c.kind = StreamKind::RtpTs;
            if let Arrival::New { next } = arrival {
                if !next {
                    self.ts.clear();
                }
                self.ts.check(p, at, len, c);
            }
        } else if c.kind < StreamKind::Rtp {
            c.kind = StreamKind::Rtp;
        }
        true
    }

    fn after_locked(&mut self, kind: StreamKind, misses: u32, hit: bool) {
        let misses = if hit { 0 } else { misses + 1 };
        self.detect = if misses >= UNLOCK {
            self.forget();
            self.idle = 0;
            Detect::Looking {
                kind: StreamKind::None,
                count: 0,
                ssrc: 0,
                seq: 0,
            }
        } else {
            Detect::Locked { kind, misses }
        };
    }

    /// Drops what is known of the stream (a new detection starts).
    fn forget(&mut self) {
        self.rtp = RtpState::default();
        self.ts.clear();
        self.trial = HealthCounters::default();
    }

    /// `auto`, not locked yet: does this datagram continue the run?
    fn look(&mut self, p: &Payload<'_>, c: &mut HealthCounters) {
        let Detect::Looking {
            kind,
            count,
            ssrc,
            seq,
        } = self.detect
        else {
            return;
        };
        let (now, h) = match sniff(p) {
            Sniffed::Nothing => (StreamKind::None, None),
            Sniffed::Ts => (StreamKind::Ts, None),
            Sniffed::Rtp(h) => (StreamKind::Rtp, Some(h)),
        };
        let continues = count > 0
            && now == kind
            && h.is_none_or(|h| h.ssrc == ssrc && h.seq == seq.wrapping_add(1));
        self.idle = if continues {
            0
        } else if now != StreamKind::None && self.idle >= IDLE {
            // Idle, and this one looks like something: look at the next
            // few in full.
            IDLE - 2 * LOCK
        } else {
            self.idle.saturating_add(1)
        };
        if now == StreamKind::None {
            if count > 0 {
                self.forget();
            }
            self.detect = Detect::Looking {
                kind: StreamKind::None,
                count: 0,
                ssrc: 0,
                seq: 0,
            };
            return;
        }
        if !continues && count > 0 {
            self.forget();
        }
        let count = if continues { count + 1 } else { 1 };
        let mut trial = self.trial;
        self.check(now, p, &mut trial);
        if count >= LOCK {
            c.add(&trial);
            self.trial = HealthCounters::default();
            self.detect = Detect::Locked {
                kind: now,
                misses: 0,
            };
            self.idle = 0;
        } else {
            self.trial = trial;
            self.detect = Detect::Looking {
                kind: now,
                count,
                ssrc: h.map_or(0, |h| h.ssrc),
                seq: h.map_or(0, |h| h.seq),
            };
        }
    }
}

#[cfg(test)]
mod tests;
