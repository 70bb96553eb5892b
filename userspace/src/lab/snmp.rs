//! The kernel's protocol counters of a namespace (`/proc/net/snmp`,
//! `/proc/net/netstat`, `/proc/net/snmp6`): what its receivers accepted and
//! dropped, for the tests and the demo to count only what a receiver
//! accepts.

use super::netns::{LabError, Netns};

/// The counter `name` of table `table` in the text of a file of header and
/// value line pairs (`/proc/net/snmp`, `/proc/net/netstat`):
/// `Udp: InDatagrams NoPorts ...` then `Udp: 12 0 ...`.
pub fn table_counter(text: &str, table: &str, name: &str) -> Option<u64> {
    let prefix = format!("{table}: ");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (rows.next()?, rows.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// The counter `name` in the text of `/proc/net/snmp6` (one `Name value`
/// per line).
pub fn line_counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        if f.next() == Some(name) {
            f.next()?.parse().ok()
        } else {
            None
        }
    })
}

/// The checksum errors counted by the kernel of `ns` on what it received:
/// UDP over IPv4 and IPv6 (`Udp InCsumErrors`, `Udp6InCsumErrors`) and
/// IPv4 headers (`IpExt InCsumErrors`). A datagram counted here was dropped,
/// not delivered.
pub fn checksum_errors(ns: &Netns) -> Result<[(&'static str, u64); 3], LabError> {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"])?;
    let netstat = ns.exec(&["cat", "/proc/net/netstat"])?;
    let snmp6 = ns.exec(&["cat", "/proc/net/snmp6"])?;
    let missing = |name: &str| LabError::Counter {
        namespace: ns.name().to_owned(),
        name: name.to_owned(),
    };
    Ok([
        (
            "Udp InCsumErrors",
            table_counter(&snmp, "Udp", "InCsumErrors")
                .ok_or_else(|| missing("Udp InCsumErrors"))?,
        ),
        (
            "Udp6InCsumErrors",
            line_counter(&snmp6, "Udp6InCsumErrors").ok_or_else(|| missing("Udp6InCsumErrors"))?,
        ),
        (
            "IpExt InCsumErrors",
            table_counter(&netstat, "IpExt", "InCsumErrors")
                .ok_or_else(|| missing("IpExt InCsumErrors"))?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
        Udp: 120 3 7 0 0 0 7\n\
        UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";

    #[test]
    fn table_counters_are_read_by_column_name() {
        assert_eq!(table_counter(SNMP, "Udp", "NoPorts"), Some(3));
        assert_eq!(table_counter(SNMP, "Udp", "InCsumErrors"), Some(7));
        assert_eq!(table_counter(SNMP, "Ip", "DefaultTTL"), Some(64));
        // `UdpLite:` is its own table, not `Udp:`.
        assert_eq!(table_counter(SNMP, "UdpLite", "InDatagrams"), Some(0));
        assert_eq!(table_counter(SNMP, "Udp", "Nonexistent"), None);
        assert_eq!(table_counter(SNMP, "Tcp", "InSegs"), None);
        assert_eq!(table_counter("Udp: NoPorts\n", "Udp", "NoPorts"), None);
    }

    #[test]
    fn snmp6_counters_are_read_by_name() {
        let text = "Udp6InDatagrams                 \t12\nUdp6InCsumErrors                \t2\n";
        assert_eq!(line_counter(text, "Udp6InCsumErrors"), Some(2));
        assert_eq!(line_counter(text, "Udp6InDatagrams"), Some(12));
        assert_eq!(line_counter(text, "Udp6NoPorts"), None);
    }
}
