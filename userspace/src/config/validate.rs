//! The rules of the configuration, field by field: types, ranges, address
//! families, multicast or unicast, duplicates. Pure functions over the
//! spanned tree; each error names the field path, the line and the value.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;

use ::toml::de::{DeTable, DeValue};
use serde_spanned::Spanned;

use super::options::{BATCH_SIZE_RANGE, EngineConfig, KNOBS, Kind, Mode, Value};
use super::toml::{Doc, Str, Table};
use crate::rate::RateCap;

use super::types::{
    Config, DEFAULT_MULTICAST_TTL, DEFAULT_UNICAST_TTL, Error, FlowConfig, Located,
    MAX_INTERFACE_NAME, MAX_NAME, OutputConfig, OutputKind,
};

const PORT_RANGE: RangeInclusive<i64> = 1..=65535;
const VLAN_RANGE: RangeInclusive<i64> = 1..=4094;
const TTL_RANGE: RangeInclusive<i64> = 1..=255;
/// Datagrams per second a cap may name (a 400 Gbit/s link carries about
/// 600 million minimum-size frames per second).
const MAX_PPS_RANGE: RangeInclusive<i64> = 1..=1_000_000_000;
/// Megabits per second a cap may name: more than 0, at most 1 Tbit/s.
const MAX_MBPS: f64 = 1_000_000.0;

const ROOT_KEYS: &[&str] = &["engine", "flow"];
const ENGINE_KEYS: &[&str] = &[
    "mode",
    "batch_size",
    "xdp_attach",
    "xdp_object",
    "vlan_offload",
    "xdp_pin_dir",
    "metrics_listen",
    "control",
    "control_group",
    "inline_max",
    "busy_poll_us",
    "busy_poll_budget",
    "tx_budget",
];
const FLOW_KEYS: &[&str] = &[
    "name",
    "interface",
    "group",
    "port",
    "vlan",
    "outer_vlan",
    "source",
    "max_pps",
    "max_mbps",
    "health",
    "output",
];
const OUTPUT_KEYS: &[&str] = &[
    "unicast",
    "multicast",
    "interface",
    "vlan",
    "source_port",
    "ttl",
    "name",
];

impl Config {
    /// Reads and validates the configuration file at `path`, then applies
    /// the environment's overrides of `[engine]` ([`KNOBS`]): the one place
    /// where the process environment is read for the engine.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_text(&text, path)
    }

    /// [`Config::parse`], then the environment's overrides of `[engine]`:
    /// what [`Config::load`] makes of the file's text.
    pub fn from_text(text: &str, path: &Path) -> Result<Config, Error> {
        let mut config = Config::parse(text, path)?;
        config
            .engine
            .apply_env(|var| std::env::var(var).ok())
            .map_err(|(knob, value, reason)| Error::Environment {
                var: knob.env,
                value,
                field: knob.field,
                reason,
            })?;
        Ok(config)
    }

    /// Validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let doc = Doc::new(path, text);
        let root = DeTable::parse(text).map_err(|e| doc.syntax(&e))?;
        let root_value = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
        let root = Table::new(&doc, String::new(), &root_value, ROOT_KEYS)?;

        let engine = match root.get("engine") {
            None => EngineConfig::default(),
            Some(value) => parse_engine(&Table::new(&doc, "engine".into(), value, ENGINE_KEYS)?)?,
        };

        let flow_tables = root.array_of_tables("flow", "[[flow]]")?;
        let mut flows = Vec::with_capacity(flow_tables.len());
        for (i, value) in flow_tables.iter().enumerate() {
            let table = Table::new(&doc, format!("flow[{i}]"), value, FLOW_KEYS)?;
            flows.push(parse_flow(&table)?);
        }
        check_flows(&doc, &flows)?;

        Ok(Config {
            path: path.to_path_buf(),
            engine,
            flows,
        })
    }
}

