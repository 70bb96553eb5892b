//! The per-packet path of a [`Worker`]: receive a batch, hold its frames,
//! parse and classify each packet, and replicate it to every output of its
//! flow (header slot + payload chain, or a tiny payload copied), then hand
//! each TX port its chains ([`submit`]). Every replica ends in `sent` or in
//! one drop reason of its output, in the same poll.

use super::config::{MAX_INLINE, MAX_RX_CHAIN};
use super::frames::{Frames, SlotOwner};
use super::ring::{Desc, RxPort, TxPort, Umem, XDP_PKT_CONTD};
use super::stage::Stage;
use super::{Flow, Worker};
use crate::health::Payload;
use crate::rate;
use crate::stats::{DropReason, FlowCounters};
use crate::wire::{self, checksum, replica::MAX_HEADER_LEN, udp};

impl<U: Umem, R: RxPort, T: TxPort> Worker<U, R, T> {
    /// Hands every TX port its staged chains and flushes every port once.
    pub(super) fn transmit(&mut self) {
        for p in 0..self.tx.len() {
            submit(
                &mut self.tx[p],
                &mut self.stages[p],
                &mut self.frames,
                &mut self.counters,
            );
            // Every port, every poll: what a port took on an earlier poll
            // may still wait for a kick (copy mode sends a bounded number
            // of descriptors per system call); the port decides whether
            // the kernel needs one.
            self.tx[p].flush();
        }
    }

    /// Takes a batch from the RX ring and replicates it; returns the number
    /// of packets.
    pub(super) fn receive(&mut self) -> usize {
        let batch = self.cfg.batch_size.min(self.rx_descs.len());
        let mut n = self.rx.receive(&mut self.rx_descs[..batch]);
        if n == 0 && batch < self.rx_descs.len() {
            // A chain longer than the batch would never fit: take it whole.
            n = self.rx.receive(&mut self.rx_descs);
        }
        let n = n.min(self.rx_descs.len());
        if self.capped && n > 0 {
            self.now = (self.clock)();
        }
        let mut packets = 0;
        let mut start = 0;
        while start < n {
            let end = match self.rx_descs[start..n].iter().position(|d| !d.continues()) {
                Some(i) => start + i + 1,
                None => n, // a chain without its end: broken, dropped below
            };
            self.packet(start, end);
            packets += 1;
            start = end;
        }
        self.frame_counters.rx_packets += packets as u64;
        packets
    }

    /// Replicates the packet `rx_descs[lo..hi]` to every output of its flow.
    fn packet(&mut self, lo: usize, hi: usize) {
        self.held.clear();
        let mut bad = self.rx_descs[hi - 1].continues() || hi - lo > MAX_RX_CHAIN;
        let mut total = 0usize;
        for d in &self.rx_descs[lo..hi] {
            if self.frames.hold_rx(d) {
                self.held.push(d.addr);
                total += d.len as usize;
            } else {
                bad = true;
            }
        }
        if bad {
            self.frame_counters.bad_rx_desc += 1;
        } else {
            self.replicate(lo, hi, total);
        }
        for &addr in &self.held {
            self.frames.release(addr);
        }
    }

    /// The flow's stream-health check over the datagram's payload, read in
    /// place in its receive frames (`rx_descs[lo..hi]`).
    fn check_health(&mut self, f: usize, lo: usize, hi: usize, dg: &wire::Datagram) {
        let Self {
            umem,
            flows,
            counters,
            rx_descs,
            ..
        } = self;
        let health = &mut flows[f].health;
        if !health.wants() {
            return;
        }
        let mut payload = Payload::new();
        let (start, end) = (dg.payload_offset, dg.payload_offset + dg.payload_len);
        let mut pos = 0usize;
        for d in &rx_descs[lo..hi] {
            let (a, b) = (pos, pos + d.len as usize);
            pos = b;
            let (s, e) = (a.max(start), b.min(end));
            if s < e {
                payload.push(umem.bytes(d.addr + (s - a) as u64, (e - s) as u32));
            }
        }
        health.observe(&payload, &mut counters[f].health);
    }

