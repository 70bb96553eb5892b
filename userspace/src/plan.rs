//! The resolved plan: what an engine runs.
//!
//! A [`Plan`] is built from a validated [`crate::config::Config`] by resolving
//! every interface name against the running system (index, MTU, MAC and
//! addresses). Engines never look at the configuration file; they consume a
//! plan. A plan is plain data: it holds no sockets and no file descriptors.
//!
//! [`Plan::resolve`] reads the system once (interface index through
//! `if_nametoindex`, MTU and MAC from `/sys/class/net/NAME/`, addresses
//! through `getifaddrs`) and fails, naming the file, line, field and value,
//! when an interface does not exist. It changes nothing on the system.
//! [`Plan::resolve_with`] takes the interface lookup as a parameter, so the
//! mapping is testable without the interfaces. `Display` renders the plan for
//! `fanout check` and the engine's start-up log.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::config::{self, Config, EngineConfig, Located, Location};
pub use crate::config::{Mode, OutputKind};

/// A network interface as found on the running system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    /// `None` for interfaces without a link-layer address (e.g. `lo`, tun).
    pub mac: Option<[u8; 6]>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// Everything an engine needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The engine and its options (`[engine]`, with the environment's
    /// overrides applied).
    pub engine: EngineConfig,
    pub flows: Vec<FlowPlan>,
}

/// Outputs from which an any-source flow without a rate cap is warned
/// about (`fanout check`, `fanout run`): each datagram anyone sends to the
/// group becomes this many replicas.
pub const AMPLIFICATION_WARN_OUTPUTS: usize = 8;

/// One multicast stream taken in on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPlan {
    pub name: String,
    pub ingress: Interface,
    /// The multicast group (IPv4 or IPv6).
    pub group: IpAddr,
    pub port: u16,
    /// 802.1Q VLAN id the stream arrives on, if any (of two tags, the
    /// inner one).
    pub vlan: Option<u16>,
    /// The outer (S-VLAN) tag of a double-tagged stream: `vlan` inside it.
    pub outer_vlan: Option<u16>,
    /// Source-specific: only datagrams from this sender are forwarded.
    pub source: Option<IpAddr>,
    /// Rate caps enforced before replication (the amplification guard).
    pub cap: crate::rate::RateCap,
    /// The stream-health check at ingress ([`crate::health`]).
    pub health: crate::health::HealthMode,
    pub outputs: Vec<OutputPlan>,
}

/// One destination every datagram of a flow is replicated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// Unique within its flow: the configured name, or `unicast <ip:port>` /
    /// `multicast <group:port>`.
    pub name: String,
    pub kind: OutputKind,
    /// Receiver (unicast) or group (multicast), with its UDP port.
    pub dest: SocketAddr,
    /// Egress interface: required for multicast, optional for unicast (the
    /// kernel's route decides when absent).
    pub interface: Option<Interface>,
    /// Replicas leave tagged with this 802.1Q VLAN id on `interface`.
    pub vlan: Option<u16>,
    /// UDP source port of the replicas; `None` lets the engine choose
    /// (the socket engine uses an ephemeral port).
    pub source_port: Option<u16>,
    /// IPv4 TTL or IPv6 hop limit of the replicas.
    pub ttl: u8,
}

