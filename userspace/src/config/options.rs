//! The engine's options: every tuning knob is a typed field of
//! [`EngineConfig`], read from the `[engine]` table at start, printed by
//! `fanout check` and handed to the engines inside the plan. Nothing deeper
//! in the engines reads the environment.
//!
//! Contract: [`KNOBS`] lists every knob once: its `[engine]` field, the
//! environment variable that may override it for an experiment, its kind
//! and its help text (the source of `fanout run --help` and of
//! docs/configuration.md). [`EngineConfig::set`] is the one rule per knob,
//! used for the file and for the environment alike; an override in force is
//! remembered in [`EngineConfig::overrides`] so that `fanout check` and the
//! engine's log say it. A bad value, in the file or in the environment, is
//! an error that names where it came from, the field and the value (exit 2).

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::xdp::worker::{DEFAULT_INLINE_MAX, MAX_INLINE};

/// Default `[engine] batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Accepted `[engine] batch_size` values.
pub const BATCH_SIZE_RANGE: RangeInclusive<i64> = 1..=1024;

/// How the engine should move packets (`[engine] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// XDP where the interface and kernel allow it, the socket engine otherwise.
    Auto,
    /// XDP only: refuse to start without it.
    Xdp,
    /// The socket engine only.
    Socket,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Xdp => "xdp",
            Mode::Socket => "socket",
        })
    }
}

/// How the XDP program is attached (`[engine] xdp_attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpAttach {
    /// Native (driver) XDP, generic when the driver refuses it.
    #[default]
    Auto,
    /// Native or nothing.
    Native,
    /// Generic (skb) XDP straight away.
    Generic,
}

impl XdpAttach {
    /// The name in the file (`auto`, `native`, `generic`).
    pub fn name(self) -> &'static str {
        match self {
            XdpAttach::Auto => "auto",
            XdpAttach::Native => "native",
            XdpAttach::Generic => "generic",
        }
    }
}

/// What the XDP engine does with the VLAN receive offload of an ingress
/// interface that carries VLAN flows (`[engine] vlan_offload`): a NIC that
/// strips 802.1Q tags into metadata hides them from XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VlanOffload {
    /// Leave it as it is; a NIC that strips tags runs its VLAN flows on the
    /// socket engine (`mode = "auto"`) or refuses them (`"xdp"`).
    #[default]
    Keep,
    /// Turn it off while the XDP engine runs, and back on at exit.
    Off,
}

impl VlanOffload {
    /// The name in the file (`keep`, `off`).
    pub fn name(self) -> &'static str {
        match self {
            VlanOffload::Keep => "keep",
            VlanOffload::Off => "off",
        }
    }
}

/// `[engine]`: the engine and its tuning knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub mode: Mode,
    /// Datagrams received (and replicated) per batch, 1..=1024.
    pub batch_size: usize,
    /// How the XDP program is attached.
    pub xdp_attach: XdpAttach,
    /// The XDP object to load instead of the one built into the binary.
    pub xdp_object: Option<PathBuf>,
    /// The VLAN receive offload of ingress interfaces with VLAN flows.
    pub vlan_offload: VlanOffload,
    /// Where `fanout xdp attach` pins the program of an interface
    /// (`DIR/IFNAME`) and where `fanout run` looks for one to reuse; on a
    /// BPF filesystem.
    pub xdp_pin_dir: PathBuf,
    /// Where `fanout run` serves `/metrics` (Prometheus); `None`: nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where `fanout run` serves the control socket (`fanout ctl`, `fanout
    /// top`); `None`: nowhere (`control = "off"`).
    pub control: Option<PathBuf>,
    /// The group that may use the control socket besides root (the socket
    /// is then 0660); `None`: root only (0600).
    pub control_group: Option<String>,
    /// XDP engine: payloads of at most this many bytes are copied behind
    /// each replica's headers instead of chained by reference (0: never).
    pub inline_max: u32,
    /// XDP engine: preferred busy polling, in microseconds (0: off, the
    /// sockets follow `need_wakeup`).
    pub busy_poll_us: u32,
    /// XDP engine: packets per busy NAPI poll; `None`: the batch size.
    pub busy_poll_budget: Option<u16>,
    /// XDP engine, copy mode: TX descriptors one wakeup sends
    /// (`XDP_MAX_TX_SKB_BUDGET`); `None`: the whole TX ring; 0: the
    /// kernel's own 32.
    pub tx_budget: Option<u32>,
    /// The environment overrides in force, as `VAR=value`.
    pub overrides: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mode: Mode::Auto,
            batch_size: DEFAULT_BATCH_SIZE,
            xdp_attach: XdpAttach::Auto,
            xdp_object: None,
            vlan_offload: VlanOffload::Keep,
            xdp_pin_dir: PathBuf::from(crate::xdp::program::PIN_ROOT),
            metrics_listen: None,
            control: Some(PathBuf::from(crate::control::DEFAULT_SOCKET)),
            control_group: None,
            inline_max: DEFAULT_INLINE_MAX,
            busy_poll_us: 0,
            busy_poll_budget: None,
            tx_budget: None,
            overrides: Vec::new(),
        }
    }
}

