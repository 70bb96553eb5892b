//! The sockets of one flow: its receive socket (the joined socket of
//! [`crate::membership::join`] with a large buffer, a timeout and GRO) and
//! one connected, non-blocking socket per output (TTL, egress interface,
//! source port, no multicast loop), the kernel's capabilities they use
//! (probed once), and why the engine cannot start ([`Error`]: each names
//! the flow, the output, the destination and the call).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use log::{info, warn};
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::engine::STOP_POLL;
use crate::membership::{self, v6_scope};
use crate::plan::{FlowPlan, Interface, OutputKind, OutputPlan};

/// Why the engine could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Join(#[from] membership::Error),
    #[error(
        "flow {flow:?}, output {output:?}: its replicas leave tagged with VLAN {vlan} on \
         {parent}, and the socket engine sends tagged only through a VLAN sub-interface, but \
         {parent} has none with id {vlan}; create it with `ip link add link {parent} name \
         {parent}.{vlan} type vlan id {vlan} && ip link set {parent}.{vlan} up` (the XDP \
         engine tags the replicas itself)"
    )]
    NoVlanOutput {
        flow: String,
        output: String,
        parent: String,
        vlan: u16,
    },
    #[error("flow {flow:?}, output {output:?} ({dest}): {op}: {source}")]
    Output {
        flow: String,
        output: String,
        dest: SocketAddr,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "flow {flow:?}: the kernel's reverse-path filter (rp_filter = {rp_filter} for {iface}) \
         drops the stream from {sender} before any socket sees it: the route to {sender} {route}; \
         route {sender} via {iface}, or loosen the filter to 2 (net.ipv4.conf.all.rp_filter and \
         net.ipv4.conf.{iface}.rp_filter: the kernel takes the larger); the XDP engine is not \
         affected (its program takes the stream before the filter)"
    )]
    ReversePath {
        flow: String,
        iface: String,
        sender: IpAddr,
        rp_filter: u32,
        route: String,
    },
    #[error("flow {flow:?}: starting its worker thread: {source}")]
    Spawn {
        flow: String,
        #[source]
        source: io::Error,
    },
}

/// Kernel capabilities probed once per engine.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// `UDP_SEGMENT` is known to the kernel.
    pub gso: bool,
}

impl Capabilities {
    /// Probes on a throw-away socket and logs the outcome once.
    pub fn probe() -> Self {
        let gso = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
            nix::sys::socket::getsockopt(&s, sockopt::UdpGsoSegment).map_err(io::Error::from)
        });
        match gso {
            Ok(_) => {
                info!(
                    "socket engine: UDP GSO available: equal-size datagrams leave as one send per output"
                );
                Capabilities { gso: true }
            }
            Err(e) => {
                warn!(
                    "socket engine: UDP GSO not available ({e}); sending one datagram per message"
                );
                Capabilities { gso: false }
            }
        }
    }
}

/// Receive buffer requested per flow (forced when privileged).
const RCVBUF: usize = 8 << 20;
/// Send buffer requested per output (forced when privileged).
const SNDBUF: usize = 4 << 20;

/// The receive side of a flow, ready to run.
#[derive(Debug)]
pub(super) struct ReceiveSocket {
    pub(super) sock: Socket,
    pub(super) iface: String,
    pub(super) gro: bool,
}

/// Opens `flow`'s joined socket ([`membership::join`]) and makes it a
/// receive socket: a large receive buffer, a timeout of [`STOP_POLL`] so
/// the worker sees the stop flag, and UDP GRO where the kernel accepts it.
pub(super) fn open_receive(flow: &FlowPlan) -> Result<ReceiveSocket, Error> {
    let membership::Joined { sock, iface, .. } = membership::join(flow)?;
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = sock.set_recv_buffer_size(RCVBUF);
    }
    sock.set_read_timeout(Some(STOP_POLL))
        .map_err(|source| membership::Error::Receive {
            flow: flow.name.clone(),
            iface: iface.clone(),
            op: "SO_RCVTIMEO",
            source,
        })?;
    check_reverse_path(flow, &iface)?;
    // The received TTL (hop limit) of every datagram, for a router's rule:
    // none left, no replica; otherwise at most the received one less one.
    let recv_ttl = if flow.group.is_ipv4() {
        setsockopt(&sock, sockopt::Ipv4RecvTtl, &true).map_err(|e| (e, "IP_RECVTTL"))
    } else {
        setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true).map_err(|e| (e, "IPV6_RECVHOPLIMIT"))
    };
    recv_ttl.map_err(|(e, op)| membership::Error::Receive {
        flow: flow.name.clone(),
        iface: iface.clone(),
        op,
        source: e.into(),
    })?;
    let gro = setsockopt(&sock, sockopt::UdpGroSegment, &true).is_ok();
    Ok(ReceiveSocket { sock, iface, gro })
}

