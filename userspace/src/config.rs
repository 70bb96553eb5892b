//! The TOML configuration: parsing and validation, nothing else.
//!
//! [`Config::load`] reads a file and returns a fully validated [`Config`] or
//! one [`Error`] whose `Display` is the complete message for the operator: it
//! names the file, the line, the field path (`flow[1].output[0].unicast`,
//! indices from 0) and the offending value. Every rule that can be checked
//! without looking at the running system is checked here (types, ranges,
//! address families, multicast or unicast, duplicates, unknown fields);
//! interface names are only checked for shape, their existence is the job of
//! [`crate::plan::Plan::resolve`]. This module never opens a socket and never
//! touches the network.
//!
//! The document is parsed into toml's spanned tree ([`toml::de::DeTable`]) and
//! walked by hand rather than through `serde(derive)`, so that every error,
//! including a missing or unknown field, carries its field path and line.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

pub use crate::plan::{Mode, OutputKind};

/// Default `[engine] batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Accepted `[engine] batch_size` values.
pub const BATCH_SIZE_RANGE: RangeInclusive<i64> = 1..=1024;
/// Default TTL / hop limit of multicast re-emissions.
pub const DEFAULT_MULTICAST_TTL: u8 = 16;
/// Default TTL / hop limit of unicast replicas.
pub const DEFAULT_UNICAST_TTL: u8 = 64;
/// Longest interface name Linux accepts (`IFNAMSIZ - 1`).
pub const MAX_INTERFACE_NAME: usize = 15;
/// Longest flow or output name.
pub const MAX_NAME: usize = 64;

const PORT_RANGE: RangeInclusive<i64> = 1..=65535;
const VLAN_RANGE: RangeInclusive<i64> = 1..=4094;
const TTL_RANGE: RangeInclusive<i64> = 1..=255;

const ROOT_KEYS: &[&str] = &["engine", "flow"];
const ENGINE_KEYS: &[&str] = &["mode", "batch_size"];
const FLOW_KEYS: &[&str] = &[
    "name",
    "interface",
    "group",
    "port",
    "vlan",
    "source",
    "output",
];
const OUTPUT_KEYS: &[&str] = &[
    "unicast",
    "multicast",
    "interface",
    "source_port",
    "ttl",
    "name",
];

/// Where something is in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole.
    pub line: Option<usize>,
    /// 1-based, in characters; only for TOML syntax errors.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// Everything that can be wrong with a configuration (or with resolving it).
///
/// `Display` is the complete, one-line message for the operator, starting
/// with `error: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("error: {}: cannot read the configuration: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file is not valid TOML.
    #[error("error: {at}: TOML syntax error: {message}")]
    Syntax { at: Location, message: String },
    /// A field has a value that is not acceptable.
    #[error("error: {at}: {field} = {value}: {reason}")]
    InvalidValue {
        at: Location,
        /// Field path, e.g. `flow[1].output[0].unicast`.
        field: String,
        /// The value as written in the file.
        value: String,
        reason: String,
    },
    /// A field (or table) is missing, unknown or inconsistent as a whole.
    #[error("error: {at}: {field}: {reason}")]
    InvalidField {
        at: Location,
        field: String,
        reason: String,
    },
    /// The system could not be queried while resolving an interface (not the
    /// configuration's fault).
    #[error("error: {at}: {field} = {value}: {what}: {source}")]
    System {
        at: Location,
        field: String,
        value: String,
        what: String,
        source: io::Error,
    },
}

impl Error {
    /// The process exit code for this error: 2 when the configuration (or the
    /// path given for it) is at fault, 1 for a failure of the system.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::System { .. } => 1,
            Error::Read { .. }
            | Error::Syntax { .. }
            | Error::InvalidValue { .. }
            | Error::InvalidField { .. } => 2,
        }
    }

    /// The location the error points at, if any.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Read { .. } => None,
            Error::Syntax { at, .. }
            | Error::InvalidValue { at, .. }
            | Error::InvalidField { at, .. }
            | Error::System { at, .. } => Some(at),
        }
    }
}

