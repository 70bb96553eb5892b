//! From the plan to what a [`super::worker::Worker`] runs: one [`FlowSpec`] per flow,
//! one [`ReplicaSpec`] per output.
//!
//! Contract: pure functions over plan data; they never touch the system. The
//! next hop's MAC address of a unicast output is the caller's (neighbour
//! resolution); without it the output's template is `None` and its replicas
//! are counted as [`crate::stats::DropReason::NextHopUnresolved`]. Multicast outputs
//! use the group's multicast MAC. A replica's source address is the egress
//! interface's first address of the destination's family (for IPv6: a
//! link-local one for a link-local receiver, a global one otherwise, when the
//! interface has one).

use std::net::IpAddr;

use super::worker::{FlowSpec, OutputSpec};
use crate::plan::{FlowPlan, Interface, OutputKind, OutputPlan};
use crate::wire::{ReplicaSpec, ReplicaTemplate, TemplateError, TosPolicy, ethernet};

/// An output the XDP engine cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error(
        "flow {flow:?} output {output:?}: the XDP engine needs an egress interface (set `interface`)"
    )]
    NoEgress { flow: String, output: String },
    #[error("flow {flow:?} output {output:?}: egress interface {interface} has no MAC address")]
    NoMac {
        flow: String,
        output: String,
        interface: String,
    },
    #[error(
        "flow {flow:?} output {output:?}: egress interface {interface} has no {family} address"
    )]
    NoSourceAddress {
        flow: String,
        output: String,
        interface: String,
        family: &'static str,
    },
    #[error("flow {flow:?} output {output:?}: {source}")]
    Template {
        flow: String,
        output: String,
        source: TemplateError,
    },
}

/// The replica headers of `output`, or `None` while its next hop is
/// unknown (`next_hop` is ignored for multicast outputs).
pub fn replica_spec(
    flow: &FlowPlan,
    output: &OutputPlan,
    next_hop: Option<[u8; 6]>,
) -> Result<Option<ReplicaSpec>, SetupError> {
    let names = || (flow.name.clone(), output.name.clone());
    let Some(egress) = &output.interface else {
        let (flow, output) = names();
        return Err(SetupError::NoEgress { flow, output });
    };
    let Some(src_mac) = egress.mac else {
        let (flow, output) = names();
        return Err(SetupError::NoMac {
            flow,
            output,
            interface: egress.name.clone(),
        });
    };
    let dst = output.dest.ip();
    let Some(src) = source_address(egress, dst) else {
        let (flow, output) = names();
        return Err(SetupError::NoSourceAddress {
            flow,
            output,
            interface: egress.name.clone(),
            family: if dst.is_ipv4() { "IPv4" } else { "IPv6" },
        });
    };
    let dst_mac = match output.kind {
        OutputKind::Multicast => ethernet::multicast_mac(dst),
        OutputKind::Unicast => next_hop,
    };
    Ok(dst_mac.map(|dst_mac| ReplicaSpec {
        dst_mac,
        src_mac,
        vlan: output.vlan,
        src,
        dst,
        ttl: output.ttl,
        src_port: output.source_port,
        dst_port: output.dest.port(),
        tos: TosPolicy::default(),
    }))
}

/// The replica template of `output` ([`replica_spec`] made into headers),
/// or `None` while its next hop is unknown.
pub fn output_template(
    flow: &FlowPlan,
    output: &OutputPlan,
    next_hop: Option<[u8; 6]>,
) -> Result<Option<ReplicaTemplate>, SetupError> {
    replica_spec(flow, output, next_hop)?
        .map(ReplicaTemplate::new)
        .transpose()
        .map_err(|source| SetupError::Template {
            flow: flow.name.clone(),
            output: output.name.clone(),
            source,
        })
}

/// The worker's view of `flow`: `port_of` maps an egress interface to the
/// index of its TX port in the worker, `next_hop` gives a unicast output's
/// next-hop MAC when known.
pub fn flow_spec(
    flow: &FlowPlan,
    mut port_of: impl FnMut(&Interface) -> usize,
    mut next_hop: impl FnMut(&OutputPlan) -> Option<[u8; 6]>,
) -> Result<FlowSpec, SetupError> {
    let mut outputs = Vec::with_capacity(flow.outputs.len());
    for output in &flow.outputs {
        let template = output_template(flow, output, next_hop(output))?;
        // replica_spec refused outputs without an interface.
        let egress = output
            .interface
            .as_ref()
            .ok_or_else(|| SetupError::NoEgress {
                flow: flow.name.clone(),
                output: output.name.clone(),
            })?;
        outputs.push(OutputSpec {
            tx: port_of(egress),
            template,
            mtu: egress.mtu,
        });
    }
    Ok(FlowSpec {
        group: flow.group,
        port: flow.port,
        vlan: flow.vlan,
        outer_vlan: flow.outer_vlan,
        source: flow.source,
        // A cap holds for the flow, not per rx queue: the caller gives the
        // workers of an ingress one shared limiter per flow.
        limiter: None,
        health: flow.health,
        outputs,
    })
}