impl Plan {
    /// Reads, validates and resolves the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Plan, config::Error> {
        Plan::resolve(&Config::load(path)?)
    }

    /// Resolves every interface of `config` on the running system.
    pub fn resolve(config: &Config) -> Result<Plan, config::Error> {
        let mut system = SystemInterfaces::default();
        Plan::resolve_with(config, |name| system.lookup(name))
    }

    /// Resolves `config` with `lookup`, which returns `Ok(None)` for an
    /// interface that does not exist. Each name is looked up once.
    pub fn resolve_with<F>(config: &Config, mut lookup: F) -> Result<Plan, config::Error>
    where
        F: FnMut(&str) -> io::Result<Option<Interface>>,
    {
        let mut cache: HashMap<String, Interface> = HashMap::new();
        let mut interface = |located: &Located<String>, field: String| {
            if let Some(found) = cache.get(&located.value) {
                return Ok(found.clone());
            }
            let at = Location {
                path: config.path.clone(),
                line: Some(located.line),
                column: None,
            };
            let value = format!("{:?}", located.value);
            match lookup(&located.value) {
                Ok(Some(found)) => {
                    cache.insert(located.value.clone(), found.clone());
                    Ok(found)
                }
                Ok(None) => Err(config::Error::InvalidValue {
                    at,
                    field,
                    value,
                    reason: "no such interface".into(),
                }),
                Err(source) => Err(config::Error::System {
                    at,
                    field,
                    value,
                    what: "cannot query the interface".into(),
                    source,
                }),
            }
        };

        let mut flows = Vec::with_capacity(config.flows.len());
        for (i, flow) in config.flows.iter().enumerate() {
            let ingress = interface(&flow.interface, format!("flow[{i}].interface"))?;
            let mut outputs = Vec::with_capacity(flow.outputs.len());
            for (j, output) in flow.outputs.iter().enumerate() {
                let egress = match &output.interface {
                    Some(name) => {
                        Some(interface(name, format!("flow[{i}].output[{j}].interface"))?)
                    }
                    None => None,
                };
                let mut dest = output.dest;
                // A link-local IPv6 receiver is only reachable through its link.
                if let (SocketAddr::V6(v6), Some(egress)) = (&mut dest, &egress)
                    && v6.ip().is_unicast_link_local()
                {
                    v6.set_scope_id(egress.index);
                }
                outputs.push(OutputPlan {
                    name: output.name.clone(),
                    kind: output.kind,
                    dest,
                    interface: egress,
                    vlan: output.vlan,
                    source_port: output.source_port,
                    ttl: output.ttl,
                });
            }
            flows.push(FlowPlan {
                name: flow.name.clone(),
                ingress,
                group: flow.group,
                port: flow.port,
                vlan: flow.vlan,
                outer_vlan: flow.outer_vlan,
                source: flow.source,
                cap: flow.cap,
                health: flow.health,
                outputs,
            });
        }
        Ok(Plan {
            engine: config.engine.clone(),
            flows,
        })
    }
}

impl Plan {
    /// The first way `next` differs from this plan, said for an operator
    /// (`flow "tv": output "sub-1" added`), or `None` when they are equal.
    pub fn first_difference(&self, next: &Plan) -> Option<String> {
        if self == next {
            return None;
        }
        if self.engine != next.engine {
            return Some("[engine] changed".into());
        }
        for f in &self.flows {
            let Some(n) = next.flows.iter().find(|n| n.name == f.name) else {
                return Some(format!("flow {:?} removed", f.name));
            };
            if n == f {
                continue;
            }
            for o in &f.outputs {
                match n.outputs.iter().find(|m| m.name == o.name) {
                    None => return Some(format!("flow {:?}: output {:?} removed", f.name, o.name)),
                    Some(m) if m != o => {
                        return Some(format!("flow {:?}: output {:?} changed", f.name, o.name));
                    }
                    Some(_) => {}
                }
            }
            if let Some(m) = n
                .outputs
                .iter()
                .find(|m| !f.outputs.iter().any(|o| o.name == m.name))
            {
                return Some(format!("flow {:?}: output {:?} added", f.name, m.name));
            }
            return Some(format!("flow {:?} changed", f.name));
        }
        match next
            .flows
            .iter()
            .find(|n| !self.flows.iter().any(|f| f.name == n.name))
        {
            Some(n) => Some(format!("flow {:?} added", n.name)),
            None => Some("the order of the flows changed".into()),
        }
    }
}

/// What differs between a running plan and the next one, by name: what
/// an engine applies while running ([`crate::engine::Engine::apply`]).
/// A flow or output whose fields change is removed and added again (its
/// old counters stay in the report, marked removed); the order of flows
/// and outputs is not a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// Flows of the running plan that the next one has not (or has
    /// changed), by name.
    pub removed_flows: Vec<String>,
    /// Flows of the next plan that the running one has not (or had
    /// otherwise), in the next plan's order.
    pub added_flows: Vec<FlowPlan>,
    /// Per flow kept (same fields but its outputs): its output changes.
    pub outputs: Vec<OutputsChange>,
}

