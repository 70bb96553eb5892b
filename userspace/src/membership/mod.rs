//! Group membership through kernel sockets, shared by both engines.
//!
//! Contract: [`join`] opens a UDP socket bound to a flow's `group:port` on
//! its ingress interface (or on the VLAN sub-interface that carries its
//! tag, found by [`vlan`]), turns `IP(V6)_MULTICAST_ALL` off so that only
//! the exact group on that interface reaches it, and joins the group:
//! any-source (`IP_ADD_MEMBERSHIP` / `IPV6_JOIN_GROUP`) or source-specific
//! when a source is configured (`MCAST_JOIN_SOURCE_GROUP`, IGMPv3 / MLDv2).
//! The membership lasts as long as the returned socket: switches and routers
//! keep forwarding the stream meanwhile (architecture.md decision 7). The socket
//! engine receives the stream on that socket; the XDP engine holds it and
//! never reads it (its program redirects first). Every error names the flow,
//! the interface and the call. Nothing here sends or receives.

mod sys;
pub mod vlan;

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;
use std::path::Path;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::plan::FlowPlan;

/// Why a flow's group could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("flow {flow:?}: {op} on interface {iface}: {source}")]
    Receive {
        flow: String,
        iface: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "flow {flow:?}: the stream arrives tagged with VLAN {vlan} on {parent}, and the socket engine \
         receives VLAN traffic only through a VLAN sub-interface, but {parent} has none with id {vlan}; \
         create it with `ip link add link {parent} name {parent}.{vlan} type vlan id {vlan} && \
         ip link set {parent}.{vlan} up`"
    )]
    NoVlanInterface {
        flow: String,
        parent: String,
        vlan: u16,
    },
    #[error(
        "flow {flow:?}: the stream arrives double-tagged (VLAN {vlan} inside outer VLAN {outer}) \
         on {parent}, and the socket engine receives it only through nested VLAN \
         sub-interfaces, but {parent} has no {parent}.{outer}.{vlan}; create them with `ip link \
         add link {parent} name {parent}.{outer} type vlan proto 802.1ad id {outer} && ip link \
         add link {parent}.{outer} name {parent}.{outer}.{vlan} type vlan id {vlan} && ip link \
         set {parent}.{outer} up && ip link set {parent}.{outer}.{vlan} up`"
    )]
    NoQinqInterface {
        flow: String,
        parent: String,
        outer: u16,
        vlan: u16,
    },
    #[error("flow {flow:?}: reading {path}: {source}")]
    VlanTable {
        flow: String,
        path: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A flow's joined socket and the interface it was joined on.
#[derive(Debug)]
pub struct Joined {
    /// Bound to `group:port`, joined; the membership lasts as long as it.
    pub sock: Socket,
    /// The ingress interface, or its VLAN sub-interface.
    pub iface: String,
    /// That interface's index.
    pub ifindex: u32,
}

/// The interface a flow is received on: the ingress itself, its VLAN
/// sub-interface, or for a double-tagged flow the sub-interface of the
/// inner tag on the sub-interface of the outer one. Returns (name, index).
pub fn receive_interface(flow: &FlowPlan) -> Result<(String, u32), Error> {
    let Some(vid) = flow.vlan else {
        return Ok((flow.ingress.name.clone(), flow.ingress.index));
    };
    let sub = |parent: &str, vid: u16| {
        vlan::find_vlan_subinterface(Path::new(vlan::PROC_VLAN_CONFIG), parent, vid).map_err(
            |source| Error::VlanTable {
                flow: flow.name.clone(),
                path: vlan::PROC_VLAN_CONFIG,
                source,
            },
        )
    };
    let parent = &flow.ingress.name;
    let found = match flow.outer_vlan {
        None => sub(parent, vid)?.ok_or_else(|| Error::NoVlanInterface {
            flow: flow.name.clone(),
            parent: parent.clone(),
            vlan: vid,
        })?,
        Some(outer) => {
            let missing = || Error::NoQinqInterface {
                flow: flow.name.clone(),
                parent: parent.clone(),
                outer,
                vlan: vid,
            };
            let outer_if = sub(parent, outer)?.ok_or_else(missing)?;
            sub(&outer_if, vid)?.ok_or_else(missing)?
        }
    };
    let index = nix::net::if_::if_nametoindex(found.as_str()).map_err(|e| Error::Receive {
        flow: flow.name.clone(),
        iface: found.clone(),
        op: "looking up the VLAN sub-interface index",
        source: e.into(),
    })?;
    Ok((found, index))
}

/// IPv6 multicast scopes below site-local, and link-local unicast, need the
/// interface as scope id.
pub fn v6_scope(ip: &Ipv6Addr, ifindex: u32) -> u32 {
    let link_scoped_mcast = ip.is_multicast() && (ip.segments()[0] & 0x000f) <= 2;
    let link_local_unicast = (ip.segments()[0] & 0xffc0) == 0xfe80;
    if link_scoped_mcast || link_local_unicast {
        ifindex
    } else {
        0
    }
}

/// Opens, binds and joins `flow`'s socket; see the module documentation.
pub fn join(flow: &FlowPlan) -> Result<Joined, Error> {
    let (iface, ifindex) = receive_interface(flow)?;
    let err = |op: &'static str| {
        let flow = flow.name.clone();
        let iface = iface.clone();
        move |source: io::Error| Error::Receive {
            flow,
            iface,
            op,
            source,
        }
    };
    let domain = if flow.group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    sock.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
    if flow.group.is_ipv6() {
        sock.set_only_v6(true).map_err(err("IPV6_V6ONLY"))?;
    }
    sock.bind_device(Some(iface.as_bytes()))
        .map_err(err("SO_BINDTODEVICE"))?;
    let bind_addr = match flow.group {
        IpAddr::V4(g) => SocketAddr::new(IpAddr::V4(g), flow.port),
        IpAddr::V6(g) => SocketAddr::V6(SocketAddrV6::new(g, flow.port, 0, v6_scope(&g, ifindex))),
    };
    sock.bind(&SockAddr::from(bind_addr))
        .map_err(err("bind to group:port"))?;
    if flow.group.is_ipv4() {
        sock.set_multicast_all_v4(false)
            .map_err(err("IP_MULTICAST_ALL=0"))?;
    } else {
        sock.set_multicast_all_v6(false)
            .map_err(err("IPV6_MULTICAST_ALL=0"))?;
    }
    match (flow.group, flow.source) {
        (IpAddr::V4(g), None) => sock
            .join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))
            .map_err(err("IP_ADD_MEMBERSHIP"))?,
        (IpAddr::V6(g), None) => sock
            .join_multicast_v6(&g, ifindex)
            .map_err(err("IPV6_JOIN_GROUP"))?,
        (group, Some(source)) => sys::join_source_group(sock.as_fd(), ifindex, group, source)
            .map_err(err("MCAST_JOIN_SOURCE_GROUP"))?,
    }
    Ok(Joined {
        sock,
        iface,
        ifindex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Interface;
    use std::net::Ipv4Addr;

    #[test]
    fn scope_ids_only_for_link_scopes() {
        assert_eq!(v6_scope(&"ff02::1".parse().unwrap(), 7), 7);
        assert_eq!(v6_scope(&"ff12::1:2".parse().unwrap(), 7), 7);
        assert_eq!(v6_scope(&"ff05::1".parse().unwrap(), 7), 0);
        assert_eq!(v6_scope(&"ff3e::8000:1".parse().unwrap(), 7), 0);
        assert_eq!(v6_scope(&"fe80::1".parse().unwrap(), 7), 7);
        assert_eq!(v6_scope(&"fd00::1".parse().unwrap(), 7), 0);
    }

    #[test]
    fn missing_vlan_subinterface_is_refused_with_the_command() {
        let flow = FlowPlan {
            name: "tagged".into(),
            ingress: Interface {
                name: "fo-none0".into(),
                index: 1,
                mtu: 65536,
                mac: None,
                ipv4: vec![Ipv4Addr::LOCALHOST],
                ipv6: vec![],
            },
            group: "239.1.1.1".parse().unwrap(),
            port: 5000,
            vlan: Some(4000),
            outer_vlan: None,
            source: None,
            cap: Default::default(),
            health: Default::default(),
            outputs: vec![],
        };
        let err = receive_interface(&flow).unwrap_err().to_string();
        assert!(err.contains("VLAN 4000"), "{err}");
        assert!(
            err.contains("ip link add link fo-none0 name fo-none0.4000 type vlan id 4000"),
            "{err}"
        );
    }
}