/// What values a knob takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A string (an enumeration or a path).
    Text,
    /// An integer in this range.
    Int(RangeInclusive<i64>),
}

/// One tuning knob.
#[derive(Debug)]
pub struct Knob {
    /// Its field in `[engine]`.
    pub field: &'static str,
    /// The environment variable that overrides it, for experiments.
    pub env: &'static str,
    pub kind: Kind,
    /// One line for `--help` and the docs.
    pub help: &'static str,
}

/// Every knob that the environment may override (`mode` and `batch_size`
/// are set in the file only).
pub const KNOBS: &[Knob] = &[
    Knob {
        field: "xdp_attach",
        env: "FANOUT_XDP_MODE",
        kind: Kind::Text,
        help: "auto | native | generic: native XDP, generic when refused (auto); native or nothing; generic at once",
    },
    Knob {
        field: "xdp_object",
        env: "FANOUT_EBPF_OBJ",
        kind: Kind::Text,
        help: "the XDP object file to load instead of the one built into the binary",
    },
    Knob {
        field: "vlan_offload",
        env: "FANOUT_VLAN_OFFLOAD",
        kind: Kind::Text,
        help: "keep | off: the VLAN receive offload of ingress interfaces with VLAN flows, as it is (a NIC that strips tags runs them on sockets), or off while the XDP engine runs",
    },
    Knob {
        field: "xdp_pin_dir",
        env: "FANOUT_XDP_PIN_DIR",
        kind: Kind::Text,
        help: "where `fanout xdp attach` pins an interface's program (DIR/IFNAME, on a BPF filesystem) and where `fanout run` finds one to reuse",
    },
    Knob {
        field: "metrics_listen",
        env: "FANOUT_METRICS_LISTEN",
        kind: Kind::Text,
        help: "ADDR:PORT where fanout run serves /metrics in the Prometheus text format (off when absent)",
    },
    Knob {
        field: "control",
        env: "FANOUT_CONTROL",
        kind: Kind::Text,
        help: "the Unix socket of fanout ctl and fanout top (default /run/fanout/fanout.sock; \"off\": none)",
    },
    Knob {
        field: "control_group",
        env: "FANOUT_CONTROL_GROUP",
        kind: Kind::Text,
        help: "a group whose members may use the control socket too (0660; default: root only, 0600)",
    },
    Knob {
        field: "inline_max",
        env: "FANOUT_XSK_INLINE",
        kind: Kind::Int(0..=MAX_INLINE as i64),
        help: "payloads up to this many bytes are copied behind each replica's headers (0: every payload by reference)",
    },
    Knob {
        field: "busy_poll_us",
        env: "FANOUT_XSK_BUSY_POLL",
        kind: Kind::Int(0..=1_000_000),
        help: "preferred busy polling of the AF_XDP sockets, in microseconds (0: off, need_wakeup)",
    },
    Knob {
        field: "busy_poll_budget",
        env: "FANOUT_XSK_BUSY_POLL_BUDGET",
        kind: Kind::Int(1..=65535),
        help: "packets per busy NAPI poll (default: batch_size)",
    },
    Knob {
        field: "tx_budget",
        env: "FANOUT_XSK_TX_BUDGET",
        kind: Kind::Int(0..=1 << 20),
        help: "TX descriptors one copy-mode wakeup sends (default: the whole TX ring; 0: the kernel's 32)",
    },
];

/// A knob's value as read from the file or the environment.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

