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
//!
//! Its parts: `types` (the validated configuration and its [`Error`]),
//! `options` (the `[engine]` table: the engine and its tuning knobs, with
//! their environment overrides), `validate` (the rules, field by field, and
//! [`Config::load`]) and `toml` (the reader of the spanned tree that gives
//! every error its line).

pub mod edit;
mod options;
mod toml;
mod types;
mod validate;

pub use self::options::{
    BATCH_SIZE_RANGE, DEFAULT_BATCH_SIZE, EngineConfig, KNOBS, Kind, Knob, Mode, Value,
    VlanOffload, XdpAttach, env_help,
};
pub use self::types::{
    Config, DEFAULT_MULTICAST_TTL, DEFAULT_UNICAST_TTL, Error, FlowConfig, Located, Location,
    MAX_INTERFACE_NAME, MAX_NAME, OutputConfig, OutputKind,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, SocketAddr};
    use std::path::Path;

    const FILE: &str = "/etc/fanout.toml";

    /// Line 2: `[[flow]]`, 3: name, 4: interface, 5: group, 6: port,
    /// 8: `[[flow.output]]`, 9: unicast.
    const GOOD: &str = r#"
[[flow]]
name = "f"
interface = "in0"
group = "239.1.1.1"
port = 5000

  [[flow.output]]
  unicast = "10.0.0.2:6000"