fn parse_engine(table: &Table<'_, '_>) -> Result<EngineConfig, Error> {
    let mut engine = EngineConfig::default();
    if let Some(mode) = table.string("mode")? {
        engine.mode = match mode.value {
            "auto" => Mode::Auto,
            "xdp" => Mode::Xdp,
            "socket" => Mode::Socket,
            _ => return Err(table.invalid("mode", &mode.span, "expected auto, xdp or socket")),
        };
    }
    if let Some(batch) = table.integer("batch_size", BATCH_SIZE_RANGE)? {
        engine.batch_size = batch.value as usize;
    }
    for knob in KNOBS {
        let set = match &knob.kind {
            Kind::Text => table
                .string(knob.field)?
                .map(|s| (engine.set(knob.field, Value::Text(s.value)), s.span)),
            Kind::Int(range) => table
                .integer(knob.field, range.clone())?
                .map(|n| (engine.set(knob.field, Value::Int(n.value)), n.span)),
        };
        if let Some((Err(reason), span)) = set {
            return Err(table.invalid(knob.field, &span, reason));
        }
    }
    Ok(engine)
}

fn parse_flow(table: &Table<'_, '_>) -> Result<FlowConfig, Error> {
    let name = table.required("name", table.string("name")?)?;
    check_name(table, "name", &name)?;
    let interface = table.required("interface", table.string("interface")?)?;
    check_interface_name(table, "interface", &interface)?;

    let group = table.required("group", table.string("group")?)?;
    let group_ip: IpAddr = parse_ip(table, "group", &group)?;
    if let Err(reason) = check_group(group_ip) {
        return Err(table.invalid("group", &group.span, reason));
    }
    let port = table.required("port", table.integer("port", PORT_RANGE)?)?;
    let vlan = table.integer("vlan", VLAN_RANGE)?;
    let outer_vlan = table.integer("outer_vlan", VLAN_RANGE)?;
    if let (Some(outer), None) = (&outer_vlan, &vlan) {
        return Err(table.invalid(
            "outer_vlan",
            &outer.span,
            "needs `vlan` too: outer_vlan is the outer (S-VLAN) tag of a double-tagged stream, \
             vlan its inner (C-VLAN) tag",
        ));
    }

    let source = match table.string("source")? {
        None => None,
        Some(source) => {
            let ip = parse_ip(table, "source", &source)?;
            if let Err(reason) = check_unicast(ip, group_ip, "source") {
                return Err(table.invalid("source", &source.span, reason));
            }
            Some(ip)
        }
    };

    let max_pps = table.integer("max_pps", MAX_PPS_RANGE)?;
    let max_mbps = table.number("max_mbps", 0.0, MAX_MBPS, true)?;
    let cap = RateCap {
        max_pps: max_pps.map(|n| n.value as u64),
        // At least one bit per second: 0.0000001 is more than zero.
        max_bps: max_mbps.map(|m| ((m * 1e6).round() as u64).max(1)),
    };

    let health = match table.string("health")? {
        None => crate::health::HealthMode::default(),
        Some(h) => crate::health::HealthMode::parse(h.value).ok_or_else(|| {
            table.invalid(
                "health",
                &h.span,
                format!("expected {}", crate::health::HealthMode::NAMES),
            )
        })?,
    };

    let mut flow = FlowConfig {
        name: name.value.to_owned(),
        interface: Located {
            value: interface.value.to_owned(),
            line: table.doc.line(&interface.span),
        },
        group: group_ip,
        port: port.value as u16,
        vlan: vlan.map(|v| v.value as u16),
        outer_vlan: outer_vlan.map(|v| v.value as u16),
        source,
        cap,
        health,
        outputs: Vec::new(),
        line: table.line(),
    };

    let output_tables = table.array_of_tables("output", "[[flow.output]]")?;
    // Names and destinations already used in this flow, with their index.
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut dests: HashMap<(SocketAddr, Option<String>), usize> = HashMap::new();
    for (j, value) in output_tables.iter().enumerate() {
        let out = Table::new(
            table.doc,
            format!("{}.output[{j}]", table.path),
            value,
            OUTPUT_KEYS,
        )?;
        let output = parse_output(&out, &flow)?;

        let key = match output.kind {
            // The same receiver twice is a duplicate whatever the interface.
            OutputKind::Unicast => (output.dest, None),
            // A group may be re-emitted on several interfaces (and VLANs).
            OutputKind::Multicast => (
                output.dest,
                output
                    .interface
                    .as_ref()
                    .map(|i| format!("{}.{}", i.value, output.vlan.unwrap_or(0))),
            ),
        };
        let dest_field = match output.kind {
            OutputKind::Unicast => "unicast",
            OutputKind::Multicast => "multicast",
        };
        if let Some(&first) = dests.get(&key) {
            let span = out.get(dest_field).map(|v| v.span()).unwrap_or_default();
            return Err(out.invalid(
                dest_field,
                &span,
                format!(
                    "duplicate output: the same destination as {}.output[{first}] (line {})",
                    table.path, flow.outputs[first].line
                ),
            ));
        }
        if let Some(&first) = names.get(&output.name) {
            let (field, span) = match out.get("name") {
                Some(v) => ("name", v.span()),
                None => (
                    dest_field,
                    out.get(dest_field).map(|v| v.span()).unwrap_or_default(),
                ),
            };
            return Err(out.invalid(
                field,
                &span,
                format!(
                    "duplicate output name {:?}: already used by {}.output[{first}] (line {})",
                    output.name, table.path, flow.outputs[first].line
                ),
            ));
        }
        dests.insert(key, j);
        names.insert(output.name.clone(), j);
        flow.outputs.push(output);
    }
    Ok(flow)
}

