//! Finding the VLAN sub-interface that carries a tagged flow.
//!
//! Ordinary sockets never see 802.1Q tags: the kernel strips them on a VLAN
//! sub-interface (`eth0.100`). The socket engine therefore receives a VLAN
//! flow on the sub-interface of (ingress, vid), found in the current network
//! namespace's `/proc/net/vlan/config`. It never creates one.

use std::io;
use std::path::Path;

/// The kernel's table of VLAN devices in this network namespace.
pub const PROC_VLAN_CONFIG: &str = "/proc/net/vlan/config";

/// One line of `/proc/net/vlan/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanEntry {
    /// The sub-interface, e.g. `eth0.100`.
    pub name: String,
    pub vid: u16,
    /// The interface it is stacked on, e.g. `eth0`.
    pub parent: String,
}

/// Parses the text of `/proc/net/vlan/config` (two header lines, then
/// `name | vid | parent`); lines that do not parse are skipped.
pub fn parse_vlan_config(text: &str) -> Vec<VlanEntry> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('|').map(str::trim);
            let name = cols.next()?;
            let vid = cols.next()?.parse::<u16>().ok()?;
            let parent = cols.next()?;
            if name.is_empty() || parent.is_empty() {
                return None;
            }
            Some(VlanEntry {
                name: name.to_owned(),
                vid,
                parent: parent.to_owned(),
            })
        })
        .collect()
}

/// The name of the VLAN sub-interface of `parent` with id `vid`, read from
/// `config` (normally [`PROC_VLAN_CONFIG`]). A missing file means the 8021q
/// module is not loaded, hence no sub-interface: `Ok(None)`.
pub fn find_vlan_subinterface(config: &Path, parent: &str, vid: u16) -> io::Result<Option<String>> {
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse_vlan_config(&text)
        .into_iter()
        .find(|e| e.parent == parent && e.vid == vid)
        .map(|e| e.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "VLAN Dev name\t | VLAN ID\n\
Name-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n\
eth0.100       | 100  | eth0\n\
uplink         | 200  | eth1\n\
garbage line\n\
eth0.7         | 7  | eth0\n";

    #[test]
    fn parses_entries_and_skips_headers() {
        let e = parse_vlan_config(SAMPLE);
        assert_eq!(
            e,
            vec![
                VlanEntry {
                    name: "eth0.100".into(),
                    vid: 100,
                    parent: "eth0".into()
                },
                VlanEntry {
                    name: "uplink".into(),
                    vid: 200,
                    parent: "eth1".into()
                },
                VlanEntry {
                    name: "eth0.7".into(),
                    vid: 7,
                    parent: "eth0".into()
                },
            ]
        );
    }

    #[test]
    fn finds_by_parent_and_vid() {
        let dir = std::env::temp_dir().join(format!("fanout-vlan-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(&path, SAMPLE).unwrap();
        assert_eq!(
            find_vlan_subinterface(&path, "eth1", 200)
                .unwrap()
                .as_deref(),
            Some("uplink")
        );
        assert_eq!(
            find_vlan_subinterface(&path, "eth0", 7).unwrap().as_deref(),
            Some("eth0.7")
        );
        assert_eq!(find_vlan_subinterface(&path, "eth0", 200).unwrap(), None);
        assert_eq!(
            find_vlan_subinterface(&dir.join("absent"), "eth0", 7).unwrap(),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