fn source_address(egress: &Interface, dst: IpAddr) -> Option<IpAddr> {
    match dst {
        IpAddr::V4(_) => egress.ipv4.first().map(|&a| a.into()),
        IpAddr::V6(d) => {
            let want_link_local = d.is_unicast_link_local();
            egress
                .ipv6
                .iter()
                .find(|a| a.is_unicast_link_local() == want_link_local)
                .or(egress.ipv6.first())
                .map(|&a| a.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    fn iface(name: &str, index: u32, mac: Option<[u8; 6]>) -> Interface {
        Interface {
            name: name.into(),
            index,
            mtu: 9000,
            mac,
            ipv4: vec![Ipv4Addr::new(10, 0, index as u8, 1)],
            ipv6: vec![
                Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, index as u16),
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, index as u16),
            ],
        }
    }

    fn output(kind: OutputKind, dest: &str, interface: Option<Interface>) -> OutputPlan {
        OutputPlan {
            name: format!("{kind} {dest}"),
            kind,
            dest: dest.parse::<SocketAddr>().unwrap(),
            interface,
            vlan: None,
            source_port: Some(4000),
            ttl: 9,
        }
    }

    fn flow(outputs: Vec<OutputPlan>) -> FlowPlan {
        FlowPlan {
            name: "f".into(),
            ingress: iface("in0", 1, Some([2, 0, 0, 0, 0, 1])),
            group: "239.1.1.1".parse().unwrap(),
            port: 5000,
            vlan: Some(5),
            outer_vlan: None,
            source: Some("10.9.9.9".parse().unwrap()),
            cap: Default::default(),
            health: Default::default(),
            outputs,
        }
    }

    #[test]
    fn specs_from_the_plan() {
        let out = iface("out0", 2, Some([2, 0, 0, 0, 0, 2]));
        let f = flow(vec![
            output(OutputKind::Unicast, "10.0.2.7:6000", Some(out.clone())),
            output(OutputKind::Multicast, "239.5.6.7:7000", Some(out.clone())),
            output(OutputKind::Unicast, "[fe80::7]:6000", Some(out.clone())),
            output(OutputKind::Unicast, "[fd00::7]:6000", Some(out.clone())),
        ]);
        let hop = [2, 0, 0, 0, 0, 7];
        let u = replica_spec(&f, &f.outputs[0], Some(hop)).unwrap().unwrap();
        assert_eq!(
            u,
            ReplicaSpec {
                dst_mac: hop,
                src_mac: [2, 0, 0, 0, 0, 2],
                vlan: None,
                src: "10.0.2.1".parse().unwrap(),
                dst: "10.0.2.7".parse().unwrap(),
                ttl: 9,
                src_port: Some(4000),
                dst_port: 6000,
                tos: TosPolicy::CopyDscp,
            }
        );
        assert_eq!(replica_spec(&f, &f.outputs[0], None), Ok(None));
        let m = replica_spec(&f, &f.outputs[1], None).unwrap().unwrap();
        assert_eq!(m.dst_mac, [0x01, 0x00, 0x5e, 0x05, 0x06, 0x07]);
        let ll = replica_spec(&f, &f.outputs[2], Some(hop)).unwrap().unwrap();
        assert_eq!(ll.src, "fe80::2".parse::<IpAddr>().unwrap());
        let global = replica_spec(&f, &f.outputs[3], Some(hop)).unwrap().unwrap();
        assert_eq!(global.src, "fd00::2".parse::<IpAddr>().unwrap());

        let spec = flow_spec(
            &f,
            |i| i.index as usize - 2,
            |o| (o.kind == OutputKind::Unicast && o.dest.is_ipv4()).then_some(hop),
        )
        .unwrap();
        assert_eq!(
            (spec.group, spec.port, spec.vlan, spec.source),
            (f.group, 5000, Some(5), f.source)
        );
        let present: Vec<bool> = spec.outputs.iter().map(|o| o.template.is_some()).collect();
        assert_eq!(present, [true, true, false, false]);
        assert!(spec.outputs.iter().all(|o| o.tx == 0));
        assert_eq!(spec.outputs[0].template.as_ref().unwrap().spec(), &u);
    }

    #[test]
    fn outputs_the_xdp_engine_cannot_run_are_named() {
        let f = flow(vec![
            output(OutputKind::Unicast, "10.0.2.7:6000", None),
            output(
                OutputKind::Unicast,
                "10.0.2.7:6000",
                Some(iface("tun0", 3, None)),
            ),
        ]);
        assert_eq!(
            replica_spec(&f, &f.outputs[0], None)
                .unwrap_err()
                .to_string(),
            "flow \"f\" output \"unicast 10.0.2.7:6000\": the XDP engine needs an egress \
             interface (set `interface`)"
        );
        assert_eq!(
            replica_spec(&f, &f.outputs[1], None)
                .unwrap_err()
                .to_string(),
            "flow \"f\" output \"unicast 10.0.2.7:6000\": egress interface tun0 has no MAC address"
        );
        let mut bare = iface("out1", 4, Some([2, 0, 0, 0, 0, 4]));
        bare.ipv6.clear();
        let f = flow(vec![output(
            OutputKind::Unicast,
            "[fd00::7]:6000",
            Some(bare),
        )]);
        assert_eq!(
            replica_spec(&f, &f.outputs[0], None),
            Err(SetupError::NoSourceAddress {
                flow: "f".into(),
                output: "unicast [fd00::7]:6000".into(),
                interface: "out1".into(),
                family: "IPv6",
            })
        );
        assert!(flow_spec(&f, |_| 0, |_| None).is_err());
    }
}