/// Refuses a source-specific IPv4 flow whose stream the kernel's
/// reverse-path filter would drop on `iface` before the socket engine sees
/// it (a silent total loss otherwise). The filter in force is the larger of
/// `net.ipv4.conf.all.rp_filter` and the interface's own; any-source flows
/// name no sender to check, and IPv6 has no such filter.
fn check_reverse_path(flow: &FlowPlan, iface: &str) -> Result<(), Error> {
    let Some(source @ IpAddr::V4(_)) = flow.source else {
        return Ok(());
    };
    let read = |conf: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"))
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let rp_filter = read("all").max(read(iface));
    if rp_filter == 0 {
        return Ok(());
    }
    let route = match crate::neigh::route_dev(source) {
        Ok(dev) => Some(dev),
        Err(crate::neigh::Error::NoRoute { .. } | crate::neigh::Error::Failed { .. }) => None,
        Err(e) => {
            // Cannot tell: the engine starts, and says why it did not check.
            warn!("flow {:?}: reverse-path check skipped: {e}", flow.name);
            return Ok(());
        }
    };
    match reverse_path_drops(rp_filter, route.as_deref(), iface) {
        None => Ok(()),
        Some(route) => Err(Error::ReversePath {
            flow: flow.name.clone(),
            iface: iface.to_owned(),
            sender: source,
            rp_filter,
            route,
        }),
    }
}

