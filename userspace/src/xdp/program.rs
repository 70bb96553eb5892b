//! The XDP loader: loads the `fanout_xdp` program (from a file or from
//! bytes), attaches it to an interface and manages its maps.
//!
//! Contract: [`XdpProgram::attach`] climbs the mode ladder once, native
//! first and generic when the driver refuses, logs the rung and the reason
//! native was refused, and returns them as [`Attached`]. The attachment is a
//! bpf_link owned by this value (aya falls back to a netlink attachment on
//! kernels without XDP links): dropping the value, or the process exiting,
//! detaches the program, unless [`XdpProgram::pin`] pinned it on purpose
//! under `/sys/fs/bpf/fanout/IFNAME`. Flows are written into `FLOWS`,
//! sockets into `XSKS` at their queue index, and `COUNTERS` is read summed
//! over the CPUs. One `XdpProgram` serves one ingress interface: `XSKS` is
//! keyed by rx queue only, so two interfaces need two loads (two sets of
//! maps). Nothing here touches packets.
//!
//! A program pinned under `DIR/IFNAME` (`fanout xdp attach`, `cargo xtask
//! load`) stays attached without any process. [`XdpProgram::adopt`] makes a
//! loaded value drive that one instead of attaching its own: the pinned
//! program must be this object's (same program tag) and attached to the
//! interface; its maps are then the ones written and read, `FLOWS` and the
//! per-flow counters start empty, `COUNTERS` reads from zero at the
//! adoption, and the directory is locked (`flock`) while the value lives,
//! so that two engines never share one program's `XSKS` and `fanout xdp
//! detach` refuses to pull it from under a running engine.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, XskMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{ProgramError, Xdp, XdpMode};
use fanout_common::{
    COUNTERS_MAP, Counter, FLOW_COUNTERS_MAP, FLOWS_MAP, FlowCounter, FlowKey, FlowValue,
    INGRESS_MAP, Ingress, PROGRAM_NAME, XSKS_MAP,
};

use crate::plan::FlowPlan;
use crate::xdp::worker::{Claim, layout};

/// Root of the pins made by [`XdpProgram::pin`] (`cargo xtask load`).
pub const PIN_ROOT: &str = "/sys/fs/bpf/fanout";
/// File name of the pinned link inside an interface's pin directory.
pub const LINK_PIN: &str = "link";

/// Errors of the loader, naming the object, interface, map or path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load the XDP object {what}: {source}")]
    Load {
        what: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("the XDP object has no {kind} named {name:?}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("cannot load program {PROGRAM_NAME} into the kernel: {source}")]
    Verify {
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot attach {PROGRAM_NAME} to {ifname}: native refused ({native}); generic refused")]
    Attach {
        ifname: String,
        native: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("program {PROGRAM_NAME} is not attached (call attach before pin)")]
    NotAttached,
    #[error(
        "program {PROGRAM_NAME} is already attached to {ifname}: load one program per ingress \
         interface (XSKS is keyed by queue only)"
    )]
    AlreadyAttached { ifname: String },
    #[error("cannot pin the XDP link of {ifname}: it is a netlink attachment, not a bpf_link")]
    NotALink { ifname: String },
    #[error("map {map}: {op}: {source}")]
    Map {
        map: &'static str,
        op: String,
        #[source]
        source: Box<MapError>,
    },
    #[error("cannot pin {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: Box<aya::pin::PinError>,
    },
    #[error("{path} is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs { path: PathBuf },
    #[error(
        "flows {flow:?} and {other:?} claim the same datagrams on one interface (same group, \
         port and VLAN, and a source that does not tell them apart)"
    )]
    FlowConflict { flow: String, other: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "interface {ifname}: the XDP program pinned under {} is not this binary's (program tag \
         {theirs}, this binary's {ours}): run `fanout xdp detach --interface {ifname}` to remove \
         it (its flows go to the kernel meanwhile), then start again",
        dir.display()
    )]
    PinnedOther {
        ifname: String,
        dir: PathBuf,
        ours: String,
        theirs: String,
    },
    #[error(
        "interface {ifname}: the XDP program pinned under {} is in use by another running \
         fanout (its pin directory is locked)",
        dir.display()
    )]
    PinnedInUse { ifname: String, dir: PathBuf },
    #[error("interface {ifname}: the pinned XDP program under {}: {what}", dir.display())]
    Pinned {
        ifname: String,
        dir: PathBuf,
        what: String,
    },
}

