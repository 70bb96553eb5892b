//! Which flows the XDP datapath can serve, judged flow by flow before
//! anything is loaded (issue 10 item 9: one flow XDP cannot serve no
//! longer sends every flow to the socket engine).
//!
//! Contract: [`judge`] returns, per flow of the plan and in its order,
//! either the flow with every output's egress interface fixed (by its route
//! where none is configured, [`super::nexthops::routed_flow`]) or the
//! [`Refused`] that says why XDP cannot serve it: an output whose route
//! cannot be found, an egress without a MAC address (`lo`, tun, WireGuard)
//! or without an address of the output's family, or a flow past what the
//! program's `FLOWS` map holds on its ingress (first come, in plan order),
//! or a VLAN flow on a NIC that strips the tags before XDP sees them
//! (unless `[engine] vlan_offload = "off"`, which turns that off).
//! [`touched_by`] says which flows a refusal met while starting names:
//! those that take their stream on, or send out of, the interface it
//! names. Pure except for the route lookups.

use std::collections::{HashMap, HashSet};

use fanout_common::{FlowKey, MAX_FLOWS};

use super::ladder::Refused;
use super::nexthops::routed_flow;
use super::program::flow_key;
use super::spec;
use crate::config::VlanOffload;
use crate::plan::{FlowPlan, Interface, Plan};

/// Per flow of `plan`, in order: the flow with its egress interfaces
/// fixed, or why the XDP datapath cannot serve it; see the module
/// documentation.
pub fn judge(plan: &Plan) -> Vec<Result<FlowPlan, Refused>> {
    judge_with(plan, vlan_view)
}

/// What XDP sees of the 802.1Q tags arriving on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanView {
    /// A NIC that keeps the tags in the frame (its VLAN receive offload is
    /// off).
    Visible,
    /// A NIC (driver named) that strips them into metadata: XDP sees the
    /// frame untagged.
    Stripped(String),
    /// A virtual interface (veth, tap, bridge): a tag that travels in the
    /// frame is seen, one its sender handed over as metadata is not.
    Virtual,
}

/// [`judge`] with `view` saying what XDP sees of an ingress interface's
/// tags, asked once per interface with VLAN flows.
pub fn judge_with(
    plan: &Plan,
    view: impl FnMut(&Interface) -> VlanView,
) -> Vec<Result<FlowPlan, Refused>> {
    let mut tables = FlowTables::default();
    let mut views = Views::new(view);
    let keep = plan.engine.vlan_offload == VlanOffload::Keep;
    plan.flows
        .iter()
        .map(|flow| {
            if keep
                && flow.vlan.is_some()
                && let VlanView::Stripped(driver) = views.of(&flow.ingress)
            {
                return Err(Refused::VlanStripped {
                    flow: flow.name.clone(),
                    ifname: flow.ingress.name.clone(),
                    driver: driver.clone(),
                });
            }
            let routed = routed_flow(flow)?;
            // Templates that need no neighbour: an egress without a MAC or
            // without an address of the family is known now.
            for o in &routed.outputs {
                spec::replica_spec(&routed, o, Some([0; 6]))?;
            }
            tables.claim(&routed)?;
            Ok(routed)
        })
        .collect()
}

