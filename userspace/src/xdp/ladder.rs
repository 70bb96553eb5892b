//! The XDP mode ladder (DESIGN decision 6): where the program comes from,
//! how the operator asked to attach it, why a rung was refused, and how the
//! rung reached is named.
//!
//! Contract: every way the XDP datapath can fail to start is a [`Refused`]
//! that names the rung, the interface (and queue) and the cause, so that
//! `mode = "auto"` can say why it runs the socket engine and `mode = "xdp"`
//! why it refuses to start. The rung reached is named once, the same way
//! in the log, the ready file and the stats ([`rung_name`]).

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use super::program::{self as xdp, AttachMode, XdpProgram};
use super::spec::SetupError;
use super::worker;
use super::xsk::{self, BindMode};

/// Run-time path of the XDP object; overrides the embedded one.
pub const OBJECT_ENV: &str = "FANOUT_EBPF_OBJ";
/// `generic` forces generic (skb) XDP; `native` refuses generic;
/// unset or `auto` climbs the ladder.
pub const MODE_ENV: &str = "FANOUT_XDP_MODE";

/// A rung of the ladder that could not be climbed, and why.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("XDP program not built into this binary (run cargo xtask build-ebpf)")]
    NotBuilt,
    #[error("{MODE_ENV}={0:?}: expected auto, native or generic")]
    BadModeEnv(String),
    #[error("loading the XDP program: {0}")]
    Load(#[source] xdp::Error),
    #[error("interface {ifname}: {source}")]
    Attach {
        ifname: String,
        #[source]
        source: xdp::Error,
    },
    #[error("interface {ifname}: native XDP refused ({reason}) and {MODE_ENV}=native")]
    NativeRequired { ifname: String, reason: String },
    #[error("interface {ifname}: writing the XDP maps: {source}")]
    Map {
        ifname: String,
        #[source]
        source: xdp::Error,
    },
    #[error("interface {ifname} queue {queue}: AF_XDP: {source}")]
    Xsk {
        ifname: String,
        queue: u32,
        #[source]
        source: xsk::Error,
    },
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("interface {ifname} queue {queue}: {source}")]
    Worker {
        ifname: String,
        queue: u32,
        #[source]
        source: worker::WorkerError,
    },
    #[error("joining the groups: {0}")]
    Join(#[from] crate::membership::Error),
    #[error("flow {flow:?} output {output:?}: no interface set, and the route to {dst}: {source}")]
    Route {
        flow: String,
        output: String,
        dst: IpAddr,
        #[source]
        source: crate::neigh::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// How the operator asked to attach (`FANOUT_XDP_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachPolicy {
    /// Native, generic when refused.
    Auto,
    /// Native or nothing.
    Native,
    /// Generic straight away.
    Generic,
}

impl AttachPolicy {
    /// From `FANOUT_XDP_MODE` (unset: [`AttachPolicy::Auto`]).
    pub fn from_env() -> Result<Self, Refused> {
        match std::env::var(MODE_ENV) {
            Err(_) => Ok(AttachPolicy::Auto),
            Ok(v) => match v.as_str() {
                "" | "auto" => Ok(AttachPolicy::Auto),
                "native" => Ok(AttachPolicy::Native),
                "generic" => Ok(AttachPolicy::Generic),
                _ => Err(Refused::BadModeEnv(v)),
            },
        }
    }
}

/// Where the XDP object comes from.
#[derive(Debug, Clone)]
pub enum ObjectSource {
    File(PathBuf),
    Embedded(&'static [u8]),
}

impl ObjectSource {
    /// `FANOUT_EBPF_OBJ` when set, else the embedded object.
    pub fn find() -> Result<Self, Refused> {
        match std::env::var_os(OBJECT_ENV) {
            Some(p) if !p.is_empty() => Ok(ObjectSource::File(p.into())),
            _ => xdp::embedded_object()
                .map(ObjectSource::Embedded)
                .ok_or(Refused::NotBuilt),
        }
    }

    pub(super) fn load(&self) -> Result<XdpProgram, Refused> {
        match self {
            ObjectSource::File(p) => XdpProgram::load_file(p),
            ObjectSource::Embedded(b) => XdpProgram::load_bytes(b),
        }
        .map_err(Refused::Load)
    }

    pub(super) fn describe(&self) -> String {
        match self {
            ObjectSource::File(p) => format!("{} ({OBJECT_ENV})", p.display()),
            ObjectSource::Embedded(b) => format!("embedded ({} bytes)", b.len()),
        }
    }
}

pub(super) fn attach_name(m: AttachMode) -> &'static str {
    match m {
        AttachMode::Native => "native",
        AttachMode::Generic => "generic",
    }
}

/// `xdp native copy` when every interface reached the same rung, else
/// `xdp in0=native copy, in1=generic copy`: `(interface, attach, bind)`
/// per ingress interface, in plan order.
pub(super) fn rung_name(ingress: &[(&str, AttachMode, BindMode)]) -> String {
    let each: Vec<String> = ingress
        .iter()
        .map(|(_, attach, bind)| format!("{} {bind}", attach_name(*attach)))
        .collect();
    if each.windows(2).all(|w| w[0] == w[1]) {
        format!("xdp {}", each.first().map_or("", String::as_str))
    } else {
        let named: Vec<String> = ingress
            .iter()
            .zip(&each)
            .map(|((ifname, _, _), r)| format!("{ifname}={r}"))
            .collect();
        format!("xdp {}", named.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rung_is_named_once_and_mixed_rungs_per_interface() {
        let native = ("in0", AttachMode::Native, BindMode::Copy);
        let generic = ("in1", AttachMode::Generic, BindMode::Copy);
        assert_eq!(rung_name(&[native]), "xdp native copy");
        assert_eq!(
            rung_name(&[native, ("in2", AttachMode::Native, BindMode::Copy)]),
            "xdp native copy"
        );
        assert_eq!(
            rung_name(&[native, generic]),
            "xdp in0=native copy, in1=generic copy"
        );
        assert_eq!(
            rung_name(&[("in0", AttachMode::Native, BindMode::ZeroCopy)]),
            "xdp native zero-copy"
        );
    }
}
