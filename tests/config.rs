//! `fanout check` end to end: the real binary on configuration files written
//! to a private temporary directory. Bad configurations exit with status 2 and
//! one message on stderr naming the file, line, field and value; a good one
//! (on `lo`, which every network namespace has) exits 0 and prints the plan.
//! No root needed, no traffic sent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use fanout::config::Config;
use fanout::plan::Plan;

/// A unique directory under the system temp dir, removed on drop (also when
/// the test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "fanout-test-config-{}-{n}-{test}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Line 1: `[[flow]]`, 2: name, 3: interface, 4: group, 5: port,
/// 7: `[[flow.output]]`, 8: unicast, 10: `[[flow.output]]`, 11: multicast.
const GOOD: &str = r#"[[flow]]
name = "iptv"
interface = "lo"
group = "239.10.0.1"
port = 5000

  [[flow.output]]
  unicast = "127.0.0.1:6001"

  [[flow.output]]
  multicast = "239.255.10.1:7000"
  interface = "lo"
  ttl = 4
"#;

fn check(path: &Path) -> Output {
    check_with_env(path, &[])
}

/// `fanout check --config path` with none of the `[engine]` overrides of
/// this process's environment (`cargo xtask test` sets `FANOUT_EBPF_OBJ`),
/// and with `env` set.
fn check_with_env(path: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.arg("check")
        .arg("--config")
        .arg(path)
        .env("RUST_LOG", "off");
    for knob in fanout::config::KNOBS {
        cmd.env_remove(knob.env);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

/// Writes `text` as `test.toml`, runs `fanout check` on it and asserts exit
/// status 2, nothing on stdout and exactly `error: <file>:<rest>` on stderr.
fn refused(test: &str, text: &str, rest: &str) {
    let dir = TempDir::new(test);
    let path = dir.0.join("fanout.toml");
    std::fs::write(&path, text).unwrap();
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(stderr, format!("error: {}:{rest}\n", path.display()));
}

fn replace(old: &str, new: &str) -> String {
    assert!(GOOD.contains(old), "{old}");
    GOOD.replacen(old, new, 1)
}

#[test]
fn good_config_on_lo_prints_the_plan() {
    let dir = TempDir::new("good");
    let path = dir.0.join("fanout.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    let index = nix::net::if_::if_nametoindex("lo").unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{}: OK", path.display()));
    assert_eq!(lines[1], "engine: mode auto, batch size 64");
    assert_eq!(lines[2], "  xdp_attach:   auto");
    assert_eq!(lines[3], "  xdp_object:   embedded");
    assert_eq!(lines[4], "  vlan_offload: keep");
    assert_eq!(lines[5], "  xdp_pin_dir:  /sys/fs/bpf/fanout");
    assert_eq!(lines[6], "  metrics:      off");
    assert_eq!(
        lines[7],
        "  control:      /run/fanout/fanout.sock (root only)"
    );
    assert_eq!(lines[8], "  inline_max:   86 bytes");
    assert_eq!(lines[9], "  busy_poll:    off (need_wakeup)");
    assert_eq!(lines[10], "  tx_budget:    the whole TX ring");
    let lines = [&lines[..2], &lines[11..]].concat();
    assert_eq!(lines[2], "flow \"iptv\": 239.10.0.1:5000");
    assert!(
        lines[3].starts_with(&format!("  ingress: lo (index {index}, mtu ")),
        "{stdout}"
    );
    assert_eq!(lines[4], "  vlan:    none (untagged)");
    assert_eq!(lines[5], "  source:  any");
    assert_eq!(lines[6], "  cap:     none");
    assert_eq!(lines[7], "  health:  auto");
    assert_eq!(lines[8], "  outputs: 2");
    assert_eq!(lines[9], "  - unicast 127.0.0.1:6001");
    assert_eq!(lines[10], "      egress:      by route");
    assert_eq!(lines[11], "      source port: auto");
    assert_eq!(lines[12], "      ttl:         64");
    assert_eq!(lines[13], "  - multicast 239.255.10.1:7000");
    assert!(
        lines[14].starts_with(&format!("      egress:      lo (index {index}, mtu ")),
        "{stdout}"
    );
    assert_eq!(lines[15], "      source port: auto");
    assert_eq!(lines[16], "      ttl:         4");
    // Each flow's engine: lo has no MAC, so XDP cannot build the replicas'
    // Ethernet headers and `mode = "auto"` runs the flow on sockets.
    assert_eq!(
        lines[17],
        "engines (mode = \"auto\": XDP for each flow it can serve (if the program attaches), \
         sockets for the rest):"
    );
    assert_eq!(
        lines[18],
        "  flow \"iptv\": socket (XDP refused: flow \"iptv\" output \"unicast 127.0.0.1:6001\": \
         egress interface lo has no MAC address)"
    );
    assert_eq!(lines.len(), 19, "{stdout}");

    // The whole output is the library's rendering of the same plan (read
    // without this process's environment).
    let config = Config::parse(GOOD, &path).unwrap();
    let plan = Plan::resolve(&config).unwrap();
    let engines = fanout::runtime::preview(&plan);
    assert_eq!(stdout, format!("{}: OK\n{plan}{engines}", path.display()));
}

/// An environment override is shown by `fanout check`; a bad one is a bad
/// configuration: exit 2, the variable, the value and the reason.
#[test]
fn environment_overrides_are_shown_and_bad_ones_refused() {
    let dir = TempDir::new("env");
    let path = dir.0.join("fanout.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = check_with_env(
        &path,
        &[("FANOUT_XSK_INLINE", "0"), ("FANOUT_XDP_MODE", "generic")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\n  xdp_attach:   generic\n"), "{stdout}");
    assert!(stdout.contains("\n  inline_max:   0 bytes\n"), "{stdout}");
    assert!(
        stdout.contains("\n  environment:  FANOUT_XDP_MODE=generic FANOUT_XSK_INLINE=0\n"),
        "{stdout}"
    );

    let out = check_with_env(&path, &[("FANOUT_XSK_TX_BUDGET", "all")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: environment: FANOUT_XSK_TX_BUDGET=\"all\" (overrides [engine] tx_budget): \
         expected an integer (0..=1048576)\n"
    );
}

#[test]
fn bad_group() {
    refused(
        "bad-group",
        &replace("group = \"239.10.0.1\"", "group = \"239.10.0\""),
        "4: flow[0].group = \"239.10.0\": not an IP address",
    );
    refused(
        "control-group",
        &replace("group = \"239.10.0.1\"", "group = \"224.0.0.5\""),
        "4: flow[0].group = \"224.0.0.5\": 224.0.0.5 is in 224.0.0.0/24, reserved for \
         link-local control traffic (IGMP, OSPF, mDNS...) that routers never forward",
    );
}

#[test]
fn unknown_interface() {
    refused(
        "unknown-ingress",
        &replace(
            "interface = \"lo\"\ngroup",
            "interface = \"fo-nope0\"\ngroup",
        ),
        "3: flow[0].interface = \"fo-nope0\": no such interface",
    );
    refused(
        "unknown-egress",
        &replace(
            "  interface = \"lo\"\n  ttl",
            "  interface = \"fo-nope1\"\n  ttl",
        ),
        "12: flow[0].output[1].interface = \"fo-nope1\": no such interface",
    );
}

#[test]
fn port_out_of_range() {
    refused(
        "port-70000",
        &replace("port = 5000", "port = 70000"),
        "5: flow[0].port = 70000: out of range (1..=65535)",
    );
    refused(
        "port-0",
        &replace("port = 5000", "port = 0"),
        "5: flow[0].port = 0: out of range (1..=65535)",
    );
    refused(
        "dest-port-70000",
        &replace("127.0.0.1:6001", "127.0.0.1:70000"),
        "8: flow[0].output[0].unicast = \"127.0.0.1:70000\": port 70000 is out of range (1..=65535)",
    );
    refused(
        "dest-port-0",
        &replace("127.0.0.1:6001", "127.0.0.1:0"),
        "8: flow[0].output[0].unicast = \"127.0.0.1:0\": port 0 is not allowed (1..=65535)",
    );
}

#[test]
fn missing_field() {
    refused(
        "missing-port",
        &replace("port = 5000\n", ""),
        "1: flow[0].port: missing (required)",
    );
    refused(
        "missing-mc-interface",
        &replace("  interface = \"lo\"\n  ttl", "  ttl"),
        "10: flow[0].output[1].interface: \
         missing (required for multicast outputs: the egress interface)",
    );
}

#[test]
fn unknown_field() {
    refused(
        "unknown-field",
        &replace("port = 5000", "port = 5000\nttl = 3"),
        "6: flow[0].ttl: unknown field \
         (expected one of: name, interface, group, port, vlan, outer_vlan, source, max_pps, max_mbps, health, output)",
    );
}

#[test]
fn bad_rate_cap() {
    refused(
        "bad-rate-cap",
        &replace("port = 5000", "port = 5000\nmax_mbps = 0"),
        "6: flow[0].max_mbps = 0: out of range (more than 0, at most 1000000)",
    );
}

#[test]
fn bad_vlan() {
    refused(
        "vlan-4095",
        &replace("port = 5000", "port = 5000\nvlan = 4095"),
        "6: flow[0].vlan = 4095: out of range (1..=4094)",
    );
    refused(
        "vlan-string",
        &replace("port = 5000", "port = 5000\nvlan = \"100\""),
        "6: flow[0].vlan = \"100\": expected an integer (1..=4094), found string",
    );
}

#[test]
fn toml_syntax_error() {
    let dir = TempDir::new("syntax");
    let path = dir.0.join("fanout.toml");
    std::fs::write(&path, replace("port = 5000", "port = = 5000")).unwrap();
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let prefix = format!("error: {}:5:8: TOML syntax error: ", path.display());
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing-file");
    let path = dir.0.join("absent.toml");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {}: cannot read the configuration: No such file or directory (os error 2)\n",
            path.display()
        )
    );
}

/// `fanout xdp` on bad input, which needs no privileges: exit 2 and one
/// message naming what is wrong; nothing pinned is said (`status` exits 3,
/// `detach` has nothing to do).
#[test]
fn fanout_xdp_refuses_bad_input() {
    let dir = TempDir::new("xdp");
    let path = dir.0.join("lo.toml");
    std::fs::write(&path, GOOD).unwrap();
    let pins = dir.0.join("pins");
    let xdp = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
            .arg("xdp")
            .args(args)
            .env("FANOUT_XDP_PIN_DIR", &pins)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let config = path.to_str().unwrap();
    assert_eq!(
        xdp(&["attach", "--interface", "a/b", "--config", config]),
        (
            Some(2),
            String::new(),
            "error: invalid interface name \"a/b\"\n".to_owned()
        )
    );
    assert_eq!(
        xdp(&["attach", "--interface", "eth7", "--config", config]),
        (
            Some(2),
            String::new(),
            format!("error: {config}: no flow arrives on eth7 (flows arrive on: lo)\n")
        )
    );
    let missing = dir.0.join("missing.toml");
    let (code, out, err) = xdp(&["attach", "-i", "lo", "-c", missing.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: {}: cannot read the configuration",
            missing.display()
        )),
        "{err}"
    );
    assert_eq!(
        xdp(&["status", "--config", config]),
        (
            Some(3),
            format!("no program pinned under {}\n", pins.display()),
            String::new()
        )
    );
    assert_eq!(
        xdp(&["detach", "-i", "lo", "-c", config]),
        (
            Some(0),
            format!(
                "nothing pinned for lo under {}/lo: nothing to remove\n",
                pins.display()
            ),
            String::new()
        )
    );
}