fn parse_output(table: &Table<'_, '_>, flow: &FlowConfig) -> Result<OutputConfig, Error> {
    let unicast = table.string("unicast")?;
    let multicast = table.string("multicast")?;
    let (kind, dest, field) = match (unicast, multicast) {
        (Some(dest), None) => (OutputKind::Unicast, dest, "unicast"),
        (None, Some(dest)) => (OutputKind::Multicast, dest, "multicast"),
        (Some(_), Some(_)) => {
            return Err(table
                .whole("exactly one of `unicast` or `multicast` is allowed per output, not both"));
        }
        (None, None) => {
            return Err(table.whole(
                "missing destination: set `unicast = \"ip:port\"` or `multicast = \"group:port\"`",
            ));
        }
    };
    let addr = match parse_socket_addr(dest.value) {
        Ok(addr) => addr,
        Err(reason) => return Err(table.invalid(field, &dest.span, reason)),
    };
    let family_check = match kind {
        OutputKind::Unicast => check_unicast(addr.ip(), flow.group, "unicast destination"),
        OutputKind::Multicast => check_group(addr.ip())
            .and_then(|()| same_family(addr.ip(), flow.group, "multicast destination")),
    };
    if let Err(reason) = family_check {
        return Err(table.invalid(field, &dest.span, reason));
    }

    let interface = match table.string("interface")? {
        None => None,
        Some(name) => {
            check_interface_name(table, "interface", &name)?;
            Some(Located {
                value: name.value.to_owned(),
                line: table.doc.line(&name.span),
            })
        }
    };
    let vlan = table.integer("vlan", VLAN_RANGE)?;
    if let (Some(v), None) = (&vlan, &interface) {
        return Err(table.invalid(
            "vlan",
            &v.span,
            "needs `interface`: the replicas leave tagged on that interface",
        ));
    }
    let vlan = vlan.map(|v| v.value as u16);
    match kind {
        OutputKind::Multicast if interface.is_none() => {
            return Err(table.field_error(
                "interface",
                "missing (required for multicast outputs: the egress interface)",
            ));
        }
        OutputKind::Multicast => {
            // Re-emitting a flow's own group and port on its own ingress
            // interface, on its own VLAN (or untagged on an untagged flow),
            // would feed the engine its own output.
            let iface = interface.as_ref().map(|i| i.value.as_str());
            if flow.outer_vlan.is_none()
                && vlan == flow.vlan
                && iface == Some(flow.interface.value.as_str())
                && addr.ip() == flow.group
                && addr.port() == flow.port
            {
                return Err(table.invalid(
                    field,
                    &dest.span,
                    "re-emits the flow's own group and port on its ingress interface (a forwarding loop)",
                ));
            }
        }
        OutputKind::Unicast => {
            if let IpAddr::V6(v6) = addr.ip()
                && v6.is_unicast_link_local()
                && interface.is_none()
            {
                return Err(table.invalid(
                    field,
                    &dest.span,
                    "a link-local destination needs `interface` (the egress link)",
                ));
            }
        }
    }

    let source_port = table
        .integer("source_port", PORT_RANGE)?
        .map(|p| p.value as u16);
    let ttl = match table.integer("ttl", TTL_RANGE)? {
        Some(ttl) => ttl.value as u8,
        None => match kind {
            OutputKind::Unicast => DEFAULT_UNICAST_TTL,
            OutputKind::Multicast => DEFAULT_MULTICAST_TTL,
        },
    };
    let name = match table.string("name")? {
        Some(name) => {
            check_name(table, "name", &name)?;
            name.value.to_owned()
        }
        None => format!("{field} {addr}"),
    };
    Ok(OutputConfig {
        name,
        kind,
        dest: addr,
        interface,
        vlan,
        source_port,
        ttl,
        line: table.line(),
    })
}

