//! The XDP program left attached on purpose: attach and pin it, look at it,
//! remove it (`fanout xdp attach|detach|status`, `cargo xtask load|unload`).
//!
//! Contract: [`attach_and_pin`] attaches a loaded program to one interface
//! (native, generic when refused, or generic at once), writes the flows of
//! that interface into `FLOWS` (ids: positions among the interface's flows,
//! as the engine numbers them) and its MAC into `INGRESS`, and pins the
//! link and the maps under `DIR/IFNAME`: the program then outlives the
//! process, and with no AF_XDP socket in `XSKS` every frame goes to the
//! kernel (fail-open), counted in the pinned `COUNTERS`. A running `fanout
//! run` drives it ([`super::program::XdpProgram::adopt`]) and leaves it
//! attached when it stops. [`status`] reads a pin directory without
//! changing anything; [`detach`] removes the pins (the link's last
//! reference: the program detaches) unless a running engine holds the
//! directory's lock.

use std::fmt;
use std::path::{Path, PathBuf};

use aya::maps::{MapData, PerCpuArray};
use fanout_common::{COUNTERS_MAP, Counter, FLOWS_MAP, FlowKey, FlowValue};

use super::program::{
    self, Attached, Counters, Error, LINK_PIN, OnInterface, Pins, XdpProgram, lock_dir,
    on_interface,
};
use crate::plan::FlowPlan;

/// Attaches `program` to `ifname` (generic at once when `generic`), writes
/// `flows` (each with its id) and the interface's `mac`, and pins it all
/// under `dir`. On a failure after the attachment nothing stays pinned and
/// the program detaches when `program` is dropped.
pub fn attach_and_pin(
    program: &mut XdpProgram,
    ifname: &str,
    generic: bool,
    flows: &[(u32, &FlowPlan)],
    mac: Option<[u8; 6]>,
    dir: &Path,
) -> Result<Attached, Error> {
    let attached = program.attach_with(ifname, generic)?;
    program.insert_flows(flows)?;
    program.set_ingress(mac)?;
    if let Err(e) = program.pin(dir) {
        let _ = program::unpin(dir);
        return Err(e);
    }
    Ok(attached)
}

/// One flow written into the program, as `attach` prints it: `  flow 0
/// "tv": 239.1.1.1:5000 vlan 7 source 10.0.0.1`.
pub fn flow_line(id: u32, flow: &FlowPlan) -> String {
    let mut line = format!(
        "  flow {id} {:?}: {}",
        flow.name,
        std::net::SocketAddr::new(flow.group, flow.port)
    );
    if let Some(vlan) = flow.vlan {
        line.push_str(&format!(" vlan {vlan}"));
    }
    if let Some(src) = flow.source {
        line.push_str(&format!(" source {src}"));
    }
    line
}

/// Whether Linux could name an interface `iface` (and the name cannot
/// escape a pin directory): 1 to 15 bytes, no `/`, `:` or white space, not
/// `.` or `..`.
pub fn valid_iface_name(iface: &str) -> bool {
    !(iface.is_empty()
        || iface.len() > 15
        || iface == "."
        || iface == ".."
        || iface.contains(['/', ':'])
        || iface.chars().any(char::is_whitespace))
}

/// What [`detach`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Detached {
    /// The pins were removed: the program is detached.
    Removed,
    /// Nothing was pinned there.
    NothingPinned,
}

/// Removes the pins under `dir` unless a running engine holds its lock
/// ([`Error::PinnedInUse`]).
pub fn detach(dir: &Path) -> Result<Detached, Error> {
    if !dir.exists() {
        return Ok(Detached::NothingPinned);
    }
    let lock = lock_dir(dir)?;
    let removed = program::unpin(dir)?;
    drop(lock);
    Ok(if removed {
        Detached::Removed
    } else {
        Detached::NothingPinned
    })
}