/// The outputs removed from and added to one flow the change keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputsChange {
    pub flow: String,
    /// By name, in the running plan's order.
    pub removed: Vec<String>,
    /// In the next plan's order.
    pub added: Vec<OutputPlan>,
}

impl PlanChange {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.removed_flows.is_empty() && self.added_flows.is_empty() && self.outputs.is_empty()
    }

    /// One line per part of the change, for the log and `fanout ctl`:
    /// `flow "tv": output "sub-1" added (unicast 10.0.0.2:6000)`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for name in &self.removed_flows {
            lines.push(format!("flow {name:?} removed"));
        }
        for f in &self.added_flows {
            lines.push(format!(
                "flow {:?} added ({} on {}, {} output(s))",
                f.name,
                SocketAddr::new(f.group, f.port),
                f.ingress.name,
                f.outputs.len()
            ));
        }
        for c in &self.outputs {
            for o in &c.removed {
                lines.push(format!("flow {:?}: output {o:?} removed", c.flow));
            }
            for o in &c.added {
                lines.push(format!(
                    "flow {:?}: output {:?} added ({} {})",
                    c.flow, o.name, o.kind, o.dest
                ));
            }
        }
        lines
    }
}

impl FlowPlan {
    /// Whether `other` is this flow with other outputs at most.
    fn same_but_outputs(&self, other: &FlowPlan) -> bool {
        let FlowPlan {
            name,
            ingress,
            group,
            port,
            vlan,
            outer_vlan,
            source,
            cap,
            health,
            outputs: _,
        } = self;
        *name == other.name
            && *ingress == other.ingress
            && *group == other.group
            && *port == other.port
            && *vlan == other.vlan
            && *outer_vlan == other.outer_vlan
            && *source == other.source
            && *cap == other.cap
            && *health == other.health
    }
}

impl Plan {
    /// What applying `next` to this running plan changes ([`PlanChange`]);
    /// `Err` (what, for an operator) when `[engine]` changed, which no
    /// engine applies while running.
    pub fn change_to(&self, next: &Plan) -> Result<PlanChange, String> {
        if self.engine != next.engine {
            return Err("[engine] changed".into());
        }
        let mut change = PlanChange::default();
        for f in &self.flows {
            match next.flows.iter().find(|n| n.name == f.name) {
                Some(n) if f.same_but_outputs(n) => {
                    let removed: Vec<String> = f
                        .outputs
                        .iter()
                        .filter(|o| !n.outputs.contains(o))
                        .map(|o| o.name.clone())
                        .collect();
                    let added: Vec<OutputPlan> = n
                        .outputs
                        .iter()
                        .filter(|o| !f.outputs.contains(o))
                        .cloned()
                        .collect();
                    if !removed.is_empty() || !added.is_empty() {
                        change.outputs.push(OutputsChange {
                            flow: f.name.clone(),
                            removed,
                            added,
                        });
                    }
                }
                _ => change.removed_flows.push(f.name.clone()),
            }
        }
        for n in &next.flows {
            let kept = self
                .flows
                .iter()
                .any(|f| f.name == n.name && f.same_but_outputs(n));
            if !kept {
                change.added_flows.push(n.clone());
            }
        }
        Ok(change)
    }
}

/// Looks `name` up on the running system (index, MTU, MAC, addresses);
/// `Ok(None)` when there is no such interface.
pub fn lookup_interface(name: &str) -> io::Result<Option<Interface>> {
    SystemInterfaces::default().lookup(name)
}

/// IPv4 and IPv6 addresses of one interface.
type Addresses = (Vec<Ipv4Addr>, Vec<Ipv6Addr>);

/// Interface lookup on the running system; `getifaddrs` is called once.
#[derive(Debug, Default)]
struct SystemInterfaces {
    /// Addresses of every interface, by name (filled on first use).
    addresses: Option<HashMap<String, Addresses>>,
}

