//! Next-hop resolution for unicast outputs of the XDP engine.
//!
//! Contract: [`resolve`] answers "which MAC address do replicas to `dst`
//! out of `ifname` carry?" from the kernel's own tables: the route
//! (`ip -j route get DST oif IF`: the gateway when there is one, the
//! destination itself when it is on-link), then the neighbour table
//! (`ip -j neigh show to HOP dev IF`). An entry in a usable state
//! (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP) with a link-layer
//! address is an answer. When the entry is missing, INCOMPLETE or FAILED,
//! or only STALE, resolution is triggered the kernel's way: RTM_NEWNEIGH
//! with `NTF_USE` (`ip neigh replace HOP dev IF use`), which makes the
//! kernel send its ARP request / neighbour solicitation (and confirm a
//! stale entry) without sending any datagram to the receiver; the answer
//! shows up in a later [`resolve`]. The engine's side thread calls it
//! periodically and counts replicas as `next_hop_unresolved` meanwhile.
//!
//! The kernel is asked through iproute2's JSON output (`ip -j`), not raw
//! netlink: a few `ip` processes per output and refresh period, never on
//! the packet path. The parsing is pure and unit-tested. Never changes a
//! route; the only write is the `NTF_USE` trigger, which changes nothing
//! an operator configured (it creates or refreshes a dynamic entry).

use std::io;
use std::net::IpAddr;
use std::process::Command;

/// What could not be asked or understood.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`ip {args}`: {source}")]
    Spawn {
        args: String,
        #[source]
        source: io::Error,
    },
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("`ip {args}`: unexpected output {output:?}")]
    Parse { args: String, output: String },
    #[error("no route to {dst} through {ifname}")]
    NoRoute { dst: IpAddr, ifname: String },
}

/// A neighbour entry as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: Option<[u8; 6]>,
    /// NUD states, upper case (`REACHABLE`, `STALE`, ...).
    pub state: Vec<String>,
}

impl Neighbour {
    /// The MAC address, when the state allows sending to it.
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        const USABLE: [&str; 6] = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"];
        self.mac
            .filter(|_| self.state.iter().any(|s| USABLE.contains(&s.as_str())))
    }

    /// Whether the kernel should be asked to (re)confirm it.
    pub fn wants_trigger(&self) -> bool {
        self.usable_mac().is_none() || self.state.iter().any(|s| s == "STALE")
    }
}

/// The outcome of one [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The next hop: the gateway, or `dst` itself when on-link.
    pub hop: IpAddr,
    /// Its MAC address, when known and usable.
    pub mac: Option<[u8; 6]>,
    /// Whether resolution was triggered (`NTF_USE`).
    pub triggered: bool,
}

/// Resolves the next hop of `dst` out of `ifname`, triggering the kernel's
/// resolution when needed (see the module documentation).
pub fn resolve(dst: IpAddr, ifname: &str) -> Result<Resolution, Error> {
    let hop = next_hop(dst, ifname)?;
    let entry = neighbour(hop, ifname)?;
    let mac = entry.as_ref().and_then(Neighbour::usable_mac);
    let triggered = entry.as_ref().is_none_or(Neighbour::wants_trigger);
    if triggered {
        trigger(hop, ifname)?;
    }
    Ok(Resolution {
        hop,
        mac,
        triggered,
    })
}

/// The next hop towards `dst` out of `ifname` (`ip -j route get`).
pub fn next_hop(dst: IpAddr, ifname: &str) -> Result<IpAddr, Error> {
    let dst_s = dst.to_string();
    let args = ["-j", "route", "get", &dst_s, "oif", ifname];
    let out = ip(&args)?;
    parse_route(&out, dst)
        .map_err(|output| Error::Parse {
            args: args.join(" "),
            output,
        })?
        .ok_or_else(|| Error::NoRoute {
            dst,
            ifname: ifname.to_owned(),
        })
}

/// The interface the kernel's routing table sends `dst` out of
/// (`ip -j route get DST`), for a unicast output configured without one.
pub fn route_dev(dst: IpAddr) -> Result<String, Error> {
    let dst_s = dst.to_string();
    let args = ["-j", "route", "get", &dst_s];
    let out = ip(&args)?;
    parse_route_dev(&out)
        .map_err(|output| Error::Parse {
            args: args.join(" "),
            output,
        })?
        .ok_or_else(|| Error::NoRoute {
            dst,
            ifname: "any interface".to_owned(),
        })
}

/// `ip -j route get` output: the route's `dev`; `None` for an empty answer.
pub fn parse_route_dev(json: &str) -> Result<Option<String>, String> {
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(json.trim()).map_err(|_| json.to_owned())?;
    let Some(route) = routes.first() else {
        return Ok(None);
    };
    route
        .get("dev")
        .and_then(|d| d.as_str())
        .map(|d| Some(d.to_owned()))
        .ok_or_else(|| json.to_owned())
}

/// The neighbour entry of `hop` on `ifname`, if any (`ip -j neigh show`).
pub fn neighbour(hop: IpAddr, ifname: &str) -> Result<Option<Neighbour>, Error> {
    let hop_s = hop.to_string();
    let args = ["-j", "neigh", "show", "to", &hop_s, "dev", ifname];
    let out = ip(&args)?;
    parse_neigh(&out, hop).map_err(|output| Error::Parse {
        args: args.join(" "),
        output,
    })
}

/// Asks the kernel to resolve (or confirm) `hop` on `ifname`: RTM_NEWNEIGH
/// with `NTF_USE`.
pub fn trigger(hop: IpAddr, ifname: &str) -> Result<(), Error> {
    let hop_s = hop.to_string();
    ip(&["neigh", "replace", &hop_s, "dev", ifname, "use"]).map(drop)
}