/// One interface's pinned program, as [`status`] found it.
#[derive(Debug)]
pub struct Status {
    pub ifname: String,
    pub dir: PathBuf,
    /// The program the pinned link holds.
    pub link_prog_id: u32,
    /// What the interface has attached (`None`: nothing).
    pub on_interface: Option<OnInterface>,
    /// Whether a running engine holds the directory's lock (drives it).
    pub in_use: bool,
    /// `FLOWS` entries.
    pub flow_entries: usize,
    /// `COUNTERS`, summed over the CPUs, since it was attached.
    pub counters: Counters,
    /// This binary's program tag, when it could be computed: whether
    /// `fanout run` would drive this program or refuse it.
    pub our_tag: Option<String>,
}

impl Status {
    /// Whether the pinned link's program is the one attached to the
    /// interface (false: the interface was deleted and created again).
    pub fn attached(&self) -> bool {
        self.on_interface
            .as_ref()
            .is_some_and(|on| on.prog_id == self.link_prog_id)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.on_interface, self.attached()) {
            (Some(on), true) => writeln!(
                f,
                "{}: {} attached in {} mode (program id {}, tag {}), pinned under {}",
                self.ifname,
                on.name,
                on.mode,
                on.prog_id,
                on.tag,
                self.dir.display()
            )?,
            _ => writeln!(
                f,
                "{}: pinned under {} (program id {}), but not attached to {}: stale, remove it \
                 with `fanout xdp detach --interface {}`",
                self.ifname,
                self.dir.display(),
                self.link_prog_id,
                self.ifname,
                self.ifname
            )?,
        }
        if let (Some(ours), Some(on)) = (&self.our_tag, &self.on_interface) {
            if *ours == on.tag {
                writeln!(f, "  program: this binary's (fanout run drives it)")?;
            } else {
                writeln!(
                    f,
                    "  program: another build (this binary's tag is {ours}): fanout run refuses \
                     it until it is detached"
                )?;
            }
        }
        if self.in_use {
            writeln!(
                f,
                "  engine: a running fanout drives it (its sockets take the flows)"
            )?;
        } else {
            writeln!(
                f,
                "  engine: none running: the flows go to the kernel (fail-open)"
            )?;
        }
        writeln!(f, "  flows:   {} FLOWS entries", self.flow_entries)?;
        let counters: Vec<String> = Counter::ALL
            .iter()
            .map(|&c| format!("{}={}", c.name(), self.counters.get(c)))
            .collect();
        writeln!(f, "  counters: {}", counters.join(" "))
    }
}

/// Reads the pins under `dir` (the program of `ifname`); `None` when no
/// link is pinned there. `our_tag` is this binary's program tag, if known.
pub fn status(dir: &Path, ifname: &str, our_tag: Option<String>) -> Result<Option<Status>, Error> {
    let link_path = dir.join(LINK_PIN);
    if !link_path.exists() {
        return Ok(None);
    }
    let pins = Pins { dir, ifname };
    let pinned = |what: String| pins.error(what);
    let link_prog_id = pins.link_program()?;
    let in_use = match lock_dir(dir) {
        Ok(_lock) => false,
        Err(Error::PinnedInUse { .. }) => true,
        Err(e) => return Err(e),
    };
    let flows = aya::maps::HashMap::<MapData, FlowKey, FlowValue>::try_from(pins.map(FLOWS_MAP)?)
        .map_err(|e| pinned(format!("map {FLOWS_MAP}: {e}")))?;
    let flow_entries = flows.keys().filter(Result::is_ok).count();
    let array = PerCpuArray::<MapData, u64>::try_from(pins.map(COUNTERS_MAP)?)
        .map_err(|e| pinned(format!("map {COUNTERS_MAP}: {e}")))?;
    let mut counters = Counters::default();
    for c in Counter::ALL {
        let values = array
            .get(&c.index(), 0)
            .map_err(|e| pinned(format!("map {COUNTERS_MAP}: read {}: {e}", c.name())))?;
        counters.0[c.index() as usize] = values.iter().sum();
    }
    Ok(Some(Status {
        ifname: ifname.to_owned(),
        dir: dir.to_owned(),
        link_prog_id,
        on_interface: on_interface(ifname)?,
        in_use,
        flow_entries,
        counters,
        our_tag,
    }))
}

/// The interfaces with a pin directory under `root` (sorted).
pub fn pinned_interfaces(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().join(LINK_PIN).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