/// Whether a reverse-path filter of `rp_filter` on `iface` drops a
/// sender whose route leaves by `route_dev` (`None`: no route): what the
/// route does, when it does. Strict (1) wants the route on `iface`, loose
/// (2) any route.
fn reverse_path_drops(rp_filter: u32, route_dev: Option<&str>, iface: &str) -> Option<String> {
    match (rp_filter, route_dev) {
        (0, _) => None,
        (_, None) => Some("is missing".to_owned()),
        (1, Some(dev)) if dev != iface => Some(format!("leaves by {dev}, not {iface}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reverse_path_filter_is_read_as_the_kernel_does() {
        assert_eq!(reverse_path_drops(0, None, "in0"), None);
        assert_eq!(reverse_path_drops(0, Some("out0"), "in0"), None);
        assert_eq!(reverse_path_drops(1, Some("in0"), "in0"), None);
        assert_eq!(
            reverse_path_drops(1, Some("out0"), "in0").as_deref(),
            Some("leaves by out0, not in0")
        );
        assert_eq!(
            reverse_path_drops(1, None, "in0").as_deref(),
            Some("is missing")
        );
        assert_eq!(reverse_path_drops(2, Some("out0"), "in0"), None);
        assert_eq!(
            reverse_path_drops(2, None, "in0").as_deref(),
            Some("is missing")
        );
    }
}

/// One output's socket and its send-side state.
#[derive(Debug)]
pub(super) struct OutputSocket {
    pub(super) sock: Socket,
    pub(super) name: String,
    /// Largest GSO segment this output may use; 0 when GSO is off for it.
    pub(super) gso_max_seg: usize,
    pub(super) gso_logged: bool,
    /// The configured TTL (hop limit), set on the socket; a datagram
    /// received with fewer hops left is sent with those instead.
    pub(super) ttl: u8,
    pub(super) ipv4: bool,
}

/// An [`Error::Output`] of `o` for `op`, from the `io::Error`.
fn output_err(
    flow: &FlowPlan,
    o: &OutputPlan,
    op: &'static str,
) -> impl FnOnce(io::Error) -> Error + use<> {
    let (flow, output, dest) = (flow.name.clone(), o.name.clone(), o.dest);
    move |source| Error::Output {
        flow,
        output,
        dest,
        op,
        source,
    }
}

/// The VLAN sub-interface of `parent` with id `vlan`, which a tagged
/// output's socket sends through.
fn vlan_egress(
    flow: &FlowPlan,
    o: &OutputPlan,
    parent: &Interface,
    vlan: u16,
) -> Result<Interface, Error> {
    let io_err = |op| output_err(flow, o, op);
    let path = std::path::Path::new(membership::vlan::PROC_VLAN_CONFIG);
    let missing = || Error::NoVlanOutput {
        flow: flow.name.clone(),
        output: o.name.clone(),
        parent: parent.name.clone(),
        vlan,
    };
    let name = membership::vlan::find_vlan_subinterface(path, &parent.name, vlan)
        .map_err(io_err("reading /proc/net/vlan/config"))?
        .ok_or_else(missing)?;
    crate::plan::lookup_interface(&name)
        .map_err(io_err("looking up the VLAN sub-interface"))?
        .ok_or_else(missing)
}

pub(super) fn open_output(
    flow: &FlowPlan,
    o: &OutputPlan,
    caps: Capabilities,
) -> Result<OutputSocket, Error> {
    let err = |op| output_err(flow, o, op);
    let domain = if o.dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // A tagged output leaves by the VLAN sub-interface of its interface.
    let egress = match (o.vlan, &o.interface) {
        (Some(vlan), Some(parent)) => Some(vlan_egress(flow, o, parent, vlan)?),
        _ => o.interface.clone(),
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    if let Some(iface) = &egress {
        sock.bind_device(Some(iface.name.as_bytes()))
            .map_err(err("SO_BINDTODEVICE"))?;
    }
    match o.dest.ip() {
        IpAddr::V4(_) => {
            sock.set_ttl_v4(u32::from(o.ttl)).map_err(err("IP_TTL"))?;
            if o.kind == OutputKind::Multicast || o.dest.ip().is_multicast() {
                sock.set_multicast_ttl_v4(u32::from(o.ttl))
                    .map_err(err("IP_MULTICAST_TTL"))?;
                sock.set_multicast_loop_v4(false)
                    .map_err(err("IP_MULTICAST_LOOP=0"))?;
                // SO_BINDTODEVICE above already fixes the egress interface;
                // IP_MULTICAST_IF is said too where the interface has an address.
                if let Some(addr) = egress.as_ref().and_then(|i| i.ipv4.first()) {
                    sock.set_multicast_if_v4(addr)
                        .map_err(err("IP_MULTICAST_IF"))?;
                }
            }
        }
        IpAddr::V6(_) => {
            sock.set_only_v6(true).map_err(err("IPV6_V6ONLY"))?;
            sock.set_unicast_hops_v6(u32::from(o.ttl))
                .map_err(err("IPV6_UNICAST_HOPS"))?;
            if o.kind == OutputKind::Multicast || o.dest.ip().is_multicast() {
                sock.set_multicast_hops_v6(u32::from(o.ttl))
                    .map_err(err("IPV6_MULTICAST_HOPS"))?;
                sock.set_multicast_loop_v6(false)
                    .map_err(err("IPV6_MULTICAST_LOOP=0"))?;
                if let Some(iface) = &egress {
                    sock.set_multicast_if_v6(iface.index)
                        .map_err(err("IPV6_MULTICAST_IF"))?;
                }
            }
        }
    }
    if let Some(port) = o.source_port {
        // Several outputs may share a source port; each is connected to its
        // own destination, so the kernel keeps them apart.
        sock.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
        let any: IpAddr = if o.dest.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        sock.bind(&SockAddr::from(SocketAddr::new(any, port)))
            .map_err(err("bind to the source port"))?;
    }
    if setsockopt(&sock, sockopt::SndBufForce, &SNDBUF).is_err() {
        let _ = sock.set_send_buffer_size(SNDBUF);
    }
    let dest = match o.dest {
        SocketAddr::V6(d) => {
            let index = egress.as_ref().map_or(0, |i| i.index);
            SocketAddr::V6(SocketAddrV6::new(
                *d.ip(),
                d.port(),
                0,
                v6_scope(d.ip(), index),
            ))
        }
        d => d,
    };
    sock.connect(&SockAddr::from(dest))
        .map_err(err("connect"))?;
    Ok(OutputSocket {
        sock,
        name: o.name.clone(),
        gso_max_seg: if caps.gso { usize::MAX } else { 0 },
        gso_logged: false,
        ttl: o.ttl,
        ipv4: o.dest.is_ipv4(),
    })
}
