//! The XDP mode ladder (architecture.md decision 6): where the program comes from
//! (`[engine] xdp_object`, else the embedded one), why a rung was refused,
//! and how the rung reached is named. How to attach is
//! [`crate::config::XdpAttach`].
//!
//! Contract: every way the XDP datapath can fail to start is a [`Refused`]
//! that names the rung, the interface (and queue) and the cause, so that
//! `mode = "auto"` can say why it runs the socket engine and `mode = "xdp"`
//! why it refuses to start. The rung reached is named once, the same way
//! in the log, the ready file and the stats ([`rung_name`]).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::program::{self as xdp, AttachMode, XdpProgram};
use super::spec::SetupError;
use super::worker;
use super::xsk::{self, BindMode};

/// A rung of the ladder that could not be climbed, and why.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("XDP program not built into this binary (run cargo xtask build-ebpf)")]
    NotBuilt,
    #[error("loading the XDP program: {0}")]
    Load(#[source] xdp::Error),
    #[error("interface {ifname}: {source}")]
    Attach {
        ifname: String,
        #[source]
        source: xdp::Error,
    },
    #[error("interface {ifname}: native XDP refused ({reason}) and xdp_attach = \"native\"")]
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
    #[error(
        "interface {ifname}: flow {flow:?} does not fit the XDP flow table ({max} entries: one per \
         any-source flow, one per source-specific channel and one per group and port they share)"
    )]
    FlowTableFull {
        ifname: String,
        flow: String,
        max: u32,
    },
    #[error(
        "flow {flow:?}: interface {ifname} is a NIC (driver {driver}) that strips 802.1Q tags \
         before XDP sees the frame (its VLAN receive offload is on), so XDP cannot tell this \
         flow's VLAN: set [engine] vlan_offload = \"off\" (fanout turns the offload off while it \
         runs), or run `ethtool -K {ifname} rxvlan off`"
    )]
    VlanStripped {
        flow: String,
        ifname: String,
        driver: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl Refused {
    /// The interface this refusal is about, when it is about one (its
    /// ingress, or for an AF_XDP TX socket its egress): `mode = "auto"`
    /// moves the flows that use it to the socket engine and starts XDP on
    /// the others.
    pub fn interface(&self) -> Option<&str> {
        match self {
            Refused::Attach { ifname, .. }
            | Refused::NativeRequired { ifname, .. }
            | Refused::Map { ifname, .. }
            | Refused::Xsk { ifname, .. }
            | Refused::Worker { ifname, .. }
            | Refused::FlowTableFull { ifname, .. } => Some(ifname),
            Refused::NotBuilt
            | Refused::Load(_)
            | Refused::Setup(_)
            | Refused::Join(_)
            | Refused::Route { .. }
            | Refused::VlanStripped { .. }
            | Refused::Io { .. } => None,
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
    /// The file `[engine] xdp_object` names, else the embedded object.
    pub fn find(file: Option<&Path>) -> Result<Self, Refused> {
        match file {
            Some(p) => Ok(ObjectSource::File(p.to_path_buf())),
            None => xdp::embedded_object()
                .map(ObjectSource::Embedded)
                .ok_or(Refused::NotBuilt),
        }
    }

    pub fn load(&self) -> Result<XdpProgram, Refused> {
        match self {
            ObjectSource::File(p) => XdpProgram::load_file(p),
            ObjectSource::Embedded(b) => XdpProgram::load_bytes(b),
        }
        .map_err(Refused::Load)
    }

    pub fn describe(&self) -> String {
        match self {
            ObjectSource::File(p) => format!("{} (xdp_object)", p.display()),
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