/// Rules across flows: unique names, no two flows taking the same stream.
fn check_flows(doc: &Doc<'_>, flows: &[FlowConfig]) -> Result<(), Error> {
    for (i, flow) in flows.iter().enumerate() {
        for (k, earlier) in flows[..i].iter().enumerate() {
            if earlier.name == flow.name {
                return Err(doc.invalid_at(
                    flow.line,
                    format!("flow[{i}].name"),
                    format!("{:?}", flow.name),
                    format!(
                        "duplicate flow name: already used by flow[{k}] (line {})",
                        earlier.line
                    ),
                ));
            }
            // Two flows overlap when they would match the same datagrams: a
            // source-specific flow overlaps an any-source one on the same stream.
            let sources_overlap =
                earlier.source.is_none() || flow.source.is_none() || earlier.source == flow.source;
            if earlier.group == flow.group
                && earlier.port == flow.port
                && earlier.vlan == flow.vlan
                && earlier.outer_vlan == flow.outer_vlan
                && earlier.interface.value == flow.interface.value
                && sources_overlap
            {
                return Err(doc.invalid_at(
                    flow.line,
                    format!("flow[{i}]"),
                    format!("{:?}", flow.name),
                    format!(
                        "duplicate flow: same group, port, vlan, interface{} as flow[{k}] {:?} (line {})",
                        if flow.source.is_some() || earlier.source.is_some() {
                            " and overlapping source"
                        } else {
                            ""
                        },
                        earlier.name,
                        earlier.line
                    ),
                ));
            }
        }
    }
    check_loops(doc, flows)
}

