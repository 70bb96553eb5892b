//! fanout's XDP program: hand the datagrams of configured multicast flows to
//! the AF_XDP socket of their rx queue, and everything else to the kernel.
//!
//! Contract, per frame:
//! - it is classified by `fanout_common::parse::classify` (Ethernet, up to two
//!   VLAN tags, IPv4 with any valid IHL or IPv6, UDP; every read bounds-checked
//!   against `data_end`, lengths checked against the whole multi-buffer frame);
//! - a datagram whose stream (family, group, port, VLAN) is in `FLOWS` is
//!   matched: an any-source flow by that entry; a stream of source-specific
//!   channels (`FLOW_BY_SOURCE`, several may share a group) by a second
//!   lookup under the datagram's source, a miss being `SourceRejected`;
//!   matched, it is redirected with `bpf_redirect_map(XSKS, rx_queue,
//!   XDP_PASS)`: without a socket on that queue it goes to the kernel
//!   (fail-open);
//! - everything else returns `XDP_PASS`, untouched: malformed frames,
//!   fragments, UDP behind IPv6 extension headers, non-UDP, unknown flows, rejected sources, frames to
//!   another host's MAC (`OtherHost`: the kernel drops them), and matched
//!   datagrams longer than the ingress MTU (GSO trains, `Oversize`);
//! - the program never drops, never rewrites, never aborts;
//! - each frame bumps `Seen`, one verdict counter and one action counter in
//!   the per-CPU `COUNTERS` (see `fanout_common::Counter` for the equations);
//! - a configured flow's datagram also bumps one counter of that flow in
//!   `FLOW_COUNTERS` (`fanout_common::FlowCounter`): redirected, or why it
//!   was passed (its first fragment, behind IPv6 extension headers, over
//!   the MTU, to another host's MAC, no socket), so that every datagram of
//!   a flow that the worker never replicates is attributed to the flow.
//!
//! The VLAN of the key is the innermost tag's VID, 0 for untagged frames, and
//! matching is exact (no fall-back from a tagged frame to a VLAN-0 entry):
//! the same group on two VLANs is two streams. NICs that strip the VLAN tag in
//! hardware show the program an untagged frame; the loader must account for it.
//!
//! Frags-aware (`#[xdp(frags)]`): headers are read from the first buffer, and
//! the total length (`bpf_xdp_get_buff_len`) is what the IP and UDP lengths are
//! checked against, so jumbo frames on multi-buffer drivers are matched whole.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, HashMap, PerCpuArray, XskMap},
    bindings::bpf_check_mtu_ret::BPF_MTU_CHK_RET_FRAG_NEEDED,
    helpers::generated::{bpf_check_mtu, bpf_xdp_get_buff_len},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use fanout_common::{
    Counter, FlowCounter, FlowKey, FlowValue, Ingress, MAX_FLOWS, MAX_QUEUES,
    parse::{Frame, Passed, Verdict, classify},
};

/// Configured flows (written by userspace).
#[btf_map]
static FLOWS: HashMap<FlowKey, FlowValue, { MAX_FLOWS as usize }> = HashMap::new();

/// AF_XDP socket per rx queue (written by userspace).
#[btf_map]
static XSKS: XskMap<{ MAX_QUEUES as usize }> = XskMap::new();

/// The interface the program serves (written by userspace at attach).
#[btf_map]
static INGRESS: Array<Ingress, 1> = Array::new();

/// Per-CPU counters, indexed by `fanout_common::Counter`.
#[btf_map]
static COUNTERS: PerCpuArray<u64, { Counter::COUNT as usize }> = PerCpuArray::new();

/// Per-CPU counters of each flow, indexed by `FlowCounter::slot`.
#[btf_map]
static FLOW_COUNTERS: PerCpuArray<u64, { (MAX_FLOWS * FlowCounter::COUNT) as usize }> =
    PerCpuArray::new();

#[xdp(frags)]
pub fn fanout_xdp(ctx: XdpContext) -> u32 {
    count(Counter::Seen);
    let action = handle(&ctx);
    count(if action == xdp_action::XDP_REDIRECT {
        Counter::Redirected
    } else {
        Counter::Passed
    });
    action
}

