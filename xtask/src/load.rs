//! `cargo xtask load` / `cargo xtask unload`: leave the XDP program attached
//! to an interface on purpose, and take it away again.
//!
//! `load` builds the program ([`crate::ebpf::build`]), loads it, attaches it
//! to `--iface` (native XDP, generic when the driver refuses, and says which),
//! writes the configuration's flows of that interface into `FLOWS` (flow id =
//! the flow's position among the interface's flows, as the engine numbers
//! them; the interfaces are resolved by index only, see [`flow_plan`]) and
//! pins the link
//! and the maps under [`pin_dir`], mounting a BPF filesystem on `/sys/fs/bpf`
//! when none is there. It then exits and the program stays attached: with no
//! AF_XDP socket in `XSKS`, matched traffic is passed to the kernel
//! (fail-open) and counted in the pinned `COUNTERS`. `unload` removes the pins
//! (the link's last reference: the program detaches) and says what it
//! removed; nothing pinned is not an error. Both are what `fanout xdp
//! attach|detach` do with the embedded program ([`fanout::xdp::pinned`]),
//! with the program built from this checkout and a `--netns` of their own.
//!
//! Run it in the host's mount namespace: under `ip netns exec` (which mounts
//! a private `/sys`) the BPF filesystem it mounts, and the pins with it, die
//! with that mount namespace. With `--netns NS` the work runs on a thread that entered the named network
//! namespace (`setns`), and the pins live under
//! `/sys/fs/bpf/fanout/netns/NS/IFNAME` so that the same interface name in two
//! namespaces never collides. Exit codes: 0 done, 2 bad arguments or
//! configuration (no such interface or namespace, no flow on the interface,
//! already loaded), 1 a failure of the system.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use fanout::config::Config;
use fanout::plan::{Interface, Plan};
use fanout::xdp::program::{self as xdp, AttachMode, PIN_ROOT, XdpProgram};
use nix::sched::{CloneFlags, setns};