/// No multicast output re-emits a stream that a flow takes: the same group
/// and port on that flow's ingress interface, whatever the VLANs (a NIC
/// that strips tags shows the program untagged frames, and replicas leave
/// untagged), from this flow or another. Each copy would come back as
/// input and be replicated again, without end.
fn check_loops(doc: &Doc<'_>, flows: &[FlowConfig]) -> Result<(), Error> {
    for (j, flow) in flows.iter().enumerate() {
        for (m, out) in flow.outputs.iter().enumerate() {
            let Some(egress) = &out.interface else {
                continue;
            };
            if out.kind != OutputKind::Multicast {
                continue;
            }
            let Some((i, taker)) = flows.iter().enumerate().find(|(_, f)| {
                f.interface.value == egress.value
                    && f.group == out.dest.ip()
                    && f.port == out.dest.port()
            }) else {
                continue;
            };
            let whose = if i == j {
                "this flow's own".to_owned()
            } else {
                format!("flow[{i}] {:?}'s (line {})", taker.name, taker.line)
            };
            return Err(doc.invalid_at(
                out.line,
                format!("flow[{j}].output[{m}].multicast"),
                format!("\"{}\"", out.dest),
                format!(
                    "re-emits {whose} group and port on {}, where that flow takes them{}: \
                     a forwarding loop",
                    egress.value,
                    match (taker.outer_vlan, taker.vlan) {
                        (Some(o), Some(v)) => format!(
                            " (on VLAN {v} inside {o}; replicas leave untagged, and NICs strip tags)"
                        ),
                        (_, Some(v)) =>
                            format!(" (on VLAN {v}; replicas leave untagged, and NICs strip tags)"),
                        _ => String::new(),
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn check_name(table: &Table<'_, '_>, key: &str, name: &Str<'_>) -> Result<(), Error> {
    let reason = if name.value.trim().is_empty() {
        "must not be empty"
    } else if name.value.chars().count() > MAX_NAME {
        "too long (at most 64 characters)"
    } else if name.value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(table.invalid(key, &name.span, reason))
}

fn check_interface_name(table: &Table<'_, '_>, key: &str, name: &Str<'_>) -> Result<(), Error> {
    let n = name.value;
    let reason = if n.is_empty() {
        "must not be empty"
    } else if n.len() > MAX_INTERFACE_NAME {
        "not a valid interface name (at most 15 bytes)"
    } else if n == "."
        || n == ".."
        || n.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        "not a valid interface name"
    } else {
        return Ok(());
    };
    Err(table.invalid(key, &name.span, reason))
}

fn parse_ip(table: &Table<'_, '_>, key: &str, s: &Str<'_>) -> Result<IpAddr, Error> {
    s.value
        .parse()
        .map_err(|_| table.invalid(key, &s.span, "not an IP address"))
}

/// A group a flow can take in or an output can emit to.
fn check_group(ip: IpAddr) -> Result<(), String> {
    match ip {
        IpAddr::V4(v4) => {
            if !v4.is_multicast() {
                return Err(format!(
                    "not a multicast group ({v4} is not in 224.0.0.0/4)"
                ));
            }
            if v4.octets()[..3] == [224, 0, 0] {
                return Err(format!(
                    "{v4} is in 224.0.0.0/24, reserved for link-local control traffic \
                     (IGMP, OSPF, mDNS...) that routers never forward"
                ));
            }
        }
        IpAddr::V6(v6) => {
            if !v6.is_multicast() {
                return Err(format!("not a multicast group ({v6} is not in ff00::/8)"));
            }
            match v6.segments()[0] & 0x000f {
                0 | 0xf => return Err(format!("{v6} has a reserved multicast scope")),
                1 => {
                    return Err(format!(
                        "{v6} is interface-local (scope 1): it never appears on a link"
                    ));
                }
                _ => {}
            }
            // ff0X::1 and ff0X::2 (well-known, flags 0) at any scope.
            let [first, a, b, c, d, e, f, g] = v6.segments();
            if first & 0xfff0 == 0xff00 && [a, b, c, d, e, f] == [0; 6] && (g == 1 || g == 2) {
                return Err(format!(
                    "{v6} is the all-nodes or all-routers group, used for control traffic"
                ));
            }
        }
    }
    Ok(())
}

/// A unicast address (a source or a receiver) of the same family as `group`.
fn check_unicast(ip: IpAddr, group: IpAddr, what: &str) -> Result<(), String> {
    if ip.is_multicast() {
        return Err(match what {
            "unicast destination" => {
                format!("{ip} is a multicast group: use `multicast = ...` for a re-emission")
            }
            _ => format!("{ip} is a multicast group, not a unicast address"),
        });
    }
    if ip.is_unspecified() {
        return Err(format!("{ip} is the unspecified address"));
    }
    if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!("{ip} is the broadcast address"));
    }
    same_family(ip, group, what)
}

fn same_family(ip: IpAddr, group: IpAddr, what: &str) -> Result<(), String> {
    if ip.is_ipv4() != group.is_ipv4() {
        return Err(format!(
            "{what} is {} but the flow's group {group} is {}",
            family(ip),
            family(group)
        ));
    }
    Ok(())
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// `ip:port` or `[v6]:port`, port 1..=65535, with a reason on failure.
fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("port 0 is not allowed (1..=65535)".into());
        }
        if let SocketAddr::V6(v6) = addr
            && v6.scope_id() != 0
        {
            return Err("write the address without %scope; set `interface` instead".into());
        }
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(if s.parse::<IpAddr>().is_ok() {
            "missing :port (expected ip:port)".into()
        } else {
            "not an ip:port address".into()
        });
    };
    if s.parse::<Ipv6Addr>().is_ok() {
        return Err("missing port: write IPv6 as [address]:port".into());
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.parse::<IpAddr>().is_err() {
        if host.contains(':') && !s.starts_with('[') {
            return Err("not an ip:port address (write IPv6 as [address]:port)".into());
        }
        return Err(format!("{host:?} is not an IP address (expected ip:port)"));
    }
    match port.parse::<u64>() {
        Ok(p) => Err(format!("port {p} is out of range (1..=65535)")),
        Err(_) => Err(format!("{port:?} is not a port number (expected ip:port)")),
    }
}