/// The rung of the XDP mode ladder reached on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP: the driver refused native mode.
    Generic,
}

/// Where and how the program was attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub ifname: String,
    pub ifindex: u32,
    pub mode: AttachMode,
    /// Why native mode was refused (for [`AttachMode::Generic`]).
    pub native_refused: Option<String>,
}

/// The per-CPU `COUNTERS`, summed over the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters(pub [u64; Counter::COUNT as usize]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c.index() as usize]
    }
}

/// Every map the program declares (and [`XdpProgram::pin`] pins).
const MAPS: [&str; 5] = [
    FLOWS_MAP,
    XSKS_MAP,
    COUNTERS_MAP,
    INGRESS_MAP,
    FLOW_COUNTERS_MAP,
];

/// A step of [`XdpProgram::update_flows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowsUpdate {
    /// Delete the keys of the flows that go.
    Drop,
    /// Write the entries of the flows that come or change.
    Write,
}

/// One flow's `FLOW_COUNTERS`, summed over the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCounts(pub [u64; FlowCounter::COUNT as usize]);

impl FlowCounts {
    pub fn get(&self, c: FlowCounter) -> u64 {
        self.0[c as usize]
    }
}

/// The loaded program and its maps.
#[derive(Debug)]
pub struct XdpProgram {
    ebpf: Ebpf,
    /// Where and how it is attached; the link id when this value attached
    /// it (none for an adopted pinned program).
    attached: Option<(Attached, Option<aya::programs::xdp::XdpLinkId>)>,
    /// An adopted pinned program ([`XdpProgram::adopt`]).
    pinned: Option<Adopted>,
}

/// The maps of an adopted pinned program, and what makes its counters
/// this run's.
#[derive(Debug)]
struct Adopted {
    maps: Vec<(&'static str, Map)>,
    /// `COUNTERS` at the adoption.
    baseline: Counters,
    /// The lock on the pin directory, held while the value lives.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// What is attached to an interface, as `ip -details -json link show`
/// reports it (netlink `IFLA_XDP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnInterface {
    /// `native`, `generic` or `offload`.
    pub mode: String,
    pub prog_id: u32,
    pub name: String,
    /// The program tag, 16 hex digits.
    pub tag: String,
}

/// What is attached to `ifname` (in this thread's network namespace).
pub fn on_interface(ifname: &str) -> Result<Option<OnInterface>, Error> {
    let text =
        crate::neigh::ip(&["-details", "-json", "link", "show", "dev", ifname]).map_err(|e| {
            Error::Io {
                path: PathBuf::from(format!("ip link show dev {ifname}")),
                source: io::Error::other(e.to_string()),
            }
        })?;
    Ok(parse_on_interface(&text))
}

/// [`on_interface`] from the text `ip -details -json link show` printed.
fn parse_on_interface(json: &str) -> Option<OnInterface> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let xdp = v.get(0)?.get("xdp")?;
    let prog = xdp.get("prog")?;
    let mode = match xdp.get("mode")?.as_u64()? {
        1 => "native",
        2 => "generic",
        3 => "offload",
        _ => "unknown",
    };
    Some(OnInterface {
        mode: mode.to_owned(),
        prog_id: u32::try_from(prog.get("id")?.as_u64()?).ok()?,
        name: prog.get("name")?.as_str()?.to_owned(),
        tag: prog.get("tag")?.as_str()?.to_owned(),
    })
}

impl XdpProgram {
    /// Loads the object file at `path` (see `FANOUT_EBPF_OBJ` and
    /// `cargo xtask build-ebpf`) and the program into the kernel.
    pub fn load_file(path: &Path) -> Result<XdpProgram, Error> {
        let ebpf = Ebpf::load_file(path).map_err(|source| Error::Load {
            what: path.display().to_string(),
            source: Box::new(source),
        })?;
        Self::from_ebpf(ebpf)
    }

    /// Loads an object held in memory (an embedded copy).
    pub fn load_bytes(object: &[u8]) -> Result<XdpProgram, Error> {
        let ebpf = Ebpf::load(object).map_err(|source| Error::Load {
            what: format!("({} bytes in memory)", object.len()),
            source: Box::new(source),
        })?;
        Self::from_ebpf(ebpf)
    }