    fn replicate(&mut self, lo: usize, hi: usize, total: usize) {
        let first = self.rx_descs[lo];
        let head = self.umem.bytes(first.addr, first.len);
        let dg = match wire::parse_head(head, total) {
            Ok(dg) => dg,
            Err(_) => {
                self.frame_counters.malformed += 1;
                return;
            }
        };
        let key = dg.flow_key();
        let Some(entry) = self.index.get(&key) else {
            self.frame_counters.no_flow += 1;
            return;
        };
        // A stream of source-specific channels: the channel is the source's.
        let f = if entry.is_by_source() {
            match self.index.get(&key.with_source_ip(dg.addrs.src())) {
                Some(channel) => channel.flow_id,
                None => {
                    self.counters[entry.flow_id as usize].source_rejected += 1;
                    return;
                }
            }
        } else {
            entry.flow_id
        };
        self.check_health(f as usize, lo, hi, &dg);
        let fc = &mut self.counters[f as usize];
        // Like a router: no hop left, no replica.
        if dg.ttl <= 1 {
            fc.ttl_expired += 1;
            return;
        }
        // The amplification guard: over the cap, no replica at all.
        if let Some(limiter) = &self.flows[f as usize].limiter
            && !rate::admit_shared(limiter, self.now, dg.payload_len)
        {
            fc.rate_limited += 1;
            return;
        }
        fc.received += 1;
        fc.received_bytes += dg.payload_len as u64;

        // The payload's pieces: the first buffer from the payload offset,
        // the following ones whole, nothing past the UDP length (padding).
        self.payload.clear();
        let (start, end) = (dg.payload_offset, dg.payload_offset + dg.payload_len);
        let mut pos = 0usize;
        for d in &self.rx_descs[lo..hi] {
            let (a, b) = (pos, pos + d.len as usize);
            pos = b;
            let (s, e) = (a.max(start), b.min(end));
            if s < e {
                self.payload.push(Desc {
                    addr: d.addr + (s - a) as u64,
                    len: (e - s) as u32,
                    options: XDP_PKT_CONTD,
                });
            }
        }
        if let Some(last) = self.payload.last_mut() {
            last.options = 0;
        }
        // A sender's unfinished checksum (a local socket over veth, a
        // container, a VM's tap: CHECKSUM_PARTIAL) is completed once here,
        // for all replicas: the incremental update of each replica's
        // checksum starts from a correct one.
        let mut dg = dg;
        if checksum::is_partial(&dg.addrs, dg.udp_len, dg.udp_checksum) {
            dg.udp_checksum = self.completed_checksum(first, &dg);
            self.counters[f as usize].checksum_completed += 1;
        }

        // Once per datagram, for all its replicas: the received half of
        // the headers, whether a chain fits, and a reference per replica
        // on every payload frame (those not used are given back below; the
        // worker's hold keeps every count above zero meanwhile, so a chain
        // refused by a submit in the loop never frees a frame early).
        let Self {
            umem,
            tx,
            frames,
            stages,
            counters,
            payload,
            cfg,
            flows,
            ..
        } = self;
        let flow = &flows[f as usize];
        let chain_fits = payload.len() < cfg.max_tx_chain;
        let Ok(rx) = wire::Received::new(&dg) else {
            let fc = &mut counters[f as usize];
            let slots = !frames.free_slots.is_empty();
            return drop_unwritable(flow, fc, dg.payload_len, chain_fits, slots);
        };
        let payload_bytes = dg.payload_len as u32;
        let outputs = flow.outputs.len() as u32;
        let dgram = |chain, tiny| Fanned {
            flow: f,
            rx: &rx,
            chain,
            tiny,
            chain_fits,
            payload_bytes,
        };
        // Two copies of the loop, so that the usual one (by reference)
        // carries nothing of the inline one.
        match payload.as_slice() {
            // A tiny payload in one buffer is read once here and copied
            // behind each replica's headers: no chain, no reference on its
            // frame.
            [p] if p.len <= flow.inline_limit => {
                let mut buf = [0u8; MAX_INLINE as usize];
                let tiny = &mut buf[..p.len as usize];
                tiny.copy_from_slice(umem.bytes(p.addr, p.len));
                let dg = dgram(&[], tiny);
                fan_out::<true, _, _>(umem, tx, frames, stages, counters, flow, &dg);
            }
            _ => {
                frames.take_refs(payload, outputs);
                let dg = dgram(payload, &[]);
                let replicas =
                    fan_out::<false, _, _>(umem, tx, frames, stages, counters, flow, &dg);
                if replicas < outputs {
                    frames.drop_refs(payload, outputs - replicas);
                }
            }
        }
    }
}