#[inline(always)]
fn handle(ctx: &XdpContext) -> u32 {
    let frame = XdpFrame::new(ctx);
    let datagram = match classify(&frame) {
        Verdict::Udp(d) => d,
        Verdict::Malformed => return pass(Counter::Malformed),
        Verdict::Fragment(first) => {
            // A configured flow's first fragment counts for that flow.
            if let Some(Ok(flow)) = first.map(|p| flow_of(&p)) {
                count_flow(flow, FlowCounter::Fragment);
            }
            return pass(Counter::Fragment);
        }
        Verdict::NotIp => return pass(Counter::NotIp),
        Verdict::NotUdp => return pass(Counter::NotUdp),
        Verdict::ExtHeaders(p) => {
            if let Ok(flow) = flow_of(&p) {
                count_flow(flow, FlowCounter::ExtHeaders);
            }
            return pass(Counter::ExtHeaders);
        }
    };
    let flow = match flow_of(&Passed {
        key: datagram.key,
        source: datagram.source,
    }) {
        Ok(flow) => flow,
        Err(counter) => return pass(counter),
    };
    if !for_this_host(&frame) {
        count_flow(flow, FlowCounter::OtherHost);
        return pass(Counter::OtherHost);
    }
    count(Counter::Matched);
    if longer_than_mtu(ctx, datagram.ip_len) {
        count_flow(flow, FlowCounter::Oversize);
        return pass(Counter::Oversize);
    }
    match XSKS.redirect(ctx.rx_queue_index(), u64::from(xdp_action::XDP_PASS)) {
        Ok(action) => {
            if action == xdp_action::XDP_REDIRECT {
                count_flow(flow, FlowCounter::Redirected);
            } else {
                count_flow(flow, FlowCounter::NoSocket);
            }
            action
        }
        Err(_) => {
            count_flow(flow, FlowCounter::NoSocket);
            pass(Counter::NoSocket)
        }
    }
}

/// The flow id of the stream `p` (its source-specific channel, for a
/// stream of channels), or the counter that says why there is none.
#[inline(always)]
fn flow_of(p: &Passed) -> Result<u32, Counter> {
    // SAFETY: the value is copied out at once; nothing is held across another
    // map operation, so a concurrent update from userspace cannot alias it.
    let Some(stream) = (unsafe { FLOWS.get(p.key) }).copied() else {
        return Err(Counter::NoFlow);
    };
    if !stream.is_by_source() {
        return Ok(stream.flow_id);
    }
    // SAFETY: as above, the channel's value is copied out at once.
    match unsafe { FLOWS.get(p.key.with_source(p.source)) }.copied() {
        Some(channel) => Ok(channel.flow_id),
        None => Err(Counter::SourceRejected),
    }
}

/// Whether the frame's destination MAC is this host's: multicast, or the
/// ingress interface's own (see `fanout_common::Ingress`).
#[inline(always)]
fn for_this_host(frame: &XdpFrame) -> bool {
    let Some(dst) = frame.load::<6>(0) else {
        return true;
    };
    match INGRESS.get(0) {
        Some(ingress) => ingress.accepts(&dst),
        None => true,
    }
}

/// Whether an IP packet of `ip_len` bytes exceeds the MTU of the interface
/// the frame arrived on (`bpf_check_mtu` with ifindex 0 and the L3 length,
/// so VLAN tags do not count, as for the MTU itself). A helper error (none
/// is expected for ifindex 0) counts as "fits": the datagram is redirected.
#[inline(always)]
fn longer_than_mtu(ctx: &XdpContext, ip_len: usize) -> bool {
    let mut mtu_len = ip_len as u32;
    // SAFETY: `ctx.ctx` is the program's context pointer and `mtu_len` a
    // live u32 on the stack, which is what the helper takes.
    let ret = unsafe { bpf_check_mtu(ctx.ctx.cast(), 0, &mut mtu_len, 0, 0) };
    ret == i64::from(BPF_MTU_CHK_RET_FRAG_NEEDED)
}

#[inline(always)]
fn pass(reason: Counter) -> u32 {
    count(reason);
    xdp_action::XDP_PASS
}

/// Bumps `counter` of flow `flow` (a flow id past the map is not counted).
#[inline(always)]
fn count_flow(flow: u32, counter: FlowCounter) {
    let Some(slot) = counter.slot(flow) else {
        return;
    };
    if let Some(slot) = FLOW_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from a successful per-CPU array lookup and
        // is this CPU's slot; XDP programs do not nest on one CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter.index()) {
        // SAFETY: the pointer comes from a successful per-CPU array lookup and
        // is this CPU's slot; XDP programs do not nest on one CPU.
        unsafe { *slot += 1 };
    }
}

/// The frame behind an `XdpContext`: `[data, data_end)` is the first buffer,
/// `len` the whole (multi-buffer) frame.
struct XdpFrame {
    start: usize,
    end: usize,
    len: usize,
}

impl XdpFrame {
    #[inline(always)]
    fn new(ctx: &XdpContext) -> Self {
        // SAFETY: `ctx.ctx` is the program's context pointer, which is what
        // the helper takes.
        let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx.cast()) };
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
            len: len as usize,
        }
    }
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn total_len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let at = self.start + offset;
        // The comparison the verifier needs: packet pointer + N <= data_end.
        if at + N > self.end {
            return None;
        }
        // SAFETY: `[at, at + N)` lies within `[data, data_end)`, checked just
        // above; the read is unaligned-safe.
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path (it cannot call into
    // one), so this is dead code in a loaded program.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
