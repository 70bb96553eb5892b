//! The validated configuration: what [`Config::load`] returns, and the one
//! [`Error`] every rule, the reader and interface resolution return.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::options::EngineConfig;

/// Default TTL / hop limit of multicast re-emissions.
pub const DEFAULT_MULTICAST_TTL: u8 = 16;
/// Default TTL / hop limit of unicast replicas.
pub const DEFAULT_UNICAST_TTL: u8 = 64;
/// Longest interface name Linux accepts (`IFNAMSIZ - 1`).
pub const MAX_INTERFACE_NAME: usize = 15;
/// Longest flow or output name.
pub const MAX_NAME: usize = 64;

/// Unicast receiver or multicast re-emission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Unicast,
    Multicast,
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputKind::Unicast => "unicast",
            OutputKind::Multicast => "multicast",
        })
    }
}

/// Where something is in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole.
    pub line: Option<u32>,
    /// 1-based, in characters; only for TOML syntax errors.
    pub column: Option<u32>,
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
    /// An environment variable overrides an `[engine]` field with a value
    /// that field does not take.
    #[error("error: environment: {var}={value:?} (overrides [engine] {field}): {reason}")]
    Environment {
        var: &'static str,
        value: String,
        field: &'static str,
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
            | Error::Environment { .. }
            | Error::Syntax { .. }
            | Error::InvalidValue { .. }
            | Error::InvalidField { .. } => 2,
        }
    }

    /// The same error located at `at` (a command that edited the text,
    /// whose lines are nobody's).
    pub fn relocated(mut self, at: &Location) -> Error {
        match &mut self {
            Error::Read { .. } | Error::Environment { .. } => {}
            Error::Syntax { at: here, .. }
            | Error::InvalidValue { at: here, .. }
            | Error::InvalidField { at: here, .. }
            | Error::System { at: here, .. } => here.clone_from(at),
        }
        self
    }

    /// The location the error points at, if any.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Read { .. } | Error::Environment { .. } => None,
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
    pub line: u32,
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
    /// 1..=4094: the only tag, or the inner (C-VLAN) one of two.
    pub vlan: Option<u16>,
    /// 1..=4094: the outer (S-VLAN) tag of a double-tagged (QinQ) stream;
    /// only with `vlan`.
    pub outer_vlan: Option<u16>,
    /// A unicast address of the same family as `group`.
    pub source: Option<IpAddr>,
    /// `max_pps` and `max_mbps`: datagrams over them are not replicated.
    pub cap: crate::rate::RateCap,
    /// `health`: the stream check at ingress (default `auto`).
    pub health: crate::health::HealthMode,
    /// At least one.
    pub outputs: Vec<OutputConfig>,
    /// Line of the `[[flow]]` header.
    pub line: u32,
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
    /// 1..=4094: replicas leave tagged with this 802.1Q VLAN id on
    /// `interface` (which is then required).
    pub vlan: Option<u16>,
    pub source_port: Option<u16>,
    /// TTL / hop limit, 1..=255.
    pub ttl: u8,
    /// Line of the `[[flow.output]]` header.
    pub line: u32,
}