    fn from_ebpf(mut ebpf: Ebpf) -> Result<XdpProgram, Error> {
        let prog = Self::program(&mut ebpf)?;
        prog.load().map_err(|source| Error::Verify {
            source: Box::new(source),
        })?;
        for name in MAPS {
            if ebpf.map(name).is_none() {
                return Err(Error::Missing { kind: "map", name });
            }
        }
        Ok(XdpProgram {
            ebpf,
            attached: None,
            pinned: None,
        })
    }

    fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, Error> {
        let missing = Error::Missing {
            kind: "XDP program",
            name: PROGRAM_NAME,
        };
        match ebpf.program_mut(PROGRAM_NAME) {
            Some(p) => p.try_into().map_err(|_| missing),
            None => Err(missing),
        }
    }

    /// Attaches the program to `ifname`: native mode first, generic when
    /// native is refused. Logs the rung (and the refusal) once.
    pub fn attach(&mut self, ifname: &str) -> Result<Attached, Error> {
        self.attach_with(ifname, false)
    }

    /// [`attach`](Self::attach), or generic mode straight away when
    /// `force_generic` (the operator asked for it: `[engine] xdp_attach =
    /// "generic"`);
    /// `native_refused` then says so.
    pub fn attach_with(&mut self, ifname: &str, force_generic: bool) -> Result<Attached, Error> {
        if let Some((a, _)) = &self.attached {
            return Err(Error::AlreadyAttached {
                ifname: a.ifname.clone(),
            });
        }
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|e| Error::Io {
            path: PathBuf::from(format!("/sys/class/net/{ifname}")),
            source: e.into(),
        })?;
        let prog = Self::program(&mut self.ebpf)?;
        let native = if force_generic {
            Err("not tried: generic mode asked for (xdp_attach = \"generic\")".to_owned())
        } else {
            prog.attach_to_if_index(ifindex, XdpMode::Driver)
                .map_err(|e| error_chain(&e))
        };
        let (id, mode, native_refused) = match native {
            Ok(id) => (id, AttachMode::Native, None),
            Err(native) => {
                let id = prog
                    .attach_to_if_index(ifindex, XdpMode::Skb)
                    .map_err(|source| Error::Attach {
                        ifname: ifname.to_owned(),
                        native: native.clone(),
                        source: Box::new(source),
                    })?;
                (id, AttachMode::Generic, Some(native))
            }
        };
        match &native_refused {
            None => log::info!("XDP on {ifname}: native mode"),
            Some(why) => log::warn!("XDP on {ifname}: generic mode (native refused: {why})"),
        }
        let attached = Attached {
            ifname: ifname.to_owned(),
            ifindex,
            mode,
            native_refused,
        };
        self.attached = Some((attached.clone(), Some(id)));
        Ok(attached)
    }

    /// This object's program tag (16 hex digits), as the kernel computed it
    /// at load: what `ip link` shows of an attached program.
    pub fn tag(&mut self) -> Result<String, Error> {
        let info = Self::program(&mut self.ebpf)?
            .info()
            .map_err(|source| Error::Verify {
                source: Box::new(source),
            })?;
        Ok(format!("{:016x}", info.tag()))
    }

    /// Drives the program pinned under `dir` on `ifname` instead of
    /// attaching this one (see the module documentation); `None` when
    /// nothing is pinned there, or when a pinned link no longer holds the
    /// interface (it was deleted and created again): those stale pins are
    /// removed, said in the log, and the caller attaches as usual.
    pub fn adopt(&mut self, dir: &Path, ifname: &str) -> Result<Option<Attached>, Error> {
        let link_path = dir.join(LINK_PIN);
        // A pin directory this process may not look at (root's 0700 one,
        // for a run as another user) is said; attaching then tells whether
        // a program holds the interface.
        match link_path.try_exists() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                log::warn!(
                    "XDP on {ifname}: cannot look for a pinned program under {} ({e}): a program \
                     pinned there is not driven by this run",
                    dir.display()
                );
                return Ok(None);
            }
            Err(source) => {
                return Err(Error::Io {
                    path: link_path,
                    source,
                });
            }
        }
        if let Some((a, _)) = &self.attached {
            return Err(Error::AlreadyAttached {
                ifname: a.ifname.clone(),
            });
        }
        let pins = Pins { dir, ifname };
        let pinned = |what: String| pins.error(what);
        let lock = lock_dir(dir).map_err(|e| match e {
            Error::PinnedInUse { .. } => Error::PinnedInUse {
                ifname: ifname.to_owned(),
                dir: dir.to_owned(),
            },
            other => other,
        })?;
        let prog_id = pins.link_program()?;
        let on = on_interface(ifname)?;
        let Some(on) = on.filter(|on| on.prog_id == prog_id) else {
            log::warn!(
                "XDP on {ifname}: the link pinned under {} holds program {prog_id}, which is not \
                 attached to {ifname} (the interface was created again?): removing the stale pins",
                dir.display()
            );
            drop(lock);
            unpin(dir)?;
            return Ok(None);
        };
        let ours = self.tag()?;
        if on.tag != ours {
            return Err(Error::PinnedOther {
                ifname: ifname.to_owned(),
                dir: dir.to_owned(),
                ours,
                theirs: on.tag,
            });
        }
        let mode = match on.mode.as_str() {
            "native" => AttachMode::Native,
            "generic" => AttachMode::Generic,
            other => return Err(pinned(format!("attached in {other} mode"))),
        };
        let maps = MAPS
            .into_iter()
            .map(|name| Ok((name, pins.map(name)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|e| Error::Io {
            path: PathBuf::from(format!("/sys/class/net/{ifname}")),
            source: e.into(),
        })?;
        self.pinned = Some(Adopted {
            maps,
            baseline: Counters::default(),
            _lock: lock,
        });
        // What the previous configuration wrote: no flow matches while the
        // per-flow counters are cleared, then the caller writes its own.
        self.clear_flows()?;
        self.clear_flow_counters()?;
        let baseline = self.counters()?;
        if let Some(p) = &mut self.pinned {
            p.baseline = baseline;
        }
        let attached = Attached {
            ifname: ifname.to_owned(),
            ifindex,
            mode,
            native_refused: None,
        };
        log::info!(
            "XDP on {ifname}: driving the program pinned under {} ({} mode, program id {prog_id})",
            dir.display(),
            on.mode
        );
        self.attached = Some((attached.clone(), None));
        Ok(Some(attached))
    }

    /// Whether this value drives a pinned program ([`XdpProgram::adopt`]).
    pub fn adopted(&self) -> bool {
        self.pinned.is_some()
    }

    fn map_ref(&self, name: &'static str) -> Result<&Map, Error> {
        let map = match &self.pinned {
            Some(p) => p.maps.iter().find(|(n, _)| *n == name).map(|(_, m)| m),
            None => self.ebpf.map(name),
        };
        map.ok_or(Error::Missing { kind: "map", name })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, Error> {
        let map = match &mut self.pinned {
            Some(p) => p.maps.iter_mut().find(|(n, _)| *n == name).map(|(_, m)| m),
            None => self.ebpf.map_mut(name),
        };
        map.ok_or(Error::Missing { kind: "map", name })
    }

    /// Removes every `FLOWS` entry.
    fn clear_flows(&mut self) -> Result<(), Error> {
        let mut map = self.flows()?;
        let keys: Vec<FlowKey> = map.keys().filter_map(Result::ok).collect();
        for key in keys {
            map.remove(&key).map_err(|source| Error::Map {
                map: FLOWS_MAP,
                op: format!("remove {key:?}"),
                source: Box::new(source),
            })?;
        }
        Ok(())
    }

    /// Zeroes `FLOW_COUNTERS` on every CPU.
    fn clear_flow_counters(&mut self) -> Result<(), Error> {
        let map_err = |op: String| {
            move |source| Error::Map {
                map: FLOW_COUNTERS_MAP,
                op: op.clone(),
                source: Box::new(source),
            }
        };
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| Error::Io {
            path: PathBuf::from("/sys/devices/system/cpu/possible"),
            source,
        })?;
        let map = self.map_mut(FLOW_COUNTERS_MAP)?;
        let mut array =
            PerCpuArray::<&mut MapData, u64>::try_from(map).map_err(map_err("open".into()))?;
        for slot in 0..array.len() {
            let zeros = PerCpuValues::try_from(vec![0u64; cpus]).map_err(|source| Error::Io {
                path: PathBuf::from("/sys/devices/system/cpu/possible"),
                source,
            })?;
            array
                .set(slot, zeros, 0)
                .map_err(map_err(format!("zero slot {slot}")))?;
        }
        Ok(())
    }

    /// Where and how the program is attached, if it is.
    pub fn attached(&self) -> Option<&Attached> {
        self.attached.as_ref().map(|(a, _)| a)
    }

    fn flows(&mut self) -> Result<HashMap<&mut MapData, FlowKey, FlowValue>, Error> {
        let map = self.map_mut(FLOWS_MAP)?;
        HashMap::try_from(map).map_err(|source| Error::Map {
            map: FLOWS_MAP,
            op: "open".into(),
            source: Box::new(source),
        })
    }

    /// Writes the `FLOWS` entries of `flows` (each with its id, its index
    /// in the plan), as [`flow_entries`] lays them out.
    pub fn insert_flows(&mut self, flows: &[(u32, &FlowPlan)]) -> Result<(), Error> {
        let entries = flow_entries(flows)?;
        let mut map = self.flows()?;
        for (key, value) in entries {
            map.insert(key, value, 0).map_err(|source| Error::Map {
                map: FLOWS_MAP,
                op: format!("insert {key:?} => {value:?}"),
                source: Box::new(source),
            })?;
        }
        Ok(())
    }

    /// Takes `FLOWS` from the entries of `before` to those of `after`
    /// (both as [`XdpProgram::insert_flows`] takes them) in two steps, so
    /// that no flow in both ever passes to the kernel: [`FlowsUpdate::drop`]
    /// deletes the keys `after` has not; [`FlowsUpdate::write`] writes
    /// every entry of `after` (each element update is atomic: a key whose
    /// flow id changes points at one of the two ids at any time).
    pub fn update_flows(
        &mut self,
        before: &[(u32, &FlowPlan)],
        after: &[(u32, &FlowPlan)],
        step: FlowsUpdate,
    ) -> Result<(), Error> {
        let before = flow_entries(before)?;
        let after = flow_entries(after)?;
        let mut map = self.flows()?;
        match step {
            FlowsUpdate::Drop => {
                for (key, _) in before
                    .iter()
                    .filter(|(k, _)| after.iter().all(|(a, _)| a != k))
                {
                    map.remove(key).map_err(|source| Error::Map {
                        map: FLOWS_MAP,
                        op: format!("remove {key:?}"),
                        source: Box::new(source),
                    })?;
                }
            }
            FlowsUpdate::Write => {
                for (key, value) in after {
                    if before.contains(&(key, value)) {
                        continue;
                    }
                    map.insert(key, value, 0).map_err(|source| Error::Map {
                        map: FLOWS_MAP,
                        op: format!("insert {key:?} => {value:?}"),
                        source: Box::new(source),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Writes `INGRESS`: the MAC of the interface the program serves
    /// (`None` for one without a link address), so that frames to another
    /// host's MAC are passed, not replicated ([`Ingress`]).
    pub fn set_ingress(&mut self, mac: Option<[u8; 6]>) -> Result<(), Error> {
        let map = self.map_mut(INGRESS_MAP)?;
        let mut array =
            Array::<&mut MapData, Ingress>::try_from(map).map_err(|source| Error::Map {
                map: INGRESS_MAP,
                op: "open".into(),
                source: Box::new(source),
            })?;
        array
            .set(0, Ingress::new(mac), 0)
            .map_err(|source| Error::Map {
                map: INGRESS_MAP,
                op: format!("set the MAC {mac:02x?}"),
                source: Box::new(source),
            })
    }

    /// [`XdpProgram::insert_flows`] for one flow.
    pub fn insert_flow(&mut self, flow_id: u32, flow: &FlowPlan) -> Result<(), Error> {
        self.insert_flows(&[(flow_id, flow)])
    }

    fn xsks(&mut self) -> Result<XskMap<&mut MapData>, Error> {
        let map = self.map_mut(XSKS_MAP)?;
        XskMap::try_from(map).map_err(|source| Error::Map {
            map: XSKS_MAP,
            op: "open".into(),
            source: Box::new(source),
        })
    }

    /// Puts the AF_XDP socket `socket` in `XSKS` at rx queue `queue`.
    pub fn insert_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), Error> {
        self.xsks()?
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(|source| Error::Map {
                map: XSKS_MAP,
                op: format!("set queue {queue}"),
                source: Box::new(source),
            })
    }

    /// Removes the socket of rx queue `queue` (its traffic goes back to
    /// the kernel: fail-open).
    pub fn remove_socket(&mut self, queue: u32) -> Result<(), Error> {
        self.xsks()?.unset(queue).map_err(|source| Error::Map {
            map: XSKS_MAP,
            op: format!("unset queue {queue}"),
            source: Box::new(source),
        })
    }

    /// `COUNTERS`, summed over the CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        let map = self.map_ref(COUNTERS_MAP)?;
        let array = PerCpuArray::<&MapData, u64>::try_from(map).map_err(|source| Error::Map {
            map: COUNTERS_MAP,
            op: "open".into(),
            source: Box::new(source),
        })?;
        let mut out = Counters::default();
        for c in Counter::ALL {
            let values = array.get(&c.index(), 0).map_err(|source| Error::Map {
                map: COUNTERS_MAP,
                op: format!("read {}", c.name()),
                source: Box::new(source),
            })?;
            out.0[c.index() as usize] = values.iter().sum();
        }
        if let Some(p) = &self.pinned {
            for (n, was) in out.0.iter_mut().zip(p.baseline.0) {
                *n = n.saturating_sub(was);
            }
        }
        Ok(out)
    }

    /// `FLOW_COUNTERS` of flow ids `0..flows` (the interface's flows, in
    /// the order [`XdpProgram::insert_flows`] numbered them), summed over
    /// the CPUs, in [`FlowCounter::ALL`] order.
    pub fn flow_counters(&self, flows: u32) -> Result<Vec<FlowCounts>, Error> {
        let map = self.map_ref(FLOW_COUNTERS_MAP)?;
        let array = PerCpuArray::<&MapData, u64>::try_from(map).map_err(|source| Error::Map {
            map: FLOW_COUNTERS_MAP,
            op: "open".into(),
            source: Box::new(source),
        })?;
        (0..flows)
            .map(|flow| {
                let mut counts = FlowCounts::default();
                for c in FlowCounter::ALL {
                    let Some(slot) = c.slot(flow) else {
                        continue;
                    };
                    let values = array.get(&slot, 0).map_err(|source| Error::Map {
                        map: FLOW_COUNTERS_MAP,
                        op: format!("read flow {flow} {}", c.name()),
                        source: Box::new(source),
                    })?;
                    counts.0[c as usize] = values.iter().sum();
                }
                Ok(counts)
            })
            .collect()
    }

    /// Pins the link and the five maps under `dir` (see [`pin_dir`]),
    /// which must be on a BPF filesystem (mounting one is the caller's job):
    /// the program then stays attached after this process exits, until
    /// [`unpin`] removes the pins. Consumes the program's ownership of the
    /// link.
    pub fn pin(&mut self, dir: &Path) -> Result<(), Error> {
        let (attached, id) = match self.attached.take() {
            Some((a, Some(id))) => (a, id),
            // Adopted: pinned already, by whoever attached it.
            other => {
                self.attached = other;
                return Err(Error::NotAttached);
            }
        };
        // Only root reaches the pins: whoever opens them controls the datapath.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
        let fs = nix::sys::statfs::statfs(dir).map_err(|e| Error::Io {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        if fs.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC {
            self.attached = Some((attached, Some(id)));
            return Err(Error::NotBpffs {
                path: dir.to_owned(),
            });
        }
        for name in MAPS {
            let path = dir.join(name);
            let map = self
                .ebpf
                .map(name)
                .ok_or(Error::Missing { kind: "map", name })?;
            map.pin(&path).map_err(|source| Error::Pin {
                path,
                source: Box::new(source),
            })?;
        }
        let prog = Self::program(&mut self.ebpf)?;
        let link = prog.take_link(id).map_err(|source| Error::Verify {
            source: Box::new(source),
        })?;
        let link = FdLink::try_from(link).map_err(|_| Error::NotALink {
            ifname: attached.ifname.clone(),
        })?;
        let path = dir.join(LINK_PIN);
        link.pin(&path).map_err(|source| Error::Pin {
            path,
            source: Box::new(source),
        })?;
        Ok(())
    }
}

/// The XDP object built into this binary (`userspace/build.rs` embeds it
/// when `cargo xtask build-ebpf --release` or `FANOUT_EBPF_OBJ` provided
/// one at build time), 8-byte aligned as the ELF parser wants it.
pub fn embedded_object() -> Option<&'static [u8]> {
    #[cfg(fanout_embedded_ebpf)]
    {
        static OBJECT: &[u8] =
            aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fanout-ebpf.o"));
        Some(OBJECT)
    }
    #[cfg(not(fanout_embedded_ebpf))]
    {
        None
    }
}

/// The pin directory of interface `ifname`: `/sys/fs/bpf/fanout/IFNAME`.
pub fn pin_dir(ifname: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(ifname)
}

/// The pins of one interface's program, opened for reading or driving.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pins<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) ifname: &'a str,
}

impl Pins<'_> {
    /// [`Error::Pinned`] about these pins.
    pub(crate) fn error(&self, what: String) -> Error {
        Error::Pinned {
            ifname: self.ifname.to_owned(),
            dir: self.dir.to_owned(),
            what,
        }
    }

    /// The id of the program the pinned link holds.
    pub(crate) fn link_program(&self) -> Result<u32, Error> {
        let link = FdLink::from(
            PinnedLink::from_pin(self.dir.join(LINK_PIN))
                .map_err(|e| self.error(format!("opening the link: {e}")))?,
        );
        Ok(link
            .info()
            .map_err(|e| self.error(format!("reading the link: {e}")))?
            .program_id())
    }

    /// The pinned map `name`.
    pub(crate) fn map(&self, name: &str) -> Result<Map, Error> {
        let data = MapData::from_pin(self.dir.join(name))
            .map_err(|e| self.error(format!("opening map {name}: {e}")))?;
        Map::from_map_data(data).map_err(|e| self.error(format!("opening map {name}: {e}")))
    }
}

/// Takes the lock on the pin directory `dir` (`flock`, exclusive, without
/// waiting): [`Error::PinnedInUse`] when a running engine holds it. The
/// lock lasts as long as the returned value.
pub fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    let file = std::fs::File::open(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        match e {
            nix::errno::Errno::EWOULDBLOCK => Error::PinnedInUse {
                ifname: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dir: dir.to_owned(),
            },
            e => Error::Io {
                path: dir.to_owned(),
                source: e.into(),
            },
        }
    })
}

/// Removes the pins made by [`XdpProgram::pin`] under `dir` (the link
/// first: removing its last reference detaches the program). Returns
/// whether anything was pinned there.
pub fn unpin(dir: &Path) -> Result<bool, Error> {
    let mut found = false;
    for name in std::iter::once(LINK_PIN).chain(MAPS) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => found = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path, source }),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    }
    Ok(found)
}