impl SystemInterfaces {
    fn lookup(&mut self, name: &str) -> io::Result<Option<Interface>> {
        let index = match nix::net::if_::if_nametoindex(name) {
            Ok(index) => index,
            Err(nix::errno::Errno::ENODEV | nix::errno::Errno::ENXIO) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        let sys = Path::new("/sys/class/net").join(name);
        let mtu_text = std::fs::read_to_string(sys.join("mtu"))?;
        let mtu = mtu_text.trim().parse::<u32>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}/mtu: not a number: {:?}", sys.display(), mtu_text.trim()),
            )
        })?;
        // Interfaces without a link-layer address (tun) have an empty file;
        // lo has all zeroes. Both mean "no MAC".
        let mac = match std::fs::read_to_string(sys.join("address")) {
            Ok(text) => parse_mac(text.trim()).filter(|mac| *mac != [0; 6]),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if self.addresses.is_none() {
            let mut all: HashMap<String, Addresses> = HashMap::new();
            for ifa in nix::ifaddrs::getifaddrs()? {
                let Some(addr) = ifa.address else { continue };
                let entry = all.entry(ifa.interface_name).or_default();
                if let Some(v4) = addr.as_sockaddr_in() {
                    entry.0.push(v4.ip());
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    entry.1.push(v6.ip());
                }
            }
            self.addresses = Some(all);
        }
        let (ipv4, ipv6) = self
            .addresses
            .as_ref()
            .and_then(|all| all.get(name))
            .cloned()
            .unwrap_or_default();
        Ok(Some(Interface {
            name: name.to_owned(),
            index,
            mtu,
            mac,
            ipv4,
            ipv6,
        }))
    }
}

/// `aa:bb:cc:dd:ee:ff` as in `/sys/class/net/NAME/address` and `ip -j`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `name (index 3, mtu 9000, mac 02:00:00:00:00:01, 10.0.0.1, fe80::1)`.
impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (index {}, mtu {}", self.name, self.index, self.mtu)?;
        match self.mac {
            Some(m) => write!(
                f,
                ", mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )?,
            None => write!(f, ", no mac")?,
        }
        for ip in &self.ipv4 {
            write!(f, ", {ip}")?;
        }
        for ip in &self.ipv6 {
            write!(f, ", {ip}")?;
        }
        write!(f, ")")
    }
}

impl Plan {
    /// What an operator should know before running this plan, one line
    /// each (`fanout check` prints them, `fanout run` logs them): an output
    /// whose egress MTU is below its flow's ingress MTU cannot carry the
    /// flow's largest datagrams. The XDP engine counts each such replica
    /// `message_too_big` on that output (it never hands the kernel a frame
    /// the egress would drop); the socket engine's kernel fragments it.
    /// Outputs routed at start (no `interface`) are judged by the engine.
    ///
    /// An any-source flow with [`AMPLIFICATION_WARN_OUTPUTS`] outputs or
    /// more and no rate cap: anyone who can send to its group on the
    /// ingress makes every datagram that many replicas.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for flow in &self.flows {
            if flow.source.is_none()
                && flow.cap.is_none()
                && flow.outputs.len() >= AMPLIFICATION_WARN_OUTPUTS
            {
                out.push(format!(
                    "flow {:?}: any sender on {} can reach {} and each of its datagrams \
                     becomes {} replicas, with no rate cap: set max_pps or max_mbps (or a \
                     source) to bound what the flow can amplify",
                    flow.name,
                    flow.ingress.name,
                    SocketAddr::new(flow.group, flow.port),
                    flow.outputs.len(),
                ));
            }
            let headers = match flow.group {
                IpAddr::V4(_) => 20 + 8,
                IpAddr::V6(_) => 40 + 8,
            };
            for output in &flow.outputs {
                let Some(egress) = &output.interface else {
                    continue;
                };
                if egress.mtu >= flow.ingress.mtu {
                    continue;
                }
                out.push(format!(
                    "flow {:?} output {:?}: egress {} has MTU {} but the flow arrives on {} \
                     with MTU {}: a datagram of more than {} payload bytes does not fit it \
                     (XDP: not sent, counted message_too_big; socket engine: fragmented by \
                     the kernel)",
                    flow.name,
                    output.name,
                    egress.name,
                    egress.mtu,
                    flow.ingress.name,
                    flow.ingress.mtu,
                    egress.mtu.saturating_sub(headers),
                ));
            }
        }
        out
    }
}