impl EngineConfig {
    /// Sets the knob `field` (one of [`KNOBS`]) to `value`; the reason when
    /// the value is not acceptable. Integers must already be in the knob's
    /// range (the readers check it, with the range in their message).
    pub fn set(&mut self, field: &str, value: Value<'_>) -> Result<(), String> {
        match (field, value) {
            ("xdp_attach", Value::Text(t)) => {
                self.xdp_attach = match t {
                    "auto" => XdpAttach::Auto,
                    "native" => XdpAttach::Native,
                    "generic" => XdpAttach::Generic,
                    _ => return Err("expected auto, native or generic".into()),
                };
            }
            ("xdp_object", Value::Text(t)) => {
                if t.is_empty() {
                    return Err("must not be empty (leave it out for the embedded object)".into());
                }
                self.xdp_object = Some(PathBuf::from(t));
            }
            ("vlan_offload", Value::Text(t)) => {
                self.vlan_offload = match t {
                    "keep" => VlanOffload::Keep,
                    "off" => VlanOffload::Off,
                    _ => return Err("expected keep or off".into()),
                };
            }
            ("xdp_pin_dir", Value::Text(t)) => {
                if !t.starts_with('/') {
                    return Err("must be an absolute path".into());
                }
                self.xdp_pin_dir = PathBuf::from(t);
            }
            ("metrics_listen", Value::Text(t)) => {
                let addr = t.parse().map_err(|_| {
                    "expected ADDR:PORT (127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)".to_owned()
                })?;
                self.metrics_listen = Some(addr);
            }
            ("control", Value::Text("off")) => self.control = None,
            ("control", Value::Text(t)) => {
                if !t.starts_with('/') {
                    return Err("must be an absolute path, or \"off\"".into());
                }
                if t.len() > 107 {
                    return Err("longer than a Unix socket path may be (107 bytes)".into());
                }
                self.control = Some(PathBuf::from(t));
            }
            ("control_group", Value::Text(t)) => {
                if t.is_empty()
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                {
                    return Err("expected a group name".into());
                }
                self.control_group = Some(t.to_owned());
            }
            ("inline_max", Value::Int(n)) => self.inline_max = int(n)?,
            ("busy_poll_us", Value::Int(n)) => self.busy_poll_us = int(n)?,
            ("busy_poll_budget", Value::Int(n)) => self.busy_poll_budget = Some(int(n)?),
            ("tx_budget", Value::Int(n)) => self.tx_budget = Some(int(n)?),
            (field, value) => return Err(format!("not a knob of this kind: {field} = {value:?}")),
        }
        Ok(())
    }