pub(crate) fn ip(args: &[&str]) -> Result<String, Error> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            args: args.join(" "),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -j route get` output: the gateway, or `dst` when on-link; `None`
/// for an empty answer. `Err` carries the text that did not parse.
pub fn parse_route(json: &str, dst: IpAddr) -> Result<Option<IpAddr>, String> {
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(json.trim()).map_err(|_| json.to_owned())?;
    let Some(route) = routes.first() else {
        return Ok(None);
    };
    match route.get("gateway").and_then(|g| g.as_str()) {
        // IPv6 link-local gateways may carry no scope in the text.
        Some(g) => g
            .split('%')
            .next()
            .unwrap_or(g)
            .parse()
            .map(Some)
            .map_err(|_| json.to_owned()),
        None => Ok(Some(dst)),
    }
}

/// `ip -j neigh show to HOP dev IF` output: the entry of `hop`, if any.
pub fn parse_neigh(json: &str, hop: IpAddr) -> Result<Option<Neighbour>, String> {
    let text = json.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|_| json.to_owned())?;
    for e in &entries {
        let dst = e
            .get("dst")
            .and_then(|d| d.as_str())
            .and_then(|d| d.parse::<IpAddr>().ok());
        if dst != Some(hop) {
            continue;
        }
        let mac = match e.get("lladdr").and_then(|m| m.as_str()) {
            Some(m) => Some(parse_mac(m).ok_or_else(|| json.to_owned())?),
            None => None,
        };
        let state = e
            .get("state")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Some(Neighbour { mac, state }));
    }
    Ok(None)
}

/// `aa:bb:cc:dd:ee:ff` (as `ip -j` prints it).
pub use crate::plan::parse_mac;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_give_the_gateway_or_the_destination() {
        let dst: IpAddr = "10.202.0.2".parse().unwrap();
        let on_link = r#"[{"dst":"10.202.0.2","dev":"out0","prefsrc":"10.202.0.1","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(parse_route(on_link, dst), Ok(Some(dst)));
        let via = r#"[{"dst":"10.9.0.2","gateway":"10.202.0.254","dev":"out0","flags":[]}]"#;
        assert_eq!(
            parse_route(via, dst),
            Ok(Some("10.202.0.254".parse().unwrap()))
        );
        let via6 = r#"[{"dst":"fd00:9::2","gateway":"fe80::1","dev":"out0"}]"#;
        assert_eq!(parse_route(via6, dst), Ok(Some("fe80::1".parse().unwrap())));
        assert_eq!(parse_route("[]", dst), Ok(None));
        assert!(parse_route("garbage", dst).is_err());
        assert!(parse_route(r#"[{"gateway":"nope"}]"#, dst).is_err());
    }

    #[test]
    fn routes_name_their_device() {
        let via = r#"[{"dst":"10.9.0.2","gateway":"10.202.0.254","dev":"out0","flags":[]}]"#;
        assert_eq!(parse_route_dev(via), Ok(Some("out0".to_owned())));
        let local = r#"[{"type":"local","dst":"127.0.0.1","dev":"lo","prefsrc":"127.0.0.1"}]"#;
        assert_eq!(parse_route_dev(local), Ok(Some("lo".to_owned())));
        assert_eq!(parse_route_dev("[]"), Ok(None));
        assert!(parse_route_dev("garbage").is_err());
        assert!(parse_route_dev(r#"[{"dst":"10.9.0.2"}]"#).is_err());
    }

    #[test]
    fn neighbour_entries_and_their_states() {
        let hop: IpAddr = "10.202.0.2".parse().unwrap();
        let reachable =
            r#"[{"dst":"10.202.0.2","lladdr":"02:00:00:00:00:07","state":["REACHABLE"]}]"#;
        let n = parse_neigh(reachable, hop).unwrap().unwrap();
        assert_eq!(n.usable_mac(), Some([2, 0, 0, 0, 0, 7]));
        assert!(!n.wants_trigger());

        let stale = r#"[{"dst":"10.202.0.2","lladdr":"02:00:00:00:00:07","state":["STALE"]}]"#;
        let n = parse_neigh(stale, hop).unwrap().unwrap();
        assert_eq!(n.usable_mac(), Some([2, 0, 0, 0, 0, 7]));
        assert!(n.wants_trigger(), "a stale entry is confirmed");

        for pending in [
            r#"[{"dst":"10.202.0.2","state":["INCOMPLETE"]}]"#,
            r#"[{"dst":"10.202.0.2","state":["FAILED"]}]"#,
            r#"[{"dst":"10.202.0.2","lladdr":"02:00:00:00:00:07","state":["FAILED"]}]"#,
        ] {
            let n = parse_neigh(pending, hop).unwrap().unwrap();
            assert_eq!(n.usable_mac(), None, "{pending}");
            assert!(n.wants_trigger());
        }
        assert_eq!(parse_neigh("", hop), Ok(None));
        assert_eq!(parse_neigh("[]", hop), Ok(None));
        let other = r#"[{"dst":"10.202.0.9","lladdr":"02:00:00:00:00:09","state":["REACHABLE"]}]"#;
        assert_eq!(parse_neigh(other, hop), Ok(None));
        assert!(parse_neigh(r#"[{"dst":"10.202.0.2","lladdr":"zz"}]"#, hop).is_err());
        assert!(parse_neigh("{", hop).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("0a:1b:2c:3d:4e:5f"),
            Some([10, 27, 44, 61, 78, 95])
        );
        for bad in [
            "",
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:00",
            "0a:1b:2c:3d:4e:5",
            "xx:1b:2c:3d:4e:5f",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