/// A value together with the line it was written on (for errors found later,
/// e.g. by interface resolution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    /// 1-based line in [`Config::path`].
    pub line: usize,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (used in error messages).
    pub path: PathBuf,
    pub engine: EngineConfig,
    /// At least one.
    pub flows: Vec<FlowConfig>,
}

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub mode: Mode,
    /// 1..=1024.
    pub batch_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mode: Mode::Auto,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// One `[[flow]]`.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Unique among flows.
    pub name: String,
    /// Ingress interface name (existence not checked here).
    pub interface: Located<String>,
    /// A multicast group, never in 224.0.0.0/24.
    pub group: IpAddr,
    /// 1..=65535.
    pub port: u16,
    /// 1..=4094.
    pub vlan: Option<u16>,
    /// A unicast address of the same family as `group`.
    pub source: Option<IpAddr>,
    /// At least one.
    pub outputs: Vec<OutputConfig>,
    /// Line of the `[[flow]]` header.
    pub line: usize,
}

/// One `[[flow.output]]`.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// Unique within the flow: the configured name, or `unicast <ip:port>` /
    /// `multicast <group:port>`.
    pub name: String,
    pub kind: OutputKind,
    /// Receiver or group, same family as the flow's group, port 1..=65535.
    pub dest: SocketAddr,
    /// Egress interface; always present for multicast outputs.
    pub interface: Option<Located<String>>,
    pub source_port: Option<u16>,
    /// TTL / hop limit, 1..=255.
    pub ttl: u8,
    /// Line of the `[[flow.output]]` header.
    pub line: usize,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let doc = Doc { path, src: text };
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

    let mut flow = FlowConfig {
        name: name.value.to_owned(),
        interface: Located {
            value: interface.value.to_owned(),
            line: table.doc.line(&interface.span),
        },
        group: group_ip,
        port: port.value as u16,
        vlan: vlan.map(|v| v.value as u16),
        source,
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
            // A group may be re-emitted on several interfaces.
            OutputKind::Multicast => (
                output.dest,
                output.interface.as_ref().map(|i| i.value.clone()),
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
    match kind {
        OutputKind::Multicast if interface.is_none() => {
            return Err(table.field_error(
                "interface",
                "missing (required for multicast outputs: the egress interface)",
            ));
        }
        OutputKind::Multicast => {
            // Re-emitting a flow's own group and port on its own (untagged)
            // ingress interface would feed the engine its own output.
            let iface = interface.as_ref().map(|i| i.value.as_str());
            if flow.vlan.is_none()
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
            let [_, a, b, c, d, e, f, g] = v6.segments();
            if [a, b, c, d, e, f] == [0; 6] && (g == 1 || g == 2) {
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

// ---------------------------------------------------------------------------
// The spanned-tree reader.

/// The file being read: turns spans into lines and source excerpts.
struct Doc<'a> {
    path: &'a Path,
    src: &'a str,
}

impl Doc<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let start = span.start.min(self.src.len());
        self.src.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn at(&self, span: &Range<usize>) -> Location {
        Location {
            path: self.path.to_path_buf(),
            line: Some(self.line(span)),
            column: None,
        }
    }

    /// The value as written, on one line and at most 60 characters.
    fn excerpt(&self, span: &Range<usize>) -> String {
        let text = self.src.get(span.clone()).unwrap_or("").trim();
        let one_line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        if one_line.chars().count() > 60 {
            let cut: String = one_line.chars().take(57).collect();
            format!("{cut}...")
        } else {
            one_line
        }
    }

    fn syntax(&self, e: &toml::de::Error) -> Error {
        let (line, column) = match e.span() {
            Some(span) => {
                let start = span.start.min(self.src.len());
                let before = self.src.get(..start).unwrap_or(self.src);
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rsplit_once('\n')
                    .map_or(before, |(_, last)| last)
                    .chars()
                    .count()
                    + 1;
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        Error::Syntax {
            at: Location {
                path: self.path.to_path_buf(),
                line,
                column,
            },
            message: e.message().trim().replace('\n', "; "),
        }
    }

    fn invalid_at(&self, line: usize, field: String, value: String, reason: String) -> Error {
        Error::InvalidValue {
            at: Location {
                path: self.path.to_path_buf(),
                line: Some(line),
                column: None,
            },
            field,
            value,
            reason,
        }
    }
}

/// A string value and where it is.
struct Str<'a> {
    value: &'a str,
    span: Range<usize>,
}

/// An integer value (already range-checked) and where it is.
struct Int {
    value: i64,
}

/// A table being read, with its field path. Unknown keys are rejected when it
/// is opened.
struct Table<'d, 'i> {
    doc: &'d Doc<'d>,
    /// `""` for the root, `engine`, `flow[0]`, `flow[0].output[1]`.
    path: String,
    span: Range<usize>,
    table: &'d DeTable<'i>,
}

impl<'d, 'i> Table<'d, 'i> {
    fn new(
        doc: &'d Doc<'d>,
        path: String,
        value: &'d Spanned<DeValue<'i>>,
        allowed: &[&str],
    ) -> Result<Self, Error> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(Error::InvalidValue {
                at: doc.at(&value.span()),
                value: doc.excerpt(&value.span()),
                field: path,
                reason: format!("expected a table, found {}", value.get_ref().type_str()),
            });
        };
        let this = Table {
            doc,
            path,
            span: value.span(),
            table,
        };
        // Report the first unknown key in file order.
        let unknown = table
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.get_ref().as_ref()))
            .min_by_key(|(k, _)| k.span().start);
        if let Some((key, _)) = unknown {
            return Err(Error::InvalidField {
                at: doc.at(&key.span()),
                field: this.field(key.get_ref()),
                reason: format!("unknown field (expected one of: {})", allowed.join(", ")),
            });
        }
        Ok(this)
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn line(&self) -> usize {
        self.doc.line(&self.span)
    }

    fn get(&self, key: &str) -> Option<&'d Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    fn invalid(&self, key: &str, span: &Range<usize>, reason: impl Into<String>) -> Error {
        Error::InvalidValue {
            at: self.doc.at(span),
            field: self.field(key),
            value: self.doc.excerpt(span),
            reason: reason.into(),
        }
    }

    /// An error about a field of this table, located at the table's header.
    fn field_error(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            at: self.location(),
            field: self.field(key),
            reason: reason.into(),
        }
    }

    /// An error about this table as a whole.
    fn whole(&self, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            at: self.location(),
            field: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn location(&self) -> Location {
        let mut at = self.doc.at(&self.span);
        if self.span.is_empty() && self.path.is_empty() {
            // The root table: the file as a whole.
            at.line = None;
        }
        at
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, Error> {
        value.ok_or_else(|| self.field_error(key, "missing (required)"))
    }

    fn string(&self, key: &str) -> Result<Option<Str<'d>>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.get_ref() {
            DeValue::String(s) => Ok(Some(Str {
                value: s.as_ref(),
                span: value.span(),
            })),
            other => Err(self.invalid(
                key,
                &value.span(),
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    fn integer(&self, key: &str, range: RangeInclusive<i64>) -> Result<Option<Int>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let bounds = format!("{}..={}", range.start(), range.end());
        let DeValue::Integer(int) = value.get_ref() else {
            return Err(self.invalid(
                key,
                &value.span(),
                format!(
                    "expected an integer ({bounds}), found {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if range.contains(&n) => Ok(Some(Int { value: n })),
            _ => Err(self.invalid(key, &value.span(), format!("out of range ({bounds})"))),
        }
    }

    /// `[[key]]` tables: present, an array, not empty, every element a table.
    fn array_of_tables(
        &self,
        key: &str,
        header: &str,
    ) -> Result<&'d [Spanned<DeValue<'i>>], Error> {
        let Some(value) = self.get(key) else {
            return Err(self.field_error(
                key,
                format!("missing: at least one {header} table is required"),
            ));
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.invalid(
                key,
                &value.span(),
                format!(
                    "expected {header} tables, found {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        if items.is_empty() {
            return Err(self.invalid(
                key,
                &value.span(),
                format!("at least one {header} table is required"),
            ));
        }
        Ok(items.as_ref())
    }
}