/// What an operator must know before XDP runs `plan`, `view` as for
/// [`judge_with`]:
/// - an untagged flow on a NIC that strips tags (with `vlan_offload =
///   "keep"`) also takes the group's datagrams of every VLAN, which XDP
///   sees untagged;
/// - VLAN flows on a virtual interface see only tags that travel in the
///   frame, once per interface with its flows.
pub fn vlan_warnings(plan: &Plan, view: impl FnMut(&Interface) -> VlanView) -> Vec<String> {
    let mut views = Views::new(view);
    let keep = plan.engine.vlan_offload == VlanOffload::Keep;
    let mut out = Vec::new();
    // Virtual ingress interfaces with VLAN flows: (interface, flow names).
    let mut virtual_vlan: Vec<(&str, Vec<String>)> = Vec::new();
    for f in &plan.flows {
        match (f.vlan, views.of(&f.ingress)) {
            (None, VlanView::Stripped(driver)) if keep => out.push(format!(
                "flow {:?}: {} is a NIC (driver {driver}) that strips 802.1Q tags before XDP \
                 sees the frame, so this untagged flow also takes {}:{} from every VLAN on it; \
                 set [engine] vlan_offload = \"off\" to match untagged frames only",
                f.name, f.ingress.name, f.group, f.port
            )),
            (Some(_), VlanView::Virtual) => {
                let name = format!("{:?}", f.name);
                match virtual_vlan.iter_mut().find(|(i, _)| *i == f.ingress.name) {
                    Some((_, flows)) => flows.push(name),
                    None => virtual_vlan.push((&f.ingress.name, vec![name])),
                }
            }
            _ => {}
        }
    }
    for (ifname, flows) in virtual_vlan {
        out.push(format!(
            "{ifname} is a virtual interface: XDP sees the 802.1Q tag of VLAN flow(s) {} only \
             when it travels in the frame; a sender that hands it over as metadata (a VLAN \
             device whose lower device offloads tags) hides it from XDP, and its datagrams \
             reach no VLAN flow: have such a sender put the tag in the frame (`ethtool -K \
             LOWER-DEVICE txvlan off`)",
            flows.join(", ")
        ));
    }
    out
}

/// [`VlanView`]s asked once per interface.
struct Views<F> {
    view: F,
    seen: HashMap<u32, VlanView>,
}

impl<F: FnMut(&Interface) -> VlanView> Views<F> {
    fn new(view: F) -> Self {
        Views {
            view,
            seen: HashMap::new(),
        }
    }

    fn of(&mut self, iface: &Interface) -> &VlanView {
        let view = &mut self.view;
        self.seen.entry(iface.index).or_insert_with(|| view(iface))
    }
}

/// What XDP sees of the tags arriving on `iface`: a NIC (a device behind
/// it in sysfs) strips them when its VLAN receive offload is on (read
/// through ethtool netlink; unknown counts as on, the default of every
/// common driver); an interface without a device is [`VlanView::Virtual`]
/// (reading a tag handed over as metadata needs the driver's XDP RX
/// metadata, which the loader cannot use: it loads no device-bound program).
pub fn vlan_view(iface: &Interface) -> VlanView {
    let device = std::path::Path::new("/sys/class/net")
        .join(&iface.name)
        .join("device");
    if !device.exists() {
        return VlanView::Virtual;
    }
    let driver = std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    match crate::ethtool::vlan_rx_offload(&iface.name) {
        Ok(offload) if !offload.any() => VlanView::Visible,
        _ => VlanView::Stripped(driver),
    }
}

/// The `FLOWS` entries taken so far on each ingress interface (by index):
/// the keys [`super::program::flow_entries`] writes, an any-source flow's
/// stream key, a source-specific flow's source key and its stream's
/// marker, shared by the channels of one stream.
#[derive(Debug, Default)]
struct FlowTables {
    keys: HashMap<u32, HashSet<FlowKey>>,
}

impl FlowTables {
    /// Takes `flow`'s entries on its ingress, or refuses it when they do
    /// not all fit (then it takes none).
    fn claim(&mut self, flow: &FlowPlan) -> Result<(), Refused> {
        let keys = self.keys.entry(flow.ingress.index).or_default();
        let stream = flow_key(flow.group, flow.port, flow.vlan)
            .with_outer_vlan(flow.outer_vlan.unwrap_or(0));
        let wanted: Vec<FlowKey> = match flow.source {
            None => vec![stream],
            Some(source) => vec![stream, stream.with_source_ip(source)],
        };
        let new = wanted.iter().filter(|k| !keys.contains(k)).count();
        if keys.len() + new > MAX_FLOWS as usize {
            return Err(Refused::FlowTableFull {
                ifname: flow.ingress.name.clone(),
                flow: flow.name.clone(),
                max: MAX_FLOWS,
            });
        }
        keys.extend(wanted);
        Ok(())
    }
}