impl<U: Umem, R, T> Worker<U, R, T> {
    /// The UDP checksum the sender's NIC would have written for `dg`, whose
    /// checksum field holds the pseudo-header sum ([`checksum::is_partial`]):
    /// one read of its UDP header (in the first buffer, `first`) and of the
    /// payload pieces in `self.payload`.
    fn completed_checksum(&self, first: Desc, dg: &wire::Datagram) -> u16 {
        let mut sum = checksum::Sum::default();
        let head = self.umem.bytes(first.addr, first.len);
        let udp_header = dg.payload_offset.saturating_sub(udp::HEADER_LEN)..dg.payload_offset;
        // parse_head found the UDP header in the first buffer.
        sum.add(head.get(udp_header).unwrap_or_default());
        for p in &self.payload {
            sum.add(self.umem.bytes(p.addr, p.len));
        }
        checksum::complete_partial(sum.folded())
    }
}

/// One datagram as [`fan_out`] replicates it.
struct Fanned<'a> {
    /// Its flow's index.
    flow: u32,
    /// The received half of the replica headers.
    rx: &'a wire::Received,
    /// The payload pieces each replica chains to (empty when inline).
    chain: &'a [Desc],
    /// The payload copied behind each replica's headers (inline only).
    tiny: &'a [u8],
    chain_fits: bool,
    payload_bytes: u32,
}

/// Stages one replica of `dg` per output of `flow` (header slot, then the
/// chain, or the headers and the tiny payload in the slot when `INLINE`)
/// and counts each as sent or dropped by reason; returns the replicas
/// staged. Generic over `INLINE` so that each loop is compiled on its own.
fn fan_out<const INLINE: bool, U: Umem, T: TxPort>(
    umem: &mut U,
    tx: &mut [T],
    frames: &mut Frames,
    stages: &mut [Stage],
    counters: &mut [FlowCounters],
    flow: &Flow,
    dg: &Fanned<'_>,
) -> u32 {
    let f = dg.flow;
    let (rx, chain, tiny, chain_fits, payload_bytes) =
        (dg.rx, dg.chain, dg.tiny, dg.chain_fits, dg.payload_bytes);
    let tiny_len = if INLINE { tiny.len() } else { 0 };
    // The whole slot for an inline replica (it holds the headers and the
    // payload), the header image's length otherwise.
    let buf_len = if INLINE {
        frames.slot_size
    } else {
        MAX_HEADER_LEN as u32
    };
    let header_options = if chain.is_empty() { 0 } else { XDP_PKT_CONTD };
    let slot_shift = frames.slot_shift;
    let mut replicas = 0;
    // This flow's output counters; taken again after a submit, which may
    // count a refused chain of any flow.
    let mut ocs = &mut counters[f as usize].outputs[..];
    for out in &flow.outputs {
        let o = out.slot;
        let Some(oc) = ocs.get_mut(o) else {
            continue; // one counter per output, made in new() or add_output()
        };
        let Some(template) = &out.template else {
            oc.dropped[DropReason::NextHopUnresolved as usize] += 1;
            continue;
        };
        // Never hand the kernel a replica the egress would drop unseen.
        if payload_bytes > flow.fits_every_mtu && payload_bytes > out.max_payload {
            oc.dropped[DropReason::MessageTooBig as usize] += 1;
            continue;
        }
        if !chain_fits {
            oc.dropped[DropReason::ChainTooLong as usize] += 1;
            continue;
        }
        let Some(slot) = frames.free_slots.pop() else {
            oc.dropped[DropReason::NoSlot as usize] += 1;
            continue;
        };
        // A header slot is at least MAX_HEADER_LEN bytes (checked in
        // new()): the image is written whole, the length known here.
        // A tiny payload fits behind the longest header of the flow
        // (inline_limit), so this stays inside the slot.
        let buf = umem.bytes_mut(slot, buf_len);
        let written = match buf.first_chunk_mut() {
            Some(image) => template.write_image(rx, image),
            None => Err(wire::WriteError::BufferTooSmall {
                need: MAX_HEADER_LEN,
                have: 0,
            }),
        };
        let Ok(header_len) = written else {
            frames.free_slots.push(slot);
            oc.dropped[DropReason::HeaderError as usize] += 1;
            continue;
        };
        if INLINE && let Some(dst) = buf.get_mut(header_len..header_len + tiny_len) {
            dst.copy_from_slice(tiny);
        }
        let header_len = header_len as u32;
        let Some(stage) = stages.get_mut(out.tx) else {
            frames.free_slots.push(slot);
            continue; // checked in new()
        };
        let header = Desc {
            addr: slot,
            len: header_len + tiny_len as u32,
            options: header_options,
        };
        // A full stage is handed to its port and the chain staged
        // again (a stage holds at least one longest chain).
        let mut oc = oc;
        if !stage.push_chain(header, chain) {
            submit(&mut tx[out.tx], stage, frames, counters);
            ocs = &mut counters[f as usize].outputs[..];
            let Some(again) = ocs.get_mut(o) else {
                continue;
            };
            oc = again;
            if !stage.push_chain(header, chain) {
                frames.free_slots.push(slot);
                oc.dropped[DropReason::RingFull as usize] += 1;
                continue;
            }
        }
        // The stats count UDP payload bytes in every engine.
        let bytes = payload_bytes;
        if let Some(owner) = frames.slot_owner.get_mut((slot >> slot_shift) as usize) {
            *owner = SlotOwner {
                flow: f,
                output: o as u32,
                bytes,
                busy: true,
            };
        }
        // Counted as sent now; submit takes it back if the ring refuses.
        oc.sent += 1;
        oc.sent_bytes += u64::from(bytes);
        replicas += 1;
    }
    replicas
}

