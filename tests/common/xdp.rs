//! The XDP program and AF_XDP sockets driven in-process, in namespaces.
//!
//! Contract: [`Pair`] is the topology of the in-process tests, made of
//! `fanout::lab::Netns` guards (deleted also when a test panics); a
//! [`Bpffs`] is unmounted when dropped; [`xdp_attached`] asks `ip` what the
//! kernel has attached, not the program object; every wait on a ring has a
//! deadline.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fanout::lab::{MTU, Netns, unique_prefix, veth, wait_until};
use fanout::xdp::worker::ring::{Desc, RxPort, Umem};

/// Two namespaces joined by two veth pairs (MTU 9000), with IPv6 off in
/// both, so that nothing but a test's own datagrams crosses the links (no
/// neighbour discovery, no MLD in the program's counters):
///
/// ```text
///  {prefix}-a (the edge host)        {prefix}-b (source and sink)
///  ia 10.77.1.1  <---- veth ---->   ib 10.77.1.2
///  oa 10.77.2.1  <---- veth ---->   ob 10.77.2.2
/// ```
#[derive(Debug)]
pub struct Pair {
    /// The edge host: `ia`, `oa`.
    pub a: Netns,
    /// Source and sink: `ib`, `ob`.
    pub b: Netns,
}

impl Pair {
    /// Address of `ia` (in `a`).
    pub const IA: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    /// Address of `ib` (in `b`).
    pub const IB: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
    /// Address of `oa` (in `a`).
    pub const OA: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
    /// Address of `ob` (in `b`).
    pub const OB: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

    /// Brings the two namespaces up, named after [`unique_prefix`]`(tag)`.
    pub fn up(tag: &str) -> Pair {
        let prefix = unique_prefix(tag);
        let a = Netns::new(&format!("{prefix}-a")).expect("namespace a");
        let b = Netns::new(&format!("{prefix}-b")).expect("namespace b");
        for ns in [&a, &b] {
            for key in ["all", "default"] {
                ns.sysctl(&format!("net/ipv6/conf/{key}/disable_ipv6"), "1")
                    .unwrap();
            }
        }
        for (x, y, xa, ya) in [
            ("ia", "ib", Self::IA, Self::IB),
            ("oa", "ob", Self::OA, Self::OB),
        ] {
            veth(&a, x, &b, y, MTU).unwrap();
            for (ns, dev, addr) in [(&a, x, xa), (&b, y, ya)] {
                ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])
                    .unwrap();
            }
        }
        Pair { a, b }
    }
}

/// Whether an XDP program is attached to `dev` in `ns`.
pub fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    super::link(ns, dev).get("xdp").is_some()
}

/// Waits up to `timeout` until no XDP program is attached to `dev` in
/// `ns`; whether that happened.
pub fn wait_detached(ns: &Netns, dev: &str, timeout: Duration) -> bool {
    wait_until(timeout, || (!xdp_attached(ns, dev)).then_some(())).is_some()
}

/// A private BPF filesystem mounted on a fresh directory; unmounted and the
/// directory removed when dropped.
#[derive(Debug)]
pub struct Bpffs(PathBuf);

impl Bpffs {
    /// `mount -t bpf bpf DIR`, creating `dir` first.
    pub fn mount(dir: PathBuf) -> Bpffs {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t bpf on {}", dir.display());
        Bpffs(dir)
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Puts frames `0..frames` of a UMEM of `frame_size`-byte frames on the
/// fill ring (all of them must fit) and wakes the kernel.
pub fn fill_frames(rx: &mut impl RxPort, frames: u32, frame_size: u32) {
    let addrs: Vec<u64> = (0..frames)
        .map(|f| u64::from(f) * u64::from(frame_size))
        .collect();
    assert_eq!(rx.fill(&addrs), addrs.len(), "fill ring");
    rx.wake();
}

/// Receives one whole packet (a chain of descriptors) within `timeout`.
pub fn receive_packet(rx: &mut impl RxPort, timeout: Duration) -> Vec<Desc> {
    let mut out = [Desc::default(); 32];
    wait_until(timeout, || match rx.receive(&mut out) {
        0 => {
            rx.wake();
            None
        }
        n => Some(out[..n].to_vec()),
    })
    .unwrap_or_else(|| panic!("no packet on the AF_XDP socket within {timeout:?}"))
}

/// The bytes of a received packet: its descriptors' bytes, in order.
pub fn frame_bytes(umem: &impl Umem, chain: &[Desc]) -> Vec<u8> {
    let mut frame = Vec::new();
    for d in chain {
        frame.extend_from_slice(umem.bytes(d.addr, d.len));
    }
    frame
}