use crate::{ebpf, setup};

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Arguments of `cargo xtask load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The ingress interface to attach the program to.
    #[arg(long)]
    iface: String,
    /// The fanout configuration whose flows on IFACE are written into FLOWS.
    #[arg(long)]
    config: PathBuf,
    /// Run inside this named network namespace (`ip netns`).
    #[arg(long)]
    netns: Option<String>,
}

/// Arguments of `cargo xtask unload`.
#[derive(Debug, clap::Args)]
pub struct UnloadArgs {
    /// The interface whose pinned program is removed.
    #[arg(long)]
    iface: String,
    /// The named network namespace the program was loaded in.
    #[arg(long)]
    netns: Option<String>,
}

/// A complete message for the operator and the exit code that goes with it
/// (2: the arguments or the configuration are at fault).
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

/// A mistake in the arguments or the configuration: exit code 2.
fn bad_input(message: String) -> Fatal {
    Fatal { code: 2, message }
}

/// A configuration error, its message complete (the `io::Error` is already
/// in it) and its exit code (2 unless the system failed).
fn config_error(e: fanout::config::Error) -> Fatal {
    Fatal {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

/// The exit code of a failed xtask command: [`Fatal::code`], 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Fatal>().map_or(1, |f| f.code)
}

/// The pin directory of `iface`: [`xdp::pin_dir`] in the caller's network
/// namespace, `/sys/fs/bpf/fanout/netns/NS/IFACE` for a named one.
pub fn pin_dir(netns: Option<&str>, iface: &str) -> PathBuf {
    match netns {
        None => xdp::pin_dir(iface),
        Some(ns) => Path::new(PIN_ROOT).join("netns").join(ns).join(iface),
    }
}

/// `cargo xtask load`.
pub fn load(args: LoadArgs) -> Result<()> {
    check_iface_name(&args.iface)?;
    let ns = args.netns.as_deref().map(open_netns).transpose()?;
    let dir = pin_dir(args.netns.as_deref(), &args.iface);
    if dir.join(xdp::LINK_PIN).exists() {
        return Err(bad_input(format!(
            "a program is already pinned on {} ({}): run `cargo xtask unload --iface {}{}` first",
            where_(&args.iface, args.netns.as_deref()),
            dir.display(),
            args.iface,
            args.netns
                .as_deref()
                .map(|n| format!(" --netns {n}"))
                .unwrap_or_default(),
        ))
        .into());
    }
    // Configuration mistakes first: they need no build.
    let config = Config::load(&args.config).map_err(config_error)?;
    if !crate::cmd::is_root() {
        anyhow::bail!("loading an XDP program and pinning it needs root");
    }
    let object = ebpf::build(true)?;
    setup::mount_bpffs()?;
    in_netns(ns, || load_here(&args, &config, &object, &dir))
}

/// The part of `load` that runs inside the target namespace.
fn load_here(args: &LoadArgs, config: &Config, object: &Path, dir: &Path) -> Result<()> {
    let place = where_(&args.iface, args.netns.as_deref());
    if nix::net::if_::if_nametoindex(args.iface.as_str()).is_err() {
        return Err(bad_input(format!("no such interface {place}")).into());
    }
    let plan = flow_plan(config)?;
    let flows: Vec<(u32, &fanout::plan::FlowPlan)> = (0u32..)
        .zip(plan.flows.iter().filter(|f| f.ingress.name == args.iface))
        .collect();
    if flows.is_empty() {
        let mut others: Vec<&str> = plan.flows.iter().map(|f| f.ingress.name.as_str()).collect();
        others.sort_unstable();
        others.dedup();
        return Err(bad_input(format!(
            "{}: no flow arrives on {} (flows arrive on: {})",
            args.config.display(),
            args.iface,
            others.join(", ")
        ))
        .into());
    }

    let mut prog = XdpProgram::load_file(object)?;
    let attached = fanout::xdp::pinned::attach_and_pin(
        &mut prog,
        &args.iface,
        false,
        &flows,
        flows[0].1.ingress.mac,
        dir,
    )
    .with_context(|| format!("attaching to {place} and pinning under {}", dir.display()))?;
    match (&attached.mode, &attached.native_refused) {
        (AttachMode::Native, _) => println!("attached to {place}: native XDP"),
        (AttachMode::Generic, why) => println!(
            "attached to {place}: generic XDP (native refused: {})",
            why.as_deref().unwrap_or("unknown")
        ),
    }
    for (id, flow) in &flows {
        println!("{}", fanout::xdp::pinned::flow_line(*id, flow));
    }
    println!(
        "pinned link, FLOWS, XSKS and COUNTERS under {}: the program stays attached; \
         with no AF_XDP socket its flows go to the kernel (fail-open)",
        dir.display()
    );
    println!(
        "remove it with `cargo xtask unload --iface {}{}`",
        args.iface,
        args.netns
            .as_deref()
            .map(|n| format!(" --netns {n}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Reads and validates the configuration and resolves its interfaces by
/// `if_nametoindex` only: that is all the flow keys need, and unlike the
/// MTU and MAC in `/sys/class/net` (which shows the namespace of whoever
/// mounted sysfs) it answers for the namespace this thread entered.
fn flow_plan(config: &Config) -> Result<Plan> {
    let plan = Plan::resolve_with(config, |name| match nix::net::if_::if_nametoindex(name) {
        Ok(index) => Ok(Some(Interface {
            name: name.to_owned(),
            index,
            mtu: 0,
            mac: None,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
        })),
        Err(nix::errno::Errno::ENODEV) => Ok(None),
        Err(e) => Err(e.into()),
    })
    .map_err(config_error)?;
    Ok(plan)
}

/// `cargo xtask unload`.
pub fn unload(args: UnloadArgs) -> Result<()> {
    check_iface_name(&args.iface)?;
    if let Some(ns) = &args.netns {
        // The namespace may be gone already: its pins still need removing.
        check_netns_name(ns)?;
    }
    let dir = pin_dir(args.netns.as_deref(), &args.iface);
    let place = where_(&args.iface, args.netns.as_deref());
    let pinned: Vec<&str> = [xdp::LINK_PIN, "FLOWS", "XSKS", "COUNTERS"]
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect();
    if !xdp::unpin(&dir).with_context(|| format!("unpinning {}", dir.display()))? {
        println!(
            "nothing pinned for {place} ({} does not exist): nothing to remove",
            dir.display()
        );
        return Ok(());
    }
    if let Some(ns) = &args.netns {
        // The empty per-namespace directories, when nothing else is pinned.
        let ns_dir = Path::new(PIN_ROOT).join("netns").join(ns);
        for d in [ns_dir.as_path(), &Path::new(PIN_ROOT).join("netns")] {
            let _ = std::fs::remove_dir(d);
        }
    }
    println!(
        "removed {} from {}: the program is detached from {place}",
        pinned.join(", "),
        dir.display()
    );
    Ok(())
}

/// "IFACE" or "IFACE in namespace NS", for messages.
fn where_(iface: &str, netns: Option<&str>) -> String {
    match netns {
        None => iface.to_owned(),
        Some(ns) => format!("{iface} in network namespace {ns}"),
    }
}

/// Rejects names Linux would never give an interface (and that would escape
/// the pin directory).
fn check_iface_name(iface: &str) -> Result<()> {
    if !fanout::xdp::pinned::valid_iface_name(iface) {
        return Err(bad_input(format!("invalid interface name {iface:?}")).into());
    }
    Ok(())
}

/// Rejects namespace names that `ip netns` would refuse (and that would
/// escape the pin directory).
fn check_netns_name(ns: &str) -> Result<()> {
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
        return Err(bad_input(format!("invalid network namespace name {ns:?}")).into());
    }
    Ok(())
}

/// Opens `/run/netns/NS`.
fn open_netns(ns: &str) -> Result<File> {
    check_netns_name(ns)?;
    let path = Path::new(NETNS_DIR).join(ns);
    File::open(&path).map_err(|e| {
        bad_input(format!(
            "no such network namespace {ns} ({}: {e}; see `ip netns list`)",
            path.display()
        ))
        .into()
    })
}

/// Runs `f` on a thread inside the namespace `ns` (or here when `None`).
fn in_netns<T: Send>(ns: Option<File>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let Some(ns) = ns else {
        return f();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).context("setns(CLONE_NEWNET)")?;
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dirs_are_per_namespace() {
        assert_eq!(pin_dir(None, "in0"), Path::new("/sys/fs/bpf/fanout/in0"));
        assert_eq!(
            pin_dir(Some("fo-lab-edge"), "in0"),
            Path::new("/sys/fs/bpf/fanout/netns/fo-lab-edge/in0")
        );
    }

    #[test]
    fn bad_names_exit_2() {
        for bad in ["", "a/b", "a:b", "..", "sixteen-chars-xx", "a b"] {
            let err = check_iface_name(bad).unwrap_err();
            assert_eq!(exit_code(&err), 2, "{bad:?}");
        }
        assert!(check_iface_name("in0").is_ok());
        assert_eq!(exit_code(&check_netns_name("../x").unwrap_err()), 2);
        let err = open_netns("fo-does-not-exist-xyz").unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("fo-does-not-exist-xyz"), "{err}");
    }
}