/// A datagram whose replica headers cannot be written for any output
/// ([`wire::Received::new`] refused it): every output counts a drop, for
/// the first reason that applies, in the order of the replica loop.
#[cold]
#[inline(never)]
fn drop_unwritable(
    flow: &Flow,
    fc: &mut FlowCounters,
    payload_len: usize,
    chain_fits: bool,
    slots: bool,
) {
    for out in &flow.outputs {
        let Some(oc) = fc.outputs.get_mut(out.slot) else {
            continue;
        };
        let reason = if out.template.is_some() && payload_len > out.max_payload as usize {
            DropReason::MessageTooBig
        } else if out.template.is_none() {
            DropReason::NextHopUnresolved
        } else if !chain_fits {
            DropReason::ChainTooLong
        } else if !slots {
            DropReason::NoSlot
        } else {
            DropReason::HeaderError
        };
        oc.dropped[reason as usize] += 1;
    }
}

/// Hands a port's staged chains to its TX ring. A chain the ring did not
/// take whole is a replica dropped as [`DropReason::RingFull`] (staging
/// counted it as sent; this takes it back); its untaken descriptors are
/// released at once (taken ones come back as completions).
fn submit<T: TxPort>(
    tx: &mut T,
    stage: &mut Stage,
    frames: &mut Frames,
    counters: &mut [FlowCounters],
) {
    if stage.len == 0 {
        return;
    }
    let descs = stage.descs();
    let taken = tx.transmit(descs).min(descs.len());
    if taken < descs.len() {
        // Staged replicas were counted as sent: the refused ones move to
        // RingFull. The rare path: find the chains from the start.
        let mut start = 0;
        while start < descs.len() {
            let end = descs[start..]
                .iter()
                .position(|d| !d.continues())
                .map_or(descs.len(), |i| start + i + 1);
            if end > taken {
                let owner = frames
                    .slot_owner
                    .get(frames.slot_index(descs[start].addr))
                    .copied()
                    .unwrap_or_default();
                for d in &descs[start.max(taken)..end] {
                    frames.release(d.addr);
                }
                let oc = &mut counters[owner.flow as usize].outputs[owner.output as usize];
                oc.sent -= 1;
                oc.sent_bytes -= u64::from(owner.bytes);
                oc.dropped[DropReason::RingFull as usize] += 1;
            }
            start = end;
        }
    }
    stage.len = 0;
}