/// A readable, multi-line rendering (used by `fanout check`).
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.engine)?;
        for flow in &self.flows {
            let group = SocketAddr::new(flow.group, flow.port);
            writeln!(f, "flow {:?}: {group}", flow.name)?;
            writeln!(f, "  ingress: {}", flow.ingress)?;
            match (flow.outer_vlan, flow.vlan) {
                (Some(outer), Some(vlan)) => {
                    writeln!(f, "  vlan:    {vlan} inside outer VLAN {outer} (QinQ)")?;
                }
                (_, Some(vlan)) => writeln!(f, "  vlan:    {vlan}")?,
                _ => writeln!(f, "  vlan:    none (untagged)")?,
            }
            match flow.source {
                Some(source) => writeln!(f, "  source:  {source} (source-specific)")?,
                None => writeln!(f, "  source:  any")?,
            }
            writeln!(f, "  cap:     {}", flow.cap)?;
            writeln!(f, "  health:  {}", flow.health.name())?;
            writeln!(f, "  outputs: {}", flow.outputs.len())?;
            for output in &flow.outputs {
                write!(f, "  - {} {}", output.kind, output.dest)?;
                if output.name != format!("{} {}", output.kind, output.dest) {
                    write!(f, " {:?}", output.name)?;
                }
                writeln!(f)?;
                match &output.interface {
                    Some(iface) => writeln!(f, "      egress:      {iface}")?,
                    None => writeln!(f, "      egress:      by route")?,
                }
                if let Some(vlan) = output.vlan {
                    writeln!(f, "      vlan:        {vlan} (replicas leave tagged)")?;
                }
                match output.source_port {
                    Some(port) => writeln!(f, "      source port: {port}")?,
                    None => writeln!(f, "      source port: auto")?,
                }
                writeln!(f, "      ttl:         {}", output.ttl)?;
            }
        }
        Ok(())
    }
}