/// The `FLOWS` entries of one interface's flows, laid out as the workers'
/// indexes are ([`crate::xdp::worker::layout`]): an any-source flow under
/// its stream key, source-specific channels under their source with one
/// `by_source` marker per stream, so that `(S1, G)` and `(S2, G)` on one
/// port are two flows. Two flows claiming the same datagrams (the
/// configuration refuses them too) are an [`Error::FlowConflict`].
pub fn flow_entries(flows: &[(u32, &FlowPlan)]) -> Result<Vec<(FlowKey, FlowValue)>, Error> {
    let claims: Vec<Claim> = flows
        .iter()
        .map(|&(id, f)| Claim {
            id,
            group: f.group,
            port: f.port,
            vlan: f.vlan,
            outer_vlan: f.outer_vlan,
            source: f.source,
        })
        .collect();
    layout(&claims).map_err(|(flow, other)| {
        let name = |id: u32| {
            flows
                .iter()
                .find(|(i, _)| *i == id)
                .map_or_else(String::new, |(_, f)| f.name.clone())
        };
        Error::FlowConflict {
            flow: name(flow),
            other: name(other),
        }
    })
}

/// Also used by tests that build a key by hand.
pub fn flow_key(group: IpAddr, port: u16, vlan: Option<u16>) -> FlowKey {
    FlowKey::new(group, port, vlan.unwrap_or(0))
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Interface;
    use fanout_common::FAMILY_IPV6;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn flow(group: IpAddr, vlan: Option<u16>, source: Option<IpAddr>) -> FlowPlan {
        FlowPlan {
            name: "f".into(),
            ingress: Interface {
                name: "eth0".into(),
                index: 1,
                mtu: 9000,
                mac: None,
                ipv4: vec![],
                ipv6: vec![],
            },
            group,
            port: 5000,
            vlan,
            outer_vlan: None,
            source,
            cap: Default::default(),
            health: Default::default(),
            outputs: vec![],
        }
    }

    #[test]
    fn flow_entries_carry_group_port_vlan_and_source() {
        let g = IpAddr::V4(Ipv4Addr::new(239, 1, 2, 3));
        let asm = flow(g, None, None);
        assert_eq!(
            flow_entries(&[(7, &asm)]).unwrap(),
            vec![(FlowKey::new(g, 5000, 0), FlowValue::flow(7))]
        );

        let g6 = IpAddr::V6(Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 1));
        let s6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9));
        let ssm = flow(g6, Some(100), Some(s6));
        let stream = flow_key(g6, 5000, Some(100));
        assert_eq!(
            (stream.family, stream.vlan, stream.port),
            (FAMILY_IPV6, 100, 5000)
        );
        assert_eq!(
            flow_entries(&[(2, &ssm)]).unwrap(),
            vec![
                (stream, FlowValue::by_source(2)),
                (stream.with_source_ip(s6), FlowValue::flow(2)),
            ]
        );
    }

    #[test]
    fn ssm_channels_share_their_stream_entry() {
        let g = IpAddr::V4(Ipv4Addr::new(232, 1, 1, 1));
        let s1 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let s2 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let (a, b) = (flow(g, None, Some(s1)), flow(g, None, Some(s2)));
        let other = flow(IpAddr::V4(Ipv4Addr::new(239, 9, 9, 9)), None, None);
        let stream = flow_key(g, 5000, None);
        assert_eq!(
            flow_entries(&[(4, &a), (1, &b), (0, &other)]).unwrap(),
            vec![
                (stream, FlowValue::by_source(1)),
                (stream.with_source_ip(s1), FlowValue::flow(4)),
                (stream.with_source_ip(s2), FlowValue::flow(1)),
                (flow_key(other.group, 5000, None), FlowValue::flow(0)),
            ]
        );
        // The same stream on another VLAN is another stream.
        let tagged = flow(g, Some(5), Some(s1));
        assert_eq!(flow_entries(&[(0, &a), (1, &tagged)]).unwrap().len(), 4);
    }

    #[test]
    fn flows_that_claim_the_same_datagrams_are_refused() {
        let g = IpAddr::V4(Ipv4Addr::new(232, 1, 1, 1));
        let s1 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut asm = flow(g, None, None);
        asm.name = "asm".into();
        let mut ssm = flow(g, None, Some(s1));
        ssm.name = "ssm".into();
        let e = flow_entries(&[(0, &ssm), (1, &asm)]).unwrap_err();
        assert_eq!(
            (
                e.to_string().contains("\"asm\""),
                e.to_string().contains("\"ssm\"")
            ),
            (true, true),
            "{e}"
        );
        assert!(flow_entries(&[(0, &asm), (1, &ssm)]).is_err());
        assert!(flow_entries(&[(0, &ssm), (1, &ssm)]).is_err());
        assert!(flow_entries(&[(0, &asm), (1, &asm)]).is_err());
    }

    /// What `ip -details -json link show` prints (iproute2 6.1 on this
    /// machine, a native and a generic attachment, and none).
    #[test]
    fn what_is_attached_comes_from_ip_link() {
        let json = |mode: u8| {
            format!(
                r#"[{{"ifindex":2,"ifname":"in0","xdp":{{"mode":{mode},"prog":{{"id":121,"name":"fanout_xdp","tag":"5b7716e9592d7554","jited":1}},"attached":[{{"mode":{mode},"prog":{{"id":121}}}}]}}}}]"#
            )
        };
        let on = |mode: &str| OnInterface {
            mode: mode.to_owned(),
            prog_id: 121,
            name: "fanout_xdp".to_owned(),
            tag: "5b7716e9592d7554".to_owned(),
        };
        assert_eq!(parse_on_interface(&json(1)), Some(on("native")));
        assert_eq!(parse_on_interface(&json(2)), Some(on("generic")));
        assert_eq!(parse_on_interface(&json(3)), Some(on("offload")));
        assert_eq!(
            parse_on_interface(r#"[{"ifindex":2,"ifname":"in0","mtu":9000}]"#),
            None
        );
        assert_eq!(parse_on_interface("not json"), None);
    }

    #[test]
    fn pin_dir_is_per_interface() {
        assert_eq!(pin_dir("eth0"), Path::new("/sys/fs/bpf/fanout/eth0"));
    }

    #[test]
    fn a_missing_object_names_its_path() {
        let e = XdpProgram::load_file(Path::new("/nonexistent/fanout.o")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/fanout.o"), "{e}");
    }
}