/// The flows of `plan` (indices) that `refused`, met while starting the
/// XDP datapath on `plan`, stands in the way of: every flow whose ingress
/// or one of whose egress interfaces it names; `None` when it names no
/// interface (or none of the plan's), so that it stands in the way of all.
pub fn touched_by(plan: &Plan, refused: &Refused) -> Option<Vec<usize>> {
    let ifname = refused.interface()?;
    let touched: Vec<usize> = plan
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.ingress.name == ifname
                || f.outputs
                    .iter()
                    .any(|o| o.interface.as_ref().is_some_and(|i| i.name == ifname))
        })
        .map(|(i, _)| i)
        .collect();
    (!touched.is_empty()).then_some(touched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::plan::Interface;
    use crate::plan::fixtures::{flow, iface};

    fn plan(flows: Vec<FlowPlan>) -> Plan {
        Plan {
            engine: EngineConfig::default(),
            flows,
        }
    }

    fn out0() -> Interface {
        iface("out0", 2, Some([2, 0, 0, 0, 0, 2]))
    }

    #[test]
    fn an_egress_without_a_mac_is_unfit_and_the_others_fit() {
        let lo = iface("lo", 9, None);
        let p = plan(vec![
            flow("tv", [239, 1, 1, 1], None, out0()),
            flow("local", [239, 1, 1, 2], None, lo),
            flow("radio", [239, 1, 1, 3], None, out0()),
        ]);
        let judged = judge(&p);
        assert_eq!(judged[0].as_ref().unwrap(), &p.flows[0]);
        assert_eq!(
            judged[1].as_ref().unwrap_err().to_string(),
            "flow \"local\" output \"o\": egress interface lo has no MAC address"
        );
        assert_eq!(judged[2].as_ref().unwrap(), &p.flows[2]);
    }

    #[test]
    fn an_egress_without_an_address_of_the_family_is_unfit() {
        let mut bare = out0();
        bare.ipv4.clear();
        let p = plan(vec![flow("tv", [239, 1, 1, 1], None, bare)]);
        assert_eq!(
            judge(&p)[0].as_ref().unwrap_err().to_string(),
            "flow \"tv\" output \"o\": egress interface out0 has no IPv4 address"
        );
    }

    #[test]
    fn flows_past_the_flow_table_are_unfit_in_plan_order() {
        // MAX_FLOWS - 1 any-source flows, then a channel (two entries: its
        // stream's marker and its source) that does not fit, then one
        // any-source flow that still does.
        let n = MAX_FLOWS as usize - 1;
        let mut flows: Vec<FlowPlan> = (0..n)
            .map(|i| {
                let g = [239, 2, (i >> 8) as u8, i as u8];
                flow(&format!("f{i}"), g, None, out0())
            })
            .collect();
        flows.push(flow("ssm", [232, 1, 1, 1], Some([10, 1, 1, 1]), out0()));
        flows.push(flow("last", [239, 3, 0, 0], None, out0()));
        flows.push(flow("over", [239, 3, 0, 1], None, out0()));
        let judged = judge(&plan(flows));
        assert!(judged[..n].iter().all(Result::is_ok));
        let why = |i: usize| judged[i].as_ref().unwrap_err().to_string();
        assert_eq!(
            why(n),
            format!(
                "interface in0: flow \"ssm\" does not fit the XDP flow table ({MAX_FLOWS} \
                 entries: one per any-source flow, one per source-specific channel and one \
                 per group and port they share)"
            )
        );
        assert!(judged[n + 1].is_ok(), "{:?}", judged[n + 1]);
        assert!(why(n + 2).contains("flow \"over\""));
    }

    #[test]
    fn channels_of_one_stream_share_its_marker() {
        // Two channels of one group take three entries, not four.
        let mut tables = FlowTables::default();
        let a = flow("a", [232, 1, 1, 1], Some([10, 1, 1, 1]), out0());
        let b = flow("b", [232, 1, 1, 1], Some([10, 1, 1, 2]), out0());
        tables.claim(&a).unwrap();
        tables.claim(&b).unwrap();
        assert_eq!(tables.keys[&1].len(), 3);
    }

    #[test]
    fn vlan_flows_on_a_nic_that_strips_tags_are_unfit_unless_the_offload_goes_off() {
        let mut tagged = flow("tagged", [239, 1, 1, 1], None, out0());
        tagged.vlan = Some(100);
        let untagged = flow("plain", [239, 1, 1, 2], None, out0());
        let mut p = plan(vec![tagged, untagged]);
        let ixgbe = |_: &Interface| VlanView::Stripped("ixgbe".to_owned());
        let mut asked = 0;
        let judged = judge_with(&p, |i| {
            asked += 1;
            ixgbe(i)
        });
        assert_eq!(asked, 1, "asked once per interface, for its VLAN flows");
        assert_eq!(
            judged[0].as_ref().unwrap_err().to_string(),
            "flow \"tagged\": interface in0 is a NIC (driver ixgbe) that strips 802.1Q tags \
             before XDP sees the frame (its VLAN receive offload is on), so XDP cannot tell this \
             flow's VLAN: set [engine] vlan_offload = \"off\" (fanout turns the offload off while \
             it runs), or run `ethtool -K in0 rxvlan off`"
        );
        assert!(judged[1].is_ok());
        let warned = vlan_warnings(&p, ixgbe);
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].starts_with("flow \"plain\": in0 is a NIC (driver ixgbe)"),
            "{warned:?}"
        );
        // A NIC that keeps its tags: no refusal, no warning.
        assert!(
            judge_with(&p, |_| VlanView::Visible)
                .iter()
                .all(Result::is_ok)
        );
        assert!(vlan_warnings(&p, |_| VlanView::Visible).is_empty());
        // The offload turned off: never refused, and not asked for it.
        p.engine.vlan_offload = VlanOffload::Off;
        let never = |_: &Interface| -> VlanView { panic!("not asked when the offload goes off") };
        assert!(judge_with(&p, never).iter().all(Result::is_ok));
        assert!(vlan_warnings(&p, ixgbe).is_empty());
    }

    #[test]
    fn vlan_flows_on_a_virtual_interface_are_warned_about_once() {
        let mut a = flow("a", [239, 1, 1, 1], None, out0());
        a.vlan = Some(100);
        let mut b = flow("b", [239, 1, 1, 2], None, out0());
        b.vlan = Some(200);
        let c = flow("c", [239, 1, 1, 3], None, out0());
        let p = plan(vec![a, b, c]);
        assert!(
            judge_with(&p, |_| VlanView::Virtual)
                .iter()
                .all(Result::is_ok)
        );
        let warned = vlan_warnings(&p, |_| VlanView::Virtual);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].starts_with(
                "in0 is a virtual interface: XDP sees the 802.1Q tag of VLAN flow(s) \"a\", \"b\" \
                 only when it travels in the frame"
            ),
            "{warned:?}"
        );
    }

    #[test]
    fn a_refusal_naming_an_interface_touches_its_flows_only() {
        let out1 = iface("out1", 3, Some([2, 0, 0, 0, 0, 3]));
        let mut other = flow("other", [239, 1, 1, 2], None, out0());
        other.ingress = iface("in1", 4, Some([2, 0, 0, 0, 0, 4]));
        let p = plan(vec![
            flow("a", [239, 1, 1, 1], None, out0()),
            other,
            flow("b", [239, 1, 1, 3], None, out1),
        ]);
        let native = |ifname: &str| Refused::NativeRequired {
            ifname: ifname.to_owned(),
            reason: "test".into(),
        };
        assert_eq!(touched_by(&p, &native("in0")), Some(vec![0, 2]));
        assert_eq!(touched_by(&p, &native("in1")), Some(vec![1]));
        assert_eq!(touched_by(&p, &native("out1")), Some(vec![2]));
        assert_eq!(touched_by(&p, &native("out0")), Some(vec![0, 1]));
        assert_eq!(touched_by(&p, &native("eth9")), None);
        assert_eq!(touched_by(&p, &Refused::NotBuilt), None);
    }
}