/// Plans for in-memory tests of what consumes them.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::{FlowPlan, Interface, OutputKind, OutputPlan};

    /// Interface `name` with `index`, MTU 9000, address `10.0.0.{index}`.
    pub fn iface(name: &str, index: u32, mac: Option<[u8; 6]>) -> Interface {
        Interface {
            name: name.to_owned(),
            index,
            mtu: 9000,
            mac,
            ipv4: vec![Ipv4Addr::new(10, 0, 0, index as u8)],
            ipv6: vec![],
        }
    }

    /// Flow `name` of `group`:5000 on `in0` (index 1), from `source` if
    /// any, with one unicast output `o` to 10.9.9.9:6000 leaving by `egress`.
    pub fn flow(
        name: &str,
        group: [u8; 4],
        source: Option<[u8; 4]>,
        egress: Interface,
    ) -> FlowPlan {
        FlowPlan {
            name: name.to_owned(),
            ingress: iface("in0", 1, Some([2, 0, 0, 0, 0, 1])),
            group: IpAddr::V4(group.into()),
            port: 5000,
            vlan: None,
            outer_vlan: None,
            source: source.map(|s| IpAddr::V4(s.into())),
            cap: crate::rate::RateCap::default(),
            health: crate::health::HealthMode::default(),
            outputs: vec![OutputPlan {
                name: "o".to_owned(),
                kind: OutputKind::Unicast,
                dest: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 6000),
                interface: Some(egress),
                vlan: None,
                source_port: None,
                ttl: 64,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[engine]
mode = "socket"
batch_size = 8

[[flow]]
name = "f"
interface = "in0"
group = "ff3e::1"
port = 5000
vlan = 7
source = "2001:db8::9"

  [[flow.output]]
  unicast = "[fe80::2]:6000"
  interface = "out0"
  source_port = 4000

  [[flow.output]]
  name = "m"
  multicast = "[ff3e::2]:7000"
  interface = "in0"
  ttl = 3

  [[flow.output]]
  unicast = "[2001:db8::3]:6000"
"#;

    fn config() -> Config {
        Config::parse(TEXT, Path::new("/etc/fanout.toml")).unwrap()
    }

    fn fake(name: &str, index: u32) -> Interface {
        Interface {
            name: name.to_owned(),
            index,
            mtu: 9000,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            ipv4: vec![Ipv4Addr::new(10, 0, 0, index as u8)],
            ipv6: vec![Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, index as u16)],
        }
    }

    #[test]
    fn resolve_maps_every_field_and_looks_each_name_up_once() {
        let mut asked = Vec::new();
        let plan = Plan::resolve_with(&config(), |name| {
            asked.push(name.to_owned());
            Ok(match name {
                "in0" => Some(fake("in0", 4)),
                "out0" => Some(fake("out0", 5)),
                _ => None,
            })
        })
        .unwrap();
        assert_eq!(asked, ["in0", "out0"]);
        assert_eq!(
            (plan.engine.mode, plan.engine.batch_size),
            (Mode::Socket, 8)
        );
        let [flow] = &plan.flows[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(flow.name, "f");
        assert_eq!(flow.ingress, fake("in0", 4));
        assert_eq!(flow.group, "ff3e::1".parse::<IpAddr>().unwrap());
        assert_eq!((flow.port, flow.vlan), (5000, Some(7)));
        assert_eq!(flow.source, Some("2001:db8::9".parse().unwrap()));
        let [u, m, r] = &flow.outputs[..] else {
            panic!("{flow:?}")
        };
        assert_eq!(u.name, "unicast [fe80::2]:6000");
        assert_eq!(u.kind, OutputKind::Unicast);
        // The link-local receiver gets the egress interface as its scope.
        assert_eq!(u.dest, "[fe80::2%5]:6000".parse::<SocketAddr>().unwrap());
        assert_eq!(u.interface, Some(fake("out0", 5)));
        assert_eq!((u.source_port, u.ttl), (Some(4000), 64));
        assert_eq!(m.name, "m");
        assert_eq!(m.kind, OutputKind::Multicast);
        assert_eq!(m.dest, "[ff3e::2]:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(m.interface, Some(fake("in0", 4)));
        assert_eq!((m.source_port, m.ttl), (None, 3));
        assert_eq!(r.dest, "[2001:db8::3]:6000".parse::<SocketAddr>().unwrap());
        assert_eq!((r.interface.clone(), r.ttl), (None, 64));
    }

    #[test]
    fn unknown_interface_names_file_line_field_and_value() {
        let e = Plan::resolve_with(
            &config(),
            |name| Ok((name == "in0").then(|| fake("in0", 4))),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "error: /etc/fanout.toml:16: flow[0].output[0].interface = \"out0\": no such interface"
        );
        let e = Plan::resolve_with(&config(), |_| Ok(None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error: /etc/fanout.toml:8: flow[0].interface = \"in0\": no such interface"
        );
    }

    #[test]
    fn system_failure_is_exit_code_1() {
        let e = Plan::resolve_with(&config(), |_| {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "error: /etc/fanout.toml:8: flow[0].interface = \"in0\": cannot query the interface: \
             Permission denied (os error 13)"
        );
    }

    #[test]
    fn resolve_on_this_host_finds_lo_and_refuses_a_missing_interface() {
        let text = "[[flow]]\nname = \"f\"\ninterface = \"lo\"\ngroup = \"239.1.1.1\"\nport = 1\n\
                    [[flow.output]]\nunicast = \"127.0.0.1:2\"\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let plan = Plan::resolve(&config).unwrap();
        let lo = &plan.flows[0].ingress;
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.index, nix::net::if_::if_nametoindex("lo").unwrap());
        let mtu: u32 = std::fs::read_to_string("/sys/class/net/lo/mtu")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(lo.mtu, mtu);
        assert_eq!(lo.mac, None);
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");

        let missing = text.replace("\"lo\"", "\"fo-missing0\"");
        let config = Config::parse(&missing, Path::new("t.toml")).unwrap();
        assert_eq!(
            Plan::resolve(&config).unwrap_err().to_string(),
            "error: t.toml:3: flow[0].interface = \"fo-missing0\": no such interface"
        );
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:00:0a:ff:Fe:01"),
            Some([2, 0, 10, 255, 254, 1])
        );
        assert_eq!(parse_mac(""), None);
        assert_eq!(parse_mac("02:00:0a:ff:fe"), None);
        assert_eq!(parse_mac("02:00:0a:ff:fe:01:02"), None);
        assert_eq!(parse_mac("2:00:0a:ff:fe:01"), None);
        assert_eq!(parse_mac("02:00:0a:ff:fe:zz"), None);
    }

    /// An any-source flow with eight outputs and no cap is warned about;
    /// a cap, a source or one output fewer silences it.
    #[test]
    fn uncapped_any_source_amplifiers_are_warned_about() {
        let text = |outputs: usize, extra: &str| {
            let mut t = format!(
                "[[flow]]\nname = \"tv\"\ninterface = \"in0\"\ngroup = \"239.1.1.1\"\nport = 5000\n{extra}\n"
            );
            for i in 0..outputs {
                t += &format!(
                    "  [[flow.output]]\n  unicast = \"10.0.0.{}:6000\"\n",
                    i + 10
                );
            }
            t
        };
        let warnings = |outputs, extra: &str| {
            let config = Config::parse(&text(outputs, extra), Path::new("t.toml")).unwrap();
            Plan::resolve_with(&config, |name| Ok(Some(fake(name, 4))))
                .unwrap()
                .warnings()
        };
        assert_eq!(
            warnings(AMPLIFICATION_WARN_OUTPUTS, ""),
            [
                "flow \"tv\": any sender on in0 can reach 239.1.1.1:5000 and each of its \
              datagrams becomes 8 replicas, with no rate cap: set max_pps or max_mbps (or a \
              source) to bound what the flow can amplify"
            ]
        );
        assert!(warnings(AMPLIFICATION_WARN_OUTPUTS - 1, "").is_empty());
        assert!(warnings(20, "max_pps = 1000").is_empty());
        assert!(warnings(20, "max_mbps = 50").is_empty());
        assert!(warnings(20, "source = \"10.9.9.9\"").is_empty());
    }

    #[test]
    fn display_is_readable() {
        let plan = Plan::resolve_with(&config(), |name| {
            Ok(Some(fake(name, if name == "in0" { 4 } else { 5 })))
        })
        .unwrap();
        assert_eq!(
            plan.to_string(),
            "engine: mode socket, batch size 8\n  \
             xdp_attach:   auto\n  \
             xdp_object:   embedded\n  \
             vlan_offload: keep\n  \
             xdp_pin_dir:  /sys/fs/bpf/fanout\n  \
             metrics:      off\n  \
             control:      /run/fanout/fanout.sock (root only)\n  \
             inline_max:   86 bytes\n  \
             busy_poll:    off (need_wakeup)\n  \
             tx_budget:    the whole TX ring\n\
             flow \"f\": [ff3e::1]:5000\n  \
             ingress: in0 (index 4, mtu 9000, mac 02:00:00:00:00:04, 10.0.0.4, fe80::4)\n  \
             vlan:    7\n  \
             source:  2001:db8::9 (source-specific)\n  \
             cap:     none\n  \
             health:  auto\n  \
             outputs: 3\n  \
             - unicast [fe80::2%5]:6000 \"unicast [fe80::2]:6000\"\n      \
             egress:      out0 (index 5, mtu 9000, mac 02:00:00:00:00:05, 10.0.0.5, fe80::5)\n      \
             source port: 4000\n      \
             ttl:         64\n  \
             - multicast [ff3e::2]:7000 \"m\"\n      \
             egress:      in0 (index 4, mtu 9000, mac 02:00:00:00:00:04, 10.0.0.4, fe80::4)\n      \
             source port: auto\n      \
             ttl:         3\n  \
             - unicast [2001:db8::3]:6000\n      \
             egress:      by route\n      \
             source port: auto\n      \
             ttl:         64\n"
        );
    }

    /// What `Engine::apply` reports for a plan it cannot apply: the first
    /// difference, named for an operator; none for an equal plan.
    #[test]
    fn first_difference_names_what_changed() {
        let plan = Plan::resolve_with(&config(), |name| {
            Ok(Some(fake(name, if name == "in0" { 4 } else { 5 })))
        })
        .unwrap();
        assert_eq!(plan.first_difference(&plan.clone()), None);
        let changed = |edit: &dyn Fn(&mut Plan)| {
            let mut next = plan.clone();
            edit(&mut next);
            plan.first_difference(&next)
        };
        let say = |s: &str| Some(s.to_owned());
        assert_eq!(
            changed(&|p| p.engine.batch_size = 9),
            say("[engine] changed")
        );
        assert_eq!(
            changed(&|p| p.flows[0].outputs[1].ttl = 4),
            say("flow \"f\": output \"m\" changed")
        );
        assert_eq!(
            changed(&|p| {
                p.flows[0].outputs.remove(1);
            }),
            say("flow \"f\": output \"m\" removed")
        );
        assert_eq!(
            changed(&|p| {
                let mut o = p.flows[0].outputs[1].clone();
                o.name = "n".into();
                p.flows[0].outputs.push(o);
            }),
            say("flow \"f\": output \"n\" added")
        );
        assert_eq!(
            changed(&|p| p.flows[0].port = 5001),
            say("flow \"f\" changed")
        );
        assert_eq!(
            changed(&|p| p.flows[0].name = "g".into()),
            say("flow \"f\" removed")
        );
        assert_eq!(
            changed(&|p| {
                let mut f = p.flows[0].clone();
                f.name = "g".into();
                p.flows.push(f);
            }),
            say("flow \"g\" added")
        );
    }

    /// What a live change applies: outputs added and removed by name, a
    /// changed output or flow replaced whole, `[engine]` refused.
    #[test]
    fn change_to_lists_what_an_engine_applies() {
        let plan = Plan::resolve_with(&config(), |name| {
            Ok(Some(fake(name, if name == "in0" { 4 } else { 5 })))
        })
        .unwrap();
        let change = |edit: &dyn Fn(&mut Plan)| {
            let mut next = plan.clone();
            edit(&mut next);
            plan.change_to(&next)
        };
        assert_eq!(change(&|_| {}), Ok(PlanChange::default()));
        assert!(change(&|_| {}).unwrap().is_empty());
        assert_eq!(
            change(&|p| p.engine.batch_size = 9),
            Err("[engine] changed".into())
        );
        // The order is not a change.
        assert_eq!(
            change(&|p| p.flows[0].outputs.reverse()),
            Ok(PlanChange::default())
        );

        let ttl = change(&|p| {
            p.flows[0].outputs[1].ttl = 4;
            p.flows[0].outputs.remove(0);
        })
        .unwrap();
        let mut m = plan.flows[0].outputs[1].clone();
        m.ttl = 4;
        assert_eq!(
            ttl,
            PlanChange {
                outputs: vec![OutputsChange {
                    flow: "f".into(),
                    removed: vec!["unicast [fe80::2]:6000".into(), "m".into()],
                    added: vec![m],
                }],
                ..PlanChange::default()
            }
        );
        assert_eq!(
            ttl.describe(),
            [
                "flow \"f\": output \"unicast [fe80::2]:6000\" removed",
                "flow \"f\": output \"m\" removed",
                "flow \"f\": output \"m\" added (multicast [ff3e::2]:7000)",
            ]
        );

        let port = change(&|p| p.flows[0].port = 5001).unwrap();
        assert_eq!(port.removed_flows, ["f"]);
        assert_eq!(port.added_flows.len(), 1);
        assert_eq!(port.added_flows[0].port, 5001);
        assert!(port.outputs.is_empty());
        assert_eq!(
            port.describe(),
            [
                "flow \"f\" removed",
                "flow \"f\" added ([ff3e::1]:5001 on in0, 3 output(s))"
            ]
        );

        let renamed = change(&|p| p.flows[0].name = "g".into()).unwrap();
        assert_eq!(renamed.removed_flows, ["f"]);
        assert_eq!(renamed.added_flows[0].name, "g");
    }
}
