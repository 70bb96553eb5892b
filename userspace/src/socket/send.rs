//! One batch to one output: `sendmmsg` on the output's connected socket,
//! as UDP GSO trains where the batch has equal-size runs and the output
//! accepts them (a refusal degrades that output once, loudly, and its
//! datagrams go one by one), and every replica counted: `sent`, or one drop
//! reason from its errno. Never waits: `EAGAIN` drops the rest of the batch
//! for that output only.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};

use log::warn;
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, sendmmsg};

use super::batch;
use super::open::OutputSocket;
use crate::stats::{DropReason, OutputCounters};

/// The `sendmmsg` headers of one worker, one set per shape of control
/// message (the kernel refuses a control buffer with unused space, so each
/// set has room for exactly what it carries): plain, UDP GSO, and each with
/// a TTL (hop limit) for the datagrams whose received TTL caps the output's.
pub(super) struct TxHeaders {
    plain: MultiHeaders<()>,
    plain_ttl: MultiHeaders<()>,
    gso: MultiHeaders<()>,
    gso_ttl: MultiHeaders<()>,
}

impl TxHeaders {
    pub(super) fn new(batch: usize) -> Self {
        TxHeaders {
            plain: MultiHeaders::preallocate(batch, None),
            plain_ttl: MultiHeaders::preallocate(batch, Some(nix::cmsg_space!(libc::c_int))),
            gso: MultiHeaders::preallocate(batch, Some(nix::cmsg_space!(u16))),
            gso_ttl: MultiHeaders::preallocate(batch, Some(nix::cmsg_space!(u16, libc::c_int))),
        }
    }

    fn pick(&mut self, gso: bool, ttl: bool) -> &mut MultiHeaders<()> {
        match (gso, ttl) {
            (false, false) => &mut self.plain,
            (false, true) => &mut self.plain_ttl,
            (true, false) => &mut self.gso,
            (true, true) => &mut self.gso_ttl,
        }
    }
}

/// The send-side scratch of one worker, borrowed for one batch.
pub(super) struct Tx<'w> {
    pub(super) hdrs: &'w mut TxHeaders,
    pub(super) no_addrs: &'w [Option<()>],
    pub(super) outcome: &'w mut Vec<Option<Errno>>,
}

/// The TTL (hop limit) a replica is sent with when it is not the output's
/// own: the received one less this hop, where that is lower (a router's
/// rule: `min(configured, received - 1)`).
fn ttl_cap(out: &OutputSocket, ttl_left: u8) -> Option<libc::c_int> {
    (ttl_left < out.ttl).then_some(libc::c_int::from(ttl_left))
}

/// What one `sendmmsg` carries besides the data.
#[derive(Debug, Clone, Copy)]
struct Cmsgs {
    gso: Option<u16>,
    ttl: Option<libc::c_int>,
    ipv4: bool,
}