"#;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new(FILE))
    }

    /// The complete message for a configuration that must be refused.
    fn err(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("accepted: {config:#?}\n{text}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{e}");
                e.to_string()
            }
        }
    }

    /// GOOD with one line replaced (the line must exist).
    fn with(old: &str, new: &str) -> String {
        assert!(GOOD.contains(old), "{old}");
        GOOD.replacen(old, new, 1)
    }

    fn output(extra: &str) -> String {
        format!("{GOOD}\n  [[flow.output]]\n{extra}\n")
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.path, Path::new(FILE));
        assert_eq!(
            c.engine,
            EngineConfig {
                mode: Mode::Auto,
                batch_size: 64,
                ..EngineConfig::default()
            }
        );
        assert_eq!(c.flows.len(), 1);
        let f = &c.flows[0];
        assert_eq!(f.name, "f");
        assert_eq!(
            f.interface,
            Located {
                value: "in0".to_owned(),
                line: 4
            }
        );
        assert_eq!(f.group, "239.1.1.1".parse::<IpAddr>().unwrap());
        assert_eq!((f.port, f.vlan, f.source, f.line), (5000, None, None, 2));
        assert_eq!(f.outputs.len(), 1);
        let o = &f.outputs[0];
        assert_eq!(o.name, "unicast 10.0.0.2:6000");
        assert_eq!(o.kind, OutputKind::Unicast);
        assert_eq!(o.dest, "10.0.0.2:6000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            (o.interface.clone(), o.source_port, o.ttl, o.line),
            (None, None, 64, 8)
        );
    }

    #[test]
    fn full_config_is_read_field_by_field() {
        let text = r#"
[engine]
mode = "xdp"
batch_size = 1024

[[flow]]
name = "v6"
interface = "in0"
group = "ff3e::1"
port = 0xffff
vlan = 4094
source = "2001:db8::1"

  [[flow.output]]
  name = "sub"
  unicast = "[2001:db8::2]:1"
  interface = "out0"
  source_port = 65535
  ttl = 1

  [[flow.output]]
  multicast = "[ff3e::2]:7000"
  interface = "out1"
"#;
        let c = parse(text).unwrap();
        assert_eq!(
            c.engine,
            EngineConfig {
                mode: Mode::Xdp,
                batch_size: 1024,
                ..EngineConfig::default()
            }
        );
        let f = &c.flows[0];
        assert_eq!(f.group, "ff3e::1".parse::<IpAddr>().unwrap());
        assert_eq!((f.port, f.vlan), (65535, Some(4094)));
        assert_eq!(f.source, Some("2001:db8::1".parse().unwrap()));
        let [u, m] = &f.outputs[..] else {
            panic!("{f:?}")
        };
        assert_eq!(u.name, "sub");
        assert_eq!(u.dest, "[2001:db8::2]:1".parse::<SocketAddr>().unwrap());
        assert_eq!(
            u.interface,
            Some(Located {
                value: "out0".to_owned(),
                line: 17
            })
        );
        assert_eq!((u.source_port, u.ttl, u.line), (Some(65535), 1, 14));
        assert_eq!(m.name, "multicast [ff3e::2]:7000");
        assert_eq!(m.kind, OutputKind::Multicast);
        assert_eq!(
            m.interface,
            Some(Located {
                value: "out1".to_owned(),
                line: 23
            })
        );
        assert_eq!((m.source_port, m.ttl, m.line), (None, 16, 21));
    }

    #[test]
    fn example_file_is_valid() {
        let c = parse(include_str!("../../fanout.example.toml")).unwrap();
        assert_eq!(c.flows.len(), 2);
        assert_eq!(c.flows[0].outputs.len(), 3);
        assert_eq!(c.flows[1].outputs.len(), 2);
        assert_eq!(c.flows[1].vlan, Some(100));
    }

    #[test]
    fn engine_rules() {
        let e = |body: &str| err(&format!("[engine]\n{body}\n{GOOD}"));
        assert_eq!(
            e("mode = \"fast\""),
            "error: /etc/fanout.toml:2: engine.mode = \"fast\": expected auto, xdp or socket"
        );
        assert_eq!(
            e("mode = 1"),
            "error: /etc/fanout.toml:2: engine.mode = 1: expected a string, found integer"
        );
        assert_eq!(
            e("batch_size = 0"),
            "error: /etc/fanout.toml:2: engine.batch_size = 0: out of range (1..=1024)"
        );
        assert_eq!(
            e("batch_size = 1025"),
            "error: /etc/fanout.toml:2: engine.batch_size = 1025: out of range (1..=1024)"
        );
        assert_eq!(
            e("batch_size = \"64\""),
            "error: /etc/fanout.toml:2: engine.batch_size = \"64\": \
             expected an integer (1..=1024), found string"
        );
        assert_eq!(
            e("threads = 4"),
            "error: /etc/fanout.toml:2: engine.threads: \
             unknown field (expected one of: mode, batch_size, xdp_attach, xdp_object, vlan_offload, \
             xdp_pin_dir, metrics_listen, control, control_group, inline_max, busy_poll_us, busy_poll_budget, \
             tx_budget)"
        );
        for (mode, want) in [
            ("auto", Mode::Auto),
            ("xdp", Mode::Xdp),
            ("socket", Mode::Socket),
        ] {
            let c = parse(&format!("[engine]\nmode = \"{mode}\"\n{GOOD}")).unwrap();
            assert_eq!(c.engine.mode, want);
        }
        assert_eq!(
            err(&format!("engine = 3\n{GOOD}")),
            "error: /etc/fanout.toml:1: engine = 3: expected a table, found integer"
        );
    }

    /// `max_pps` is a whole number of datagrams per second; `max_mbps` an
    /// integer or a float of megabits (10^6) per second; both more than 0.
    #[test]
    fn rate_caps() {
        use crate::rate::RateCap;
        let cap = |lines: &str| parse(&with("port = 5000", &format!("port = 5000\n{lines}")));
        assert_eq!(parse(GOOD).unwrap().flows[0].cap, RateCap::default());
        assert_eq!(
            cap("max_pps = 20_000\nmax_mbps = 2.5").unwrap().flows[0].cap,
            RateCap {
                max_pps: Some(20_000),
                max_bps: Some(2_500_000)
            }
        );
        assert_eq!(
            cap("max_mbps = 40").unwrap().flows[0].cap,
            RateCap {
                max_pps: None,
                max_bps: Some(40_000_000)
            }
        );
        let bad = |lines: &str| err(&with("port = 5000", &format!("port = 5000\n{lines}")));
        assert_eq!(
            bad("max_pps = 0"),
            "error: /etc/fanout.toml:7: flow[0].max_pps = 0: out of range (1..=1000000000)"
        );
        assert_eq!(
            bad("max_pps = 1.5"),
            "error: /etc/fanout.toml:7: flow[0].max_pps = 1.5: expected an integer \
             (1..=1000000000), found float"
        );
        assert_eq!(
            bad("max_mbps = 0.0"),
            "error: /etc/fanout.toml:7: flow[0].max_mbps = 0.0: out of range \
             (more than 0, at most 1000000)"
        );
        assert_eq!(
            bad("max_mbps = -3"),
            "error: /etc/fanout.toml:7: flow[0].max_mbps = -3: out of range \
             (more than 0, at most 1000000)"
        );
        assert_eq!(
            bad("max_mbps = nan"),
            "error: /etc/fanout.toml:7: flow[0].max_mbps = nan: out of range \
             (more than 0, at most 1000000)"
        );
        assert_eq!(
            bad("max_mbps = \"10M\""),
            "error: /etc/fanout.toml:7: flow[0].max_mbps = \"10M\": expected a number \
             (more than 0, at most 1000000), found string"
        );
    }

    /// `health` is one of auto (the default), rtp, ts and off.
    #[test]
    fn stream_health_modes() {
        use crate::health::HealthMode;
        let flow = |lines: &str| parse(&with("port = 5000", &format!("port = 5000\n{lines}")));
        assert_eq!(parse(GOOD).unwrap().flows[0].health, HealthMode::Auto);
        for (v, want) in [
            ("auto", HealthMode::Auto),
            ("rtp", HealthMode::Rtp),
            ("ts", HealthMode::Ts),
            ("off", HealthMode::Off),
        ] {
            let c = flow(&format!("health = \"{v}\"")).unwrap();
            assert_eq!(c.flows[0].health, want);
        }
        let bad = |lines: &str| err(&with("port = 5000", &format!("port = 5000\n{lines}")));
        assert_eq!(
            bad("health = \"mpegts\""),
            "error: /etc/fanout.toml:7: flow[0].health = \"mpegts\": expected auto, rtp, ts or off"
        );
        assert_eq!(
            bad("health = true"),
            "error: /etc/fanout.toml:7: flow[0].health = true: expected a string, found boolean"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        assert_eq!(
            err(&format!("verbose = true\n{GOOD}")),
            "error: /etc/fanout.toml:1: verbose: unknown field (expected one of: engine, flow)"
        );
        assert_eq!(
            err(&with("port = 5000", "port = 5000\nprot = 1")),
            "error: /etc/fanout.toml:7: flow[0].prot: unknown field \
             (expected one of: name, interface, group, port, vlan, outer_vlan, source, max_pps, max_mbps, health, output)"
        );
        assert_eq!(
            err(&output(
                "  multicast = \"239.2.2.2:1\"\n  interface = \"o\"\n  tll = 3"
            )),
            "error: /etc/fanout.toml:14: flow[0].output[1].tll: unknown field \
             (expected one of: unicast, multicast, interface, vlan, source_port, ttl, name)"
        );
    }

    #[test]
    fn flows_and_outputs_are_required() {
        assert_eq!(
            err(""),
            "error: /etc/fanout.toml: flow: missing: at least one [[flow]] table is required"
        );
        assert_eq!(
            err("flow = []"),
            "error: /etc/fanout.toml:1: flow = []: at least one [[flow]] table is required"
        );
        assert_eq!(
            err("[flow]\nname = \"x\""),
            "error: /etc/fanout.toml:1: flow = [flow]: expected [[flow]] tables, found table"
        );
        let no_output = &GOOD[..GOOD.find("  [[flow.output]]").unwrap()];
        assert_eq!(
            err(no_output),
            "error: /etc/fanout.toml:2: flow[0].output: \
             missing: at least one [[flow.output]] table is required"
        );
        assert_eq!(
            err("flow = [1]"),
            "error: /etc/fanout.toml:1: flow[0] = 1: expected a table, found integer"
        );
    }

    #[test]
    fn missing_flow_fields_name_the_flow_header_line() {
        for (line, field) in [
            ("name = \"f\"", "name"),
            ("interface = \"in0\"", "interface"),
            ("group = \"239.1.1.1\"", "group"),
            ("port = 5000", "port"),
        ] {
            assert_eq!(
                err(&with(line, "")),
                format!("error: /etc/fanout.toml:2: flow[0].{field}: missing (required)")
            );
        }
    }

    #[test]
    fn group_must_be_a_forwardable_multicast_group() {
        let g = |v: &str| err(&with("group = \"239.1.1.1\"", &format!("group = {v}")));
        let at = "error: /etc/fanout.toml:5: flow[0].group";
        assert_eq!(
            g("\"239.1.1\""),
            format!("{at} = \"239.1.1\": not an IP address")
        );
        assert_eq!(
            g("239"),
            format!("{at} = 239: expected a string, found integer")
        );
        assert_eq!(
            g("\"10.1.1.1\""),
            format!("{at} = \"10.1.1.1\": not a multicast group (10.1.1.1 is not in 224.0.0.0/4)")
        );
        assert_eq!(
            g("\"224.0.0.251\""),
            format!(
                "{at} = \"224.0.0.251\": 224.0.0.251 is in 224.0.0.0/24, reserved for \
                 link-local control traffic (IGMP, OSPF, mDNS...) that routers never forward"
            )
        );
        assert_eq!(
            g("\"2001:db8::1\""),
            format!(
                "{at} = \"2001:db8::1\": not a multicast group (2001:db8::1 is not in ff00::/8)"
            )
        );
        assert_eq!(
            g("\"ff01::5\""),
            format!(
                "{at} = \"ff01::5\": ff01::5 is interface-local (scope 1): it never appears on a link"
            )
        );
        assert_eq!(
            g("\"ff00::5\""),
            format!("{at} = \"ff00::5\": ff00::5 has a reserved multicast scope")
        );
        assert_eq!(
            g("\"ff02::1\""),
            format!(
                "{at} = \"ff02::1\": ff02::1 is the all-nodes or all-routers group, \
                 used for control traffic"
            )
        );
        // Edges that are fine.
        for ok in [
            "224.0.1.1",
            "239.255.255.255",
            "232.1.1.1",
            "ff02::1234",
            "ff3e::8000:1",
        ] {
            let text = with("group = \"239.1.1.1\"", &format!("group = \"{ok}\""));
            let text = if ok.contains(':') {
                text.replace("10.0.0.2:6000", "[2001:db8::2]:6000")
            } else {
                text
            };
            assert_eq!(
                parse(&text).unwrap().flows[0].group,
                ok.parse::<IpAddr>().unwrap()
            );
        }
    }

    #[test]
    fn port_range() {
        let p = |v: &str| err(&with("port = 5000", &format!("port = {v}")));
        let at = "error: /etc/fanout.toml:6: flow[0].port";
        assert_eq!(p("0"), format!("{at} = 0: out of range (1..=65535)"));
        assert_eq!(
            p("70000"),
            format!("{at} = 70000: out of range (1..=65535)")
        );
        assert_eq!(p("-1"), format!("{at} = -1: out of range (1..=65535)"));
        assert_eq!(
            p("99999999999999999999"),
            format!("{at} = 99999999999999999999: out of range (1..=65535)")
        );
        assert_eq!(
            p("\"5000\""),
            format!("{at} = \"5000\": expected an integer (1..=65535), found string")
        );
        assert_eq!(
            p("5000.0"),
            format!("{at} = 5000.0: expected an integer (1..=65535), found float")
        );
        let c = parse(&with("port = 5000", "port = 65_535")).unwrap();
        assert_eq!(c.flows[0].port, 65535);
    }

    #[test]
    fn vlan_range() {
        let v = |v: &str| err(&with("port = 5000", &format!("port = 5000\nvlan = {v}")));
        let at = "error: /etc/fanout.toml:7: flow[0].vlan";
        assert_eq!(v("0"), format!("{at} = 0: out of range (1..=4094)"));
        assert_eq!(v("4095"), format!("{at} = 4095: out of range (1..=4094)"));
        assert_eq!(
            v("\"100\""),
            format!("{at} = \"100\": expected an integer (1..=4094), found string")
        );
        let c = parse(&with("port = 5000", "port = 5000\nvlan = 1")).unwrap();
        assert_eq!(c.flows[0].vlan, Some(1));
    }

    #[test]
    fn outer_vlan_needs_vlan_and_a_range() {
        let v = |extra: &str| err(&with("port = 5000", &format!("port = 5000\n{extra}")));
        assert_eq!(
            v("outer_vlan = 7"),
            "error: /etc/fanout.toml:7: flow[0].outer_vlan = 7: needs `vlan` too: outer_vlan is \
             the outer (S-VLAN) tag of a double-tagged stream, vlan its inner (C-VLAN) tag"
        );
        assert_eq!(
            v("vlan = 100\nouter_vlan = 4095"),
            "error: /etc/fanout.toml:8: flow[0].outer_vlan = 4095: out of range (1..=4094)"
        );
        let c = parse(&with(
            "port = 5000",
            "port = 5000\nvlan = 100\nouter_vlan = 7",
        ))
        .unwrap();
        assert_eq!(
            (c.flows[0].vlan, c.flows[0].outer_vlan),
            (Some(100), Some(7))
        );
    }

    #[test]
    fn tagged_outputs_need_an_interface() {
        let out = |extra: &str| {
            format!(
                "[[flow]]\nname = \"f\"\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\n\
                 port = 5000\n\n  [[flow.output]]\n  unicast = \"10.0.0.9:6000\"\n{extra}"
            )
        };
        assert_eq!(
            err(&out("  vlan = 100\n")),
            "error: /etc/fanout.toml:9: flow[0].output[0].vlan = 100: needs `interface`: the \
             replicas leave tagged on that interface"
        );
        assert!(
            err(&out("  interface = \"eth1\"\n  vlan = 0\n")).contains("out of range (1..=4094)")
        );
        let c = parse(&out("  interface = \"eth1\"\n  vlan = 100\n")).unwrap();
        assert_eq!(c.flows[0].outputs[0].vlan, Some(100));
        // The same group on two VLANs of one interface is two outputs; a
        // tagged re-emission of the flow's own stream on its VLAN is a loop.
        let two = out(
            "  interface = \"eth1\"\n  vlan = 100\n\n  [[flow.output]]\n  multicast = \
             \"239.2.2.2:7000\"\n  interface = \"eth1\"\n  vlan = 7\n  name = \"v7\"\n\n  \
             [[flow.output]]\n  multicast = \"239.2.2.2:7000\"\n  interface = \"eth1\"\n  \
             vlan = 8\n  name = \"v8\"\n",
        );
        assert_eq!(parse(&two).unwrap().flows[0].outputs.len(), 3);
        let looped = "[[flow]]\nname = \"f\"\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\n\
                      port = 5000\nvlan = 9\n\n  [[flow.output]]\n  multicast = \"239.1.1.1:5000\"\n  \
                      interface = \"eth0\"\n  vlan = 9\n";
        assert!(err(looped).contains("a forwarding loop"), "{}", err(looped));
    }

    #[test]
    fn qinq_and_single_tagged_flows_of_one_group_are_two_flows() {
        let flow = |name: &str, tags: &str| {
            format!(
                "[[flow]]\nname = \"{name}\"\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\n\
                 port = 5000\n{tags}\n  [[flow.output]]\n  unicast = \"10.0.0.9:6000\"\n"
            )
        };
        let two = flow("a", "vlan = 100") + &flow("b", "vlan = 100\nouter_vlan = 7");
        assert_eq!(parse(&two).unwrap().flows.len(), 2);
        let dup =
            flow("a", "vlan = 100\nouter_vlan = 7") + &flow("b", "vlan = 100\nouter_vlan = 7");
        assert!(err(&dup).contains("duplicate flow"), "{}", err(&dup));
    }

    #[test]
    fn source_must_be_unicast_of_the_group_family() {
        let s = |v: &str| {
            err(&with(
                "port = 5000",
                &format!("port = 5000\nsource = \"{v}\""),
            ))
        };
        let at = "error: /etc/fanout.toml:7: flow[0].source";
        assert_eq!(s("10.1"), format!("{at} = \"10.1\": not an IP address"));
        assert_eq!(
            s("239.1.1.2"),
            format!("{at} = \"239.1.1.2\": 239.1.1.2 is a multicast group, not a unicast address")
        );
        assert_eq!(
            s("0.0.0.0"),
            format!("{at} = \"0.0.0.0\": 0.0.0.0 is the unspecified address")
        );
        assert_eq!(
            s("255.255.255.255"),
            format!("{at} = \"255.255.255.255\": 255.255.255.255 is the broadcast address")
        );
        assert_eq!(
            s("2001:db8::1"),
            format!(
                "{at} = \"2001:db8::1\": source is IPv6 but the flow's group 239.1.1.1 is IPv4"
            )
        );
        let c = parse(&with("port = 5000", "port = 5000\nsource = \"10.9.9.9\"")).unwrap();
        assert_eq!(c.flows[0].source, Some("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn names_and_interface_names_are_checked_for_shape() {
        let at = "error: /etc/fanout.toml";
        assert_eq!(
            err(&with("name = \"f\"", "name = \"\"")),
            format!("{at}:3: flow[0].name = \"\": must not be empty")
        );
        assert_eq!(
            err(&with("name = \"f\"", "name = \"a\\tb\"")),
            format!("{at}:3: flow[0].name = \"a\\tb\": must not contain control characters")
        );
        let long = "n".repeat(65);
        assert_eq!(
            err(&with("name = \"f\"", &format!("name = \"{long}\""))),
            format!(
                "{at}:3: flow[0].name = \"{}...: too long (at most 64 characters)",
                &long[..56]
            )
        );
        assert_eq!(
            err(&with(
                "interface = \"in0\"",
                "interface = \"a-very-long-ifname\""
            )),
            format!(
                "{at}:4: flow[0].interface = \"a-very-long-ifname\": \
                 not a valid interface name (at most 15 bytes)"
            )
        );
        assert_eq!(
            err(&with("interface = \"in0\"", "interface = \"../x\"")),
            format!("{at}:4: flow[0].interface = \"../x\": not a valid interface name")
        );
        assert_eq!(
            err(&output("  unicast = \"10.0.0.3:1\"\n  interface = \"a b\"")),
            format!("{at}:13: flow[0].output[1].interface = \"a b\": not a valid interface name")
        );
    }

    #[test]
    fn output_needs_exactly_one_destination() {
        let at = "error: /etc/fanout.toml:11: flow[0].output[1]";
        assert_eq!(
            err(&output(
                "  unicast = \"10.0.0.3:1\"\n  multicast = \"239.2.2.2:1\""
            )),
            format!(
                "{at}: exactly one of `unicast` or `multicast` is allowed per output, not both"
            )
        );
        assert_eq!(
            err(&output("  ttl = 3")),
            format!(
                "{at}: missing destination: set `unicast = \"ip:port\"` or \
                 `multicast = \"group:port\"`"
            )
        );
    }

    #[test]
    fn unicast_destination_rules() {
        let u = |v: &str| err(&output(&format!("  unicast = {v}")));
        let at = "error: /etc/fanout.toml:12: flow[0].output[1].unicast";
        assert_eq!(
            u("\"10.0.0.3\""),
            format!("{at} = \"10.0.0.3\": missing :port (expected ip:port)")
        );
        assert_eq!(
            u("\"host:80\""),
            format!("{at} = \"host:80\": \"host\" is not an IP address (expected ip:port)")
        );
        assert_eq!(
            u("\"nonsense\""),
            format!("{at} = \"nonsense\": not an ip:port address")
        );
        assert_eq!(
            u("\"10.0.0.3:0\""),
            format!("{at} = \"10.0.0.3:0\": port 0 is not allowed (1..=65535)")
        );
        assert_eq!(
            u("\"10.0.0.3:70000\""),
            format!("{at} = \"10.0.0.3:70000\": port 70000 is out of range (1..=65535)")
        );
        assert_eq!(
            u("\"10.0.0.3:http\""),
            format!("{at} = \"10.0.0.3:http\": \"http\" is not a port number (expected ip:port)")
        );
        assert_eq!(
            u("\"239.2.2.2:1\""),
            format!(
                "{at} = \"239.2.2.2:1\": 239.2.2.2 is a multicast group: use `multicast = ...` for a re-emission"
            )
        );
        assert_eq!(
            u("\"0.0.0.0:1\""),
            format!("{at} = \"0.0.0.0:1\": 0.0.0.0 is the unspecified address")
        );
        assert_eq!(
            u("\"255.255.255.255:1\""),
            format!("{at} = \"255.255.255.255:1\": 255.255.255.255 is the broadcast address")
        );
        assert_eq!(
            u("\"[2001:db8::2]:1\""),
            format!(
                "{at} = \"[2001:db8::2]:1\": unicast destination is IPv6 but the flow's group \
                 239.1.1.1 is IPv4"
            )
        );
        assert_eq!(
            u("6000"),
            format!("{at} = 6000: expected a string, found integer")
        );
    }

    #[test]
    fn ipv6_destination_syntax() {
        let v6 = |dest: &str| {
            let text = with("group = \"239.1.1.1\"", "group = \"ff3e::1\"")
                .replace("\"10.0.0.2:6000\"", dest);
            parse(&text)
        };
        let at = "error: /etc/fanout.toml:9: flow[0].output[0].unicast";
        let msg = |dest| v6(dest).unwrap_err().to_string();
        assert_eq!(
            msg("\"2001:db8::2\""),
            format!("{at} = \"2001:db8::2\": missing port: write IPv6 as [address]:port")
        );
        assert_eq!(
            msg("\"2001:db8::2:6000:1\""),
            format!("{at} = \"2001:db8::2:6000:1\": missing port: write IPv6 as [address]:port")
        );
        assert_eq!(
            msg("\"2001:db8::g:6000\""),
            format!(
                "{at} = \"2001:db8::g:6000\": not an ip:port address (write IPv6 as [address]:port)"
            )
        );
        assert_eq!(
            msg("\"[fe80::1%2]:6000\""),
            format!(
                "{at} = \"[fe80::1%2]:6000\": write the address without %scope; set `interface` instead"
            )
        );
        assert_eq!(
            msg("\"[fe80::1]:6000\""),
            format!(
                "{at} = \"[fe80::1]:6000\": a link-local destination needs `interface` (the egress link)"
            )
        );
        assert_eq!(
            msg("\"[::]:6000\""),
            format!("{at} = \"[::]:6000\": :: is the unspecified address")
        );
        let ok = v6("\"[2001:db8::2]:6000\"").unwrap();
        assert_eq!(
            ok.flows[0].outputs[0].dest,
            "[2001:db8::2]:6000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn multicast_output_rules() {
        let m = |body: &str| err(&output(body));
        let at = "error: /etc/fanout.toml";
        assert_eq!(
            m("  multicast = \"239.2.2.2:7000\""),
            format!(
                "{at}:11: flow[0].output[1].interface: \
                 missing (required for multicast outputs: the egress interface)"
            )
        );
        assert_eq!(
            m("  multicast = \"10.0.0.3:7000\"\n  interface = \"o\""),
            format!(
                "{at}:12: flow[0].output[1].multicast = \"10.0.0.3:7000\": \
                 not a multicast group (10.0.0.3 is not in 224.0.0.0/4)"
            )
        );
        assert_eq!(
            m("  multicast = \"224.0.0.9:520\"\n  interface = \"o\""),
            format!(
                "{at}:12: flow[0].output[1].multicast = \"224.0.0.9:520\": 224.0.0.9 is in \
                 224.0.0.0/24, reserved for link-local control traffic (IGMP, OSPF, mDNS...) \
                 that routers never forward"
            )
        );
        assert_eq!(
            m("  multicast = \"[ff3e::1]:7000\"\n  interface = \"o\""),
            format!(
                "{at}:12: flow[0].output[1].multicast = \"[ff3e::1]:7000\": \
                 multicast destination is IPv6 but the flow's group 239.1.1.1 is IPv4"
            )
        );
        assert_eq!(
            m("  multicast = \"239.1.1.1:5000\"\n  interface = \"in0\""),
            format!(
                "{at}:12: flow[0].output[1].multicast = \"239.1.1.1:5000\": re-emits the flow's \
                 own group and port on its ingress interface (a forwarding loop)"
            )
        );
        // The same group on another interface, or another port, is fine.
        for body in [
            "  multicast = \"239.1.1.1:5000\"\n  interface = \"out1\"",
            "  multicast = \"239.1.1.1:5001\"\n  interface = \"in0\"",
        ] {
            let c = parse(&output(body)).unwrap();
            let o = &c.flows[0].outputs[1];
            assert_eq!(
                (o.kind, o.ttl),
                (OutputKind::Multicast, DEFAULT_MULTICAST_TTL)
            );
        }
    }

    #[test]
    fn output_numbers() {
        let o = |body: &str| err(&output(&format!("  unicast = \"10.0.0.3:1\"\n{body}")));
        let at = "error: /etc/fanout.toml:13: flow[0].output[1]";
        assert_eq!(
            o("  ttl = 0"),
            format!("{at}.ttl = 0: out of range (1..=255)")
        );
        assert_eq!(
            o("  ttl = 256"),
            format!("{at}.ttl = 256: out of range (1..=255)")
        );
        assert_eq!(
            o("  source_port = 0"),
            format!("{at}.source_port = 0: out of range (1..=65535)")
        );
        assert_eq!(
            o("  source_port = 65536"),
            format!("{at}.source_port = 65536: out of range (1..=65535)")
        );
        let c = parse(&output(
            "  unicast = \"10.0.0.3:1\"\n  ttl = 255\n  source_port = 1",
        ))
        .unwrap();
        let out = &c.flows[0].outputs[1];
        assert_eq!((out.ttl, out.source_port), (255, Some(1)));
    }

    #[test]
    fn duplicate_outputs() {
        let at = "error: /etc/fanout.toml";
        assert_eq!(
            err(&output(
                "  unicast = \"10.0.0.2:6000\"\n  interface = \"out0\""
            )),
            format!(
                "{at}:12: flow[0].output[1].unicast = \"10.0.0.2:6000\": duplicate output: \
                 the same destination as flow[0].output[0] (line 8)"
            )
        );
        let two_named = format!(
            "{}\n  name = \"a\"\n\n  [[flow.output]]\n  unicast = \"10.0.0.3:1\"\n  name = \"a\"\n",
            GOOD.trim_end()
        );
        assert_eq!(
            err(&two_named),
            format!(
                "{at}:14: flow[0].output[1].name = \"a\": duplicate output name \"a\": \
                 already used by flow[0].output[0] (line 8)"
            )
        );
        // A configured name that equals another output's default name.
        assert_eq!(
            err(&output(
                "  unicast = \"10.0.0.3:1\"\n  name = \"unicast 10.0.0.2:6000\""
            )),
            format!(
                "{at}:13: flow[0].output[1].name = \"unicast 10.0.0.2:6000\": duplicate output \
                 name \"unicast 10.0.0.2:6000\": already used by flow[0].output[0] (line 8)"
            )
        );
        // One group re-emitted on two interfaces is two outputs.
        let twice = format!(
            "{}\n  [[flow.output]]\n  multicast = \"239.9.9.9:1\"\n  interface = \"a\"\n  name = \"a\"\n",
            output("  multicast = \"239.9.9.9:1\"\n  interface = \"b\"")
        );
        assert_eq!(parse(&twice).unwrap().flows[0].outputs.len(), 3);
        assert_eq!(
            err(&format!(
                "{}\n  [[flow.output]]\n  multicast = \"239.9.9.9:1\"\n  interface = \"b\"\n  name = \"x\"\n",
                output("  multicast = \"239.9.9.9:1\"\n  interface = \"b\"")
            )),
            format!(
                "{at}:16: flow[0].output[2].multicast = \"239.9.9.9:1\": duplicate output: \
                 the same destination as flow[0].output[1] (line 11)"
            )
        );
    }

    #[test]
    fn duplicate_flows() {
        let second = |name: &str, extra: &str| {
            format!(
                "{GOOD}\n[[flow]]\nname = \"{name}\"\ninterface = \"in0\"\ngroup = \"239.1.1.1\"\n\
                 port = 5000\n{extra}\n  [[flow.output]]\n  unicast = \"10.0.0.2:6000\"\n"
            )
        };
        let at = "error: /etc/fanout.toml:11";
        assert_eq!(
            err(&second("f", "vlan = 5")),
            format!(
                "{at}: flow[1].name = \"f\": duplicate flow name: already used by flow[0] (line 2)"
            )
        );
        assert_eq!(
            err(&second("g", "")),
            format!(
                "{at}: flow[1] = \"g\": duplicate flow: same group, port, vlan, interface \
                 as flow[0] \"f\" (line 2)"
            )
        );
        assert_eq!(
            err(&second("g", "source = \"10.1.1.1\"")),
            format!(
                "{at}: flow[1] = \"g\": duplicate flow: same group, port, vlan, interface \
                 and overlapping source as flow[0] \"f\" (line 2)"
            )
        );
        // Differing in any one of group, port, vlan or interface is another flow.
        assert_eq!(parse(&second("g", "vlan = 7")).unwrap().flows.len(), 2);
        for (from, to) in [
            ("group = \"239.1.1.1\"\nport", "group = \"239.1.1.2\"\nport"),
            ("port = 5000\n\n", "port = 5001\n\n"),
            ("interface = \"in0\"\ngroup", "interface = \"in1\"\ngroup"),
        ] {
            let text = second("g", "");
            let idx = text.rfind(from).unwrap();
            let text = format!("{}{}{}", &text[..idx], to, &text[idx + from.len()..]);
            assert_eq!(parse(&text).unwrap().flows.len(), 2, "{text}");
        }
        // Two source-specific flows with different sources share a stream.
        let ssm = second("g", "source = \"10.1.1.2\"").replacen(
            "port = 5000\n",
            "port = 5000\nsource = \"10.1.1.1\"\n",
            1,
        );
        assert_eq!(parse(&ssm).unwrap().flows.len(), 2);
    }

    #[test]
    fn multicast_outputs_that_feed_a_flow_are_loops() {
        // Flow "f" takes 239.1.1.1:5000 on in0 (GOOD); flow "g" on in1.
        let g = |vlan: &str, out: &str| {
            format!(
                "{GOOD}\n[[flow]]\nname = \"g\"\ninterface = \"in1\"\ngroup = \"239.2.2.2\"\n\
                 port = 6000\n{vlan}\n  [[flow.output]]\n  multicast = \"{out}\"\n  interface = \"in0\"\n"
            )
        };
        // Another flow's stream re-emitted on that flow's ingress interface.
        assert_eq!(
            err(&g("", "239.1.1.1:5000")),
            "error: /etc/fanout.toml:17: flow[1].output[0].multicast = \"239.1.1.1:5000\": \
             re-emits flow[0] \"f\"'s (line 2) group and port on in0, where that flow takes \
             them: a forwarding loop"
        );
        // Its own stream on its own interface while it takes a VLAN there.
        let own = "[[flow]]\nname = \"v\"\ninterface = \"in0\"\ngroup = \"239.1.1.1\"\nport = 5000\n\
             vlan = 7\n\n  [[flow.output]]\n  multicast = \"239.1.1.1:5000\"\n  interface = \"in0\"\n";
        assert_eq!(
            err(own),
            "error: /etc/fanout.toml:8: flow[0].output[0].multicast = \"239.1.1.1:5000\": \
             re-emits this flow's own group and port on in0, where that flow takes them (on \
             VLAN 7; replicas leave untagged, and NICs strip tags): a forwarding loop"
        );
        // Another group, another port or another interface is no loop.
        assert_eq!(parse(&g("", "239.1.1.1:5001")).unwrap().flows.len(), 2);
        assert_eq!(parse(&g("", "239.1.1.2:5000")).unwrap().flows.len(), 2);
        let elsewhere =
            g("", "239.1.1.1:5000").replace("  interface = \"in0\"\n", "  interface = \"out9\"\n");
        assert_eq!(parse(&elsewhere).unwrap().flows.len(), 2);
    }

    #[test]
    fn toml_syntax_errors_have_line_and_column() {
        let e = err(&with("port = 5000", "port = = 5000"));
        assert_eq!(
            e,
            "error: /etc/fanout.toml:6:8: TOML syntax error: extra `=`, expected nothing"
        );
        let e = err(&with("port = 5000", "port = 5000\nport = 5001"));
        assert_eq!(
            e,
            "error: /etc/fanout.toml:7:1: TOML syntax error: duplicate key `port`"
        );
        assert_eq!(
            err("[[flow]\nname = \"x\""),
            "error: /etc/fanout.toml:1:8: TOML syntax error: unclosed array table, expected `]`"
        );
        assert_eq!(
            err("[[flow]]\nname = x\n"),
            "error: /etc/fanout.toml:2:8: TOML syntax error: \
             string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn unreadable_file_is_a_configuration_error() {
        let e = Config::load(Path::new("/nonexistent/fanout.toml")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "error: /nonexistent/fanout.toml: cannot read the configuration: \
             No such file or directory (os error 2)"
        );
        assert!(e.location().is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// No input makes the parser panic; every refusal is a one-line message
        /// naming the file.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            if let Err(e) = parse(&text) {
                let msg = e.to_string();
                proptest::prop_assert!(msg.starts_with("error: /etc/fanout.toml"), "{}", msg);
                proptest::prop_assert!(!msg.contains('\n'), "{}", msg);
            }
        }

        /// Small edits of a good configuration: accepted, or refused cleanly.
        #[test]
        fn edited_config_never_panics(at in 0usize..GOOD.len(), byte in proptest::prelude::any::<u8>()) {
            let mut bytes = GOOD.as_bytes().to_vec();
            bytes[at] = byte;
            if let Ok(text) = String::from_utf8(bytes)
                && let Err(e) = parse(&text)
            {
                let msg = e.to_string();
                proptest::prop_assert!(msg.starts_with("error: /etc/fanout.toml"), "{}", msg);
                proptest::prop_assert!(!msg.contains('\n'), "{}", msg);
            }
        }
    }

    #[test]
    fn engine_knobs_are_typed_fields_of_the_engine_table() {
        let text = GOOD.replacen(
            "[[flow]]",
            "[engine]\nxdp_attach = \"generic\"\nxdp_object = \"/opt/fanout.o\"\ninline_max = 0\n\
             busy_poll_us = 50\nbusy_poll_budget = 16\ntx_budget = 0\n\n[[flow]]",
            1,
        );
        let c = parse(&text).unwrap();
        let e = &c.engine;
        assert_eq!(e.xdp_attach, XdpAttach::Generic);
        assert_eq!(e.xdp_object.as_deref(), Some(Path::new("/opt/fanout.o")));
        assert_eq!(
            (
                e.inline_max,
                e.busy_poll_us,
                e.busy_poll_budget,
                e.tx_budget
            ),
            (0, 50, Some(16), Some(0))
        );
        assert!(e.overrides.is_empty(), "parse never reads the environment");
        assert_eq!(
            e.control.as_deref(),
            Some(Path::new(crate::control::DEFAULT_SOCKET))
        );
        let with = |line: &str| {
            parse(&GOOD.replacen("[[flow]]", &format!("[engine]\n{line}\n\n[[flow]]"), 1))
                .unwrap()
                .engine
        };
        assert_eq!(with("control = \"off\"").control, None);
        let e = with("control = \"/run/x.sock\"\ncontrol_group = \"fanout\"");
        assert_eq!(
            (e.control.as_deref(), e.control_group.as_deref()),
            (Some(Path::new("/run/x.sock")), Some("fanout"))
        );
    }

    #[test]
    fn bad_engine_knobs_name_the_line_the_field_and_the_value() {
        for (line, want) in [
            (
                "xdp_attach = \"turbo\"",
                "engine.xdp_attach = \"turbo\": expected auto, native or generic",
            ),
            (
                "inline_max = 129",
                "engine.inline_max = 129: out of range (0..=128)",
            ),
            (
                "busy_poll_budget = 0",
                "engine.busy_poll_budget = 0: out of range (1..=65535)",
            ),
            (
                "tx_budget = \"all\"",
                "engine.tx_budget = \"all\": expected an integer (0..=1048576), found string",
            ),
            (
                "xdp_object = \"\"",
                "engine.xdp_object = \"\": must not be empty",
            ),
            (
                "metrics_listen = \"9464\"",
                "engine.metrics_listen = \"9464\": expected ADDR:PORT",
            ),
            (
                "xdp_pin_dir = \"bpf/fanout\"",
                "engine.xdp_pin_dir = \"bpf/fanout\": must be an absolute path",
            ),
            (
                "control = \"fanout.sock\"",
                "engine.control = \"fanout.sock\": must be an absolute path, or \"off\"",
            ),
            (
                "control_group = \"fan out\"",
                "engine.control_group = \"fan out\": expected a group name",
            ),
        ] {
            let text = GOOD.replacen("[[flow]]", &format!("[engine]\n{line}\n\n[[flow]]"), 1);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("error: {FILE}:3: ")), "{msg}");
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn a_bad_environment_override_is_a_configuration_error() {
        let e = Error::Environment {
            var: "FANOUT_XSK_INLINE",
            value: "lots".into(),
            field: "inline_max",
            reason: "expected an integer (0..=128)".into(),
        };
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "error: environment: FANOUT_XSK_INLINE=\"lots\" (overrides [engine] inline_max): expected an integer (0..=128)"
        );
    }
}