    /// Applies the environment overrides of [`KNOBS`] that `var` finds set
    /// (and not empty), each recorded in [`Self::overrides`]; on a bad value
    /// the variable, the value and the reason.
    pub fn apply_env(
        &mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<(), (&'static Knob, String, String)> {
        for knob in KNOBS {
            let Some(text) = var(knob.env).filter(|t| !t.is_empty()) else {
                continue;
            };
            let set = match &knob.kind {
                Kind::Text => self.set(knob.field, Value::Text(&text)),
                Kind::Int(range) => match text.trim().parse::<i64>() {
                    Ok(n) if range.contains(&n) => self.set(knob.field, Value::Int(n)),
                    Ok(_) => Err(format!(
                        "out of range ({}..={})",
                        range.start(),
                        range.end()
                    )),
                    Err(_) => Err(format!(
                        "expected an integer ({}..={})",
                        range.start(),
                        range.end()
                    )),
                },
            };
            match set {
                Ok(()) => self.overrides.push(format!("{}={text}", knob.env)),
                Err(reason) => return Err((knob, text, reason)),
            }
        }
        Ok(())
    }
}

/// An integer already range-checked by the reader, into the field's type.
fn int<T: TryFrom<i64>>(n: i64) -> Result<T, String> {
    T::try_from(n).map_err(|_| format!("{n} does not fit"))
}

/// The `--help` text that lists the overrides.
pub fn env_help() -> String {
    let mut s = String::from(
        "Environment overrides (for experiments; each overrides its [engine] field, and `fanout check` shows which are in force):\n",
    );
    for k in KNOBS {
        s.push_str(&format!(
            "  {:<28} [engine] {}: {}\n",
            k.env, k.field, k.help
        ));
    }
    s
}

/// One line per knob, for `fanout check` and the engine's log.
impl fmt::Display for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "engine: mode {}, batch size {}",
            self.mode, self.batch_size
        )?;
        let object = self
            .xdp_object
            .as_ref()
            .map_or_else(|| "embedded".to_owned(), |p| p.display().to_string());
        let busy = match self.busy_poll_us {
            0 => "off (need_wakeup)".to_owned(),
            us => format!(
                "{us} us, budget {}",
                self.busy_poll_budget.map_or_else(
                    || format!("{} (batch size)", self.batch_size),
                    |b| b.to_string()
                )
            ),
        };
        let tx_budget = match self.tx_budget {
            None => "the whole TX ring".to_owned(),
            Some(0) => "the kernel's 32".to_owned(),
            Some(n) => n.to_string(),
        };
        writeln!(f, "  xdp_attach:   {}", self.xdp_attach.name())?;
        writeln!(f, "  xdp_object:   {object}")?;
        writeln!(f, "  vlan_offload: {}", self.vlan_offload.name())?;
        writeln!(f, "  xdp_pin_dir:  {}", self.xdp_pin_dir.display())?;
        match self.metrics_listen {
            Some(a) => writeln!(f, "  metrics:      http://{a}/metrics")?,
            None => writeln!(f, "  metrics:      off")?,
        }
        match (&self.control, &self.control_group) {
            (None, _) => writeln!(f, "  control:      off")?,
            (Some(p), None) => writeln!(f, "  control:      {} (root only)", p.display())?,
            (Some(p), Some(g)) => {
                writeln!(f, "  control:      {} (root and group {g})", p.display())?
            }
        }
        writeln!(f, "  inline_max:   {} bytes", self.inline_max)?;
        writeln!(f, "  busy_poll:    {busy}")?;
        writeln!(f, "  tx_budget:    {tx_budget}")?;
        if !self.overrides.is_empty() {
            writeln!(f, "  environment:  {}", self.overrides.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn every_knob_is_set_from_the_environment_and_recorded() {
        let mut e = EngineConfig::default();
        e.apply_env(env(&[
            ("FANOUT_XDP_MODE", "generic"),
            ("FANOUT_EBPF_OBJ", "/tmp/x.o"),
            ("FANOUT_VLAN_OFFLOAD", "off"),
            ("FANOUT_XDP_PIN_DIR", "/run/fanout-bpf"),
            ("FANOUT_METRICS_LISTEN", "127.0.0.1:9464"),
            ("FANOUT_CONTROL", "/tmp/fanout.sock"),
            ("FANOUT_CONTROL_GROUP", "fanout"),
            ("FANOUT_XSK_INLINE", "0"),
            ("FANOUT_XSK_BUSY_POLL", "50"),
            ("FANOUT_XSK_BUSY_POLL_BUDGET", "16"),
            ("FANOUT_XSK_TX_BUDGET", " 64 "),
        ]))
        .unwrap();
        assert_eq!(e.xdp_attach, XdpAttach::Generic);
        assert_eq!(e.xdp_object, Some(PathBuf::from("/tmp/x.o")));
        assert_eq!(e.vlan_offload, VlanOffload::Off);
        assert_eq!(e.xdp_pin_dir, PathBuf::from("/run/fanout-bpf"));
        assert_eq!(e.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(e.control, Some(PathBuf::from("/tmp/fanout.sock")));
        assert_eq!(e.control_group.as_deref(), Some("fanout"));
        assert_eq!(
            (
                e.inline_max,
                e.busy_poll_us,
                e.busy_poll_budget,
                e.tx_budget
            ),
            (0, 50, Some(16), Some(64))
        );
        assert_eq!(e.overrides.len(), KNOBS.len());
        assert!(
            e.overrides.contains(&"FANOUT_XSK_INLINE=0".to_owned()),
            "{:?}",
            e.overrides
        );
        let shown = e.to_string();
        assert!(shown.contains("xdp_attach:   generic"), "{shown}");
        assert!(
            shown.contains("environment:  FANOUT_XDP_MODE=generic"),
            "{shown}"
        );
    }

    #[test]
    fn unset_and_empty_variables_leave_the_defaults() {
        let mut e = EngineConfig::default();
        e.apply_env(env(&[("FANOUT_XDP_MODE", "")])).unwrap();
        assert_eq!(e, EngineConfig::default());
        assert_eq!(e.inline_max, DEFAULT_INLINE_MAX);
        assert!(!e.to_string().contains("environment"));
    }

    #[test]
    fn bad_overrides_name_the_variable_the_value_and_the_reason() {
        for (var, value, reason) in [
            (
                "FANOUT_XDP_MODE",
                "fast",
                "expected auto, native or generic",
            ),
            ("FANOUT_XSK_INLINE", "129", "out of range (0..=128)"),
            ("FANOUT_XSK_INLINE", "lots", "expected an integer (0..=128)"),
            (
                "FANOUT_XSK_BUSY_POLL_BUDGET",
                "0",
                "out of range (1..=65535)",
            ),
        ] {
            let mut e = EngineConfig::default();
            let (knob, got, why) = e.apply_env(env(&[(var, value)])).unwrap_err();
            assert_eq!((knob.env, got.as_str(), why.as_str()), (var, value, reason));
        }
    }

    #[test]
    fn help_lists_every_override() {
        let help = env_help();
        for k in KNOBS {
            assert!(help.contains(k.env) && help.contains(k.field), "{help}");
        }
    }
}