impl Tx<'_> {
    /// Sends one batch to one output and accounts for every replica; the
    /// batch's datagrams arrived with `ttl_left` hops left (received TTL
    /// less one), which caps the output's TTL.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_batch(
        &mut self,
        out: &mut OutputSocket,
        counters: &mut OutputCounters,
        msgs: &[batch::Msg],
        lens: &[usize],
        msg_iovs: &[&[IoSlice<'_>]],
        singles: &[&[IoSlice<'_>]],
        ttl_left: u8,
    ) {
        let fd = out.sock.as_raw_fd();
        let (ttl, ipv4) = (ttl_cap(out, ttl_left), out.ipv4);
        let cmsgs = |gso| Cmsgs { gso, ttl, ipv4 };
        let plain = cmsgs(None);
        let mut i = 0;
        while i < msgs.len() {
            let gso_key =
                |m: &batch::Msg| (m.count > 1 && m.seg <= out.gso_max_seg).then_some(m.seg);
            let key = gso_key(&msgs[i]);
            let mut j = i + 1;
            while j < msgs.len() && gso_key(&msgs[j]) == key {
                j += 1;
            }
            match key {
                None => {
                    let dg = msgs[i].first..msgs[j - 1].datagrams().end;
                    self.send_plain(fd, counters, lens, dg, singles, plain);
                }
                Some(seg) => {
                    let seg16 = u16::try_from(seg).unwrap_or(u16::MAX);
                    sendmmsg_all(
                        fd,
                        self.hdrs,
                        &msg_iovs[i..j],
                        cmsgs(Some(seg16)),
                        self.no_addrs,
                        self.outcome,
                    );
                    for k in 0..self.outcome.len() {
                        let m = msgs[i + k];
                        match self.outcome[k] {
                            None => {
                                counters.sent += m.count as u64;
                                counters.sent_bytes += m.bytes as u64;
                            }
                            Some(
                                e @ (Errno::EIO
                                | Errno::EINVAL
                                | Errno::EMSGSIZE
                                | Errno::EOPNOTSUPP),
                            ) => {
                                // GSO refused for this output: degrade once, loudly,
                                // and send these datagrams one by one.
                                out.gso_max_seg = if e == Errno::EMSGSIZE { m.seg - 1 } else { 0 };
                                if !out.gso_logged {
                                    warn!(
                                        "socket engine: output {:?}: UDP GSO send of {}-byte segments refused ({e}); \
                                         {}",
                                        out.name,
                                        m.seg,
                                        if e == Errno::EMSGSIZE {
                                            "sending datagrams of that size and larger one by one"
                                        } else {
                                            "sending one datagram per message from now on"
                                        }
                                    );
                                    out.gso_logged = true;
                                }
                                let mut saved = std::mem::take(self.outcome);
                                self.send_plain(fd, counters, lens, m.datagrams(), singles, plain);
                                std::mem::swap(self.outcome, &mut saved);
                            }
                            Some(e) => {
                                counters.drop(DropReason::from_errno(e as i32), m.count as u64)
                            }
                        }
                    }
                }
            }
            i = j;
        }
    }

    /// Sends datagrams `dg` one per message.
    fn send_plain(
        &mut self,
        fd: RawFd,
        counters: &mut OutputCounters,
        lens: &[usize],
        dg: std::ops::Range<usize>,
        singles: &[&[IoSlice<'_>]],
        cmsgs: Cmsgs,
    ) {
        sendmmsg_all(
            fd,
            self.hdrs,
            &singles[dg.clone()],
            cmsgs,
            self.no_addrs,
            self.outcome,
        );
        let (mut sent, mut bytes) = (0u64, 0u64);
        for (k, r) in self.outcome.iter().enumerate() {
            match r {
                None => {
                    sent += 1;
                    bytes += lens[dg.start + k] as u64;
                }
                Some(e) => counters.drop(DropReason::from_errno(*e as i32), 1),
            }
        }
        counters.sent += sent;
        counters.sent_bytes += bytes;
    }
}

/// Sends every message of `iovs` on the connected socket `fd` with
/// `sendmmsg(MSG_DONTWAIT)`, in chunks of the header capacity, recording one
/// outcome per message in `outcome` (`None` = sent). A failed message is
/// skipped and the rest retried; on EAGAIN the remaining messages are
/// recorded as would-block without further calls: the loop never waits.
fn sendmmsg_all(
    fd: RawFd,
    hdrs: &mut TxHeaders,
    iovs: &[&[IoSlice<'_>]],
    cmsgs: Cmsgs,
    no_addrs: &[Option<()>],
    outcome: &mut Vec<Option<Errno>>,
) {
    outcome.clear();
    let hdrs = hdrs.pick(cmsgs.gso.is_some(), cmsgs.ttl.is_some());
    let seg = cmsgs.gso.unwrap_or(0);
    let ttl = cmsgs.ttl.unwrap_or(0);
    let ttl_msg = if cmsgs.ipv4 {
        ControlMessage::Ipv4Ttl(&ttl)
    } else {
        ControlMessage::Ipv6HopLimit(&ttl)
    };
    let gso_msg = ControlMessage::UdpGsoSegments(&seg);
    let all = [gso_msg, ttl_msg];
    let control: &[ControlMessage<'_>] = match (cmsgs.gso.is_some(), cmsgs.ttl.is_some()) {
        (false, false) => &[],
        (false, true) => &all[1..],
        (true, false) => &all[..1],
        (true, true) => &all,
    };
    let cap = no_addrs.len().max(1);
    let mut idx = 0;
    while idx < iovs.len() {
        let end = (idx + cap).min(iovs.len());
        let chunk = &iovs[idx..end];
        let addrs = &no_addrs[..end - idx];
        let result = sendmmsg(
            fd,
            hdrs,
            chunk.iter(),
            addrs,
            control,
            MsgFlags::MSG_DONTWAIT,
        )
        .map(|r| r.count());
        match result {
            Ok(0) => {
                outcome.push(Some(Errno::UnknownErrno));
                idx += 1;
            }
            Ok(n) => {
                outcome.extend(std::iter::repeat_n(None, n));
                idx += n;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                outcome.extend(std::iter::repeat_n(Some(Errno::EAGAIN), iovs.len() - idx));
                idx = iovs.len();
            }
            Err(e) => {
                outcome.push(Some(e));
                idx += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::GSO_MAX_BYTES;
    use super::super::open::{Capabilities, open_output};
    use super::*;
    use crate::plan::{FlowPlan, Interface, OutputKind, OutputPlan};
    use crate::stats::FlowCounters;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    fn lo() -> Interface {
        Interface {
            name: "lo".into(),
            index: nix::net::if_::if_nametoindex("lo").unwrap(),
            mtu: 65536,
            mac: None,
            ipv4: vec![Ipv4Addr::LOCALHOST],
            ipv6: vec![],
        }
    }

    /// Unprivileged: the send path over loopback, two outputs, one of which
    /// has no receiver (ECONNREFUSED after the first ICMP): the other output
    /// gets every datagram, and both balance.
    #[test]
    fn send_path_accounts_every_replica() {
        let rx_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx_a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let out = |name: &str, dest| OutputPlan {
            name: name.into(),
            kind: OutputKind::Unicast,
            dest,
            interface: None,
            vlan: None,
            source_port: None,
            ttl: 8,
        };
        let flow = FlowPlan {
            name: "f".into(),
            ingress: lo(),
            group: "239.1.1.1".parse().unwrap(),
            port: 1,
            vlan: None,
            outer_vlan: None,
            source: None,
            cap: Default::default(),
            health: Default::default(),
            outputs: vec![out("a", rx_a.local_addr().unwrap()), out("gone", gone_addr)],
        };
        let mut f = FlowCounters::with_outputs(flow.outputs.len());
        let caps = Capabilities::probe();
        let mut outs: Vec<OutputSocket> = flow
            .outputs
            .iter()
            .map(|o| open_output(&flow, o, caps).unwrap())
            .collect();

        let mut hdrs = TxHeaders::new(4);
        let no_addrs = vec![None; 4];
        let mut outcome = Vec::new();
        let mut expected = Vec::new();
        for round in 0..5u8 {
            // a batch of 6 equal datagrams plus a short tail, then singles
            let payloads: Vec<Vec<u8>> = (0..7u8)
                .map(|i| vec![round * 10 + i; if i == 6 { 30 } else { 100 }])
                .collect();
            let lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
            let mut msgs = Vec::new();
            batch::plan_messages(&lens, 4, GSO_MAX_BYTES, &mut msgs);
            let iov: Vec<IoSlice<'_>> = payloads.iter().map(|p| IoSlice::new(p)).collect();
            let msg_iovs: Vec<&[IoSlice<'_>]> = msgs.iter().map(|m| &iov[m.datagrams()]).collect();
            let singles: Vec<&[IoSlice<'_>]> = iov.chunks(1).collect();
            f.received += 7;
            f.received_bytes += lens.iter().sum::<usize>() as u64;
            let mut tx = Tx {
                hdrs: &mut hdrs,
                no_addrs: &no_addrs,
                outcome: &mut outcome,
            };
            for (o, c) in outs.iter_mut().zip(&mut f.outputs) {
                tx.send_batch(o, c, &msgs, &lens, &msg_iovs, &singles, u8::MAX);
            }
            expected.extend(payloads);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut buf = [0u8; 2048];
        for (i, want) in expected.iter().enumerate() {
            let n = rx_a
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
            assert_eq!(&buf[..n], &want[..], "datagram {i}");
        }
        assert!(f.balanced(), "{f:?}");
        assert_eq!(f.outputs[0].sent, 35);
        assert_eq!(f.outputs[0].sent_bytes, 5 * 630);
        assert_eq!(f.outputs[0].dropped_total(), 0);
        assert!(f.outputs[1].dropped(DropReason::Unreachable) > 0, "{f:?}");
    }
}
