//! The NIC's 802.1Q receive offload, through the kernel's ethtool netlink
//! family (what `ethtool -k` / `-K` use): whether an interface strips VLAN
//! tags into packet metadata before XDP sees the frame, and turning that
//! off.
//!
//! Contract: [`vlan_rx_offload`] reads the active `rx-vlan-hw-parse` and
//! `rx-vlan-stag-hw-parse` features of an interface (of the calling
//! thread's network namespace); [`set_vlan_rx_offload`] asks for both on or
//! off and returns what the kernel then reports. Generic netlink, encoded
//! and decoded here on a plain `NETLINK_GENERIC` socket (no `unsafe`, no
//! `ethtool` binary); every message is bounds-checked, and a reply that
//! cannot be read is an `io::Error` of kind `InvalidData`, never a panic.

use std::io::{self, Read};

use socket2::{Domain, Protocol, Socket, Type};

/// `rx-vlan-hw-parse`: 802.1Q tags stripped into metadata on receive.
pub const CTAG_RX: &str = "rx-vlan-hw-parse";
/// `rx-vlan-stag-hw-parse`: 802.1ad tags stripped into metadata on receive.
pub const STAG_RX: &str = "rx-vlan-stag-hw-parse";

const NETLINK_GENERIC: i32 = 16;
const AF_NETLINK: i32 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const ETHTOOL_MSG_FEATURES_GET: u8 = 11;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_FEATURES_ACTIVE: u16 = 4;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_BITSET_NOMASK: u16 = 1;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// The interface's VLAN receive offloads as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRxOffload {
    /// `rx-vlan-hw-parse` (802.1Q) is active.
    pub ctag: bool,
    /// `rx-vlan-stag-hw-parse` (802.1ad) is active.
    pub stag: bool,
}

impl VlanRxOffload {
    /// Either offload is on.
    pub fn any(self) -> bool {
        self.ctag || self.stag
    }
}

/// The active VLAN receive offloads of `ifname`.
pub fn vlan_rx_offload(ifname: &str) -> io::Result<VlanRxOffload> {
    let mut nl = Genl::open()?;
    let family = nl.family("ethtool")?;
    let mut req = Message::new(family, ETHTOOL_MSG_FEATURES_GET);
    req.nest(ETHTOOL_A_FEATURES_HEADER, |m| {
        m.attr_str(ETHTOOL_A_HEADER_DEV_NAME, ifname)
    });
    let reply = nl.request(req)?;
    let active = find(attrs(&reply), ETHTOOL_A_FEATURES_ACTIVE)
        .ok_or_else(|| invalid("no active features in the reply"))?;
    let on = |name: &str| bit_set(active, name);
    Ok(VlanRxOffload {
        ctag: on(CTAG_RX)?,
        stag: on(STAG_RX)?,
    })
}

/// Asks for both VLAN receive offloads of `ifname` on (`true`) or off, and
/// returns what the kernel reports afterwards (a driver may refuse).
pub fn set_vlan_rx_offload(ifname: &str, on: bool) -> io::Result<VlanRxOffload> {
    let mut nl = Genl::open()?;
    let family = nl.family("ethtool")?;
    let mut req = Message::new(family, ETHTOOL_MSG_FEATURES_SET);
    req.nest(ETHTOOL_A_FEATURES_HEADER, |m| {
        m.attr_str(ETHTOOL_A_HEADER_DEV_NAME, ifname)
    });
    // A verbose bitset without NOMASK: the listed bits are the mask, the
    // VALUE flag says which are set.
    req.nest(ETHTOOL_A_FEATURES_WANTED, |m| {
        m.nest(ETHTOOL_A_BITSET_BITS, |m| {
            for name in [CTAG_RX, STAG_RX] {
                m.nest(ETHTOOL_A_BITSET_BITS_BIT, |m| {
                    m.attr_str(ETHTOOL_A_BITSET_BIT_NAME, name);
                    if on {
                        m.attr(ETHTOOL_A_BITSET_BIT_VALUE, &[]);
                    }
                });
            }
        });
    });
    nl.request(req)?;
    vlan_rx_offload(ifname)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("ethtool netlink: {what}"),
    )
}

/// A generic netlink request being built: header, then attributes.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(family: u16, cmd: u8) -> Message {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&family.to_ne_bytes());
        buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&[cmd, 1, 0, 0]);
        Message { buf }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Message)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 2]);
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        inner(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// A `NETLINK_GENERIC` socket.
struct Genl {
    sock: Socket,
    seq: u32,
}

impl Genl {
    fn open() -> io::Result<Genl> {
        let sock = Socket::new(
            Domain::from(AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_GENERIC)),
        )?;
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        Ok(Genl { sock, seq: 0 })
    }

    /// The id of the generic netlink family `name`.
    fn family(&mut self, name: &str) -> io::Result<u16> {
        let mut req = Message::new(GENL_ID_CTRL, CTRL_CMD_GETFAMILY);
        req.attr_str(CTRL_ATTR_FAMILY_NAME, name);
        let reply = self.request(req)?;
        let id = find(attrs(&reply), CTRL_ATTR_FAMILY_ID).ok_or_else(|| invalid("no family id"))?;
        let id: [u8; 2] = id
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("short family id"))?;
        Ok(u16::from_ne_bytes(id))
    }

    /// Sends `req` and returns the attributes of its reply (empty for a
    /// request answered by an acknowledgement only); a netlink error is
    /// the `io::Error` of its errno.
    fn request(&mut self, req: Message) -> io::Result<Vec<u8>> {
        self.seq += 1;
        let seq = self.seq;
        self.sock.send(&req.finish(seq))?;
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = (&self.sock).read(&mut buf)?;
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let msg_seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap_or_default());
                if len < 16 || len > rest.len() {
                    return Err(invalid("truncated message"));
                }
                let body = &rest[16..len];
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                if msg_seq != seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    let code: [u8; 4] = body
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| invalid("short error"))?;
                    return match i32::from_ne_bytes(code) {
                        0 => Ok(reply),
                        e => Err(io::Error::from_raw_os_error(-e)),
                    };
                }
                // The generic header, then the attributes.
                if body.len() >= 4 {
                    reply = body[4..].to_vec();
                }
            }
        }
    }
}

/// The attributes in `buf`, as (type without flags, value).
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & !NLA_F_NESTED & !0x4000;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = &rest[4..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        Some((kind, value))
    })
}

fn find<'a>(mut it: impl Iterator<Item = (u16, &'a [u8])>, kind: u16) -> Option<&'a [u8]> {
    it.find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// Whether the verbose bitset `set` has the bit `name` set. Without a mask
/// (`NOMASK`, as the kernel sends active features) the bits listed are the
/// set ones; with one, every masked bit is listed and `VALUE` marks the set
/// ones. A bit not listed is off.
fn bit_set(set: &[u8], name: &str) -> io::Result<bool> {
    let bits = find(attrs(set), ETHTOOL_A_BITSET_BITS).ok_or_else(|| invalid("no bits"))?;
    let nomask = find(attrs(set), ETHTOOL_A_BITSET_NOMASK).is_some();
    let mut want = name.as_bytes().to_vec();
    want.push(0);
    for (kind, bit) in attrs(bits) {
        if kind != ETHTOOL_A_BITSET_BITS_BIT {
            continue;
        }
        if find(attrs(bit), ETHTOOL_A_BITSET_BIT_NAME) == Some(&want[..]) {
            return Ok(nomask || find(attrs(bit), ETHTOOL_A_BITSET_BIT_VALUE).is_some());
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(name: &str, on: bool) -> Message {
        let mut m = Message { buf: Vec::new() };
        m.nest(ETHTOOL_A_BITSET_BITS_BIT, |m| {
            m.attr_str(ETHTOOL_A_BITSET_BIT_NAME, name);
            if on {
                m.attr(ETHTOOL_A_BITSET_BIT_VALUE, &[]);
            }
        });
        m
    }

    #[test]
    fn bitsets_are_read_by_name() {
        let mut set = Message { buf: Vec::new() };
        set.nest(ETHTOOL_A_BITSET_BITS, |m| {
            for (name, on) in [
                ("tx-checksum-ipv4", true),
                (CTAG_RX, true),
                (STAG_RX, false),
            ] {
                m.buf.extend(bit(name, on).buf);
            }
        });
        assert!(bit_set(&set.buf, CTAG_RX).unwrap());
        assert!(!bit_set(&set.buf, STAG_RX).unwrap());
        assert!(!bit_set(&set.buf, "rx-gro").unwrap());
        // Without a mask, a listed bit is a set bit.
        let mut nomask = Message { buf: Vec::new() };
        nomask.attr(ETHTOOL_A_BITSET_NOMASK, &[]);
        nomask.nest(ETHTOOL_A_BITSET_BITS, |m| {
            m.buf.extend(bit(STAG_RX, false).buf)
        });
        assert!(bit_set(&nomask.buf, STAG_RX).unwrap());
        assert!(!bit_set(&nomask.buf, CTAG_RX).unwrap());
        // A cut message is read as far as it goes, never past its end.
        for len in 0..set.buf.len() {
            let _ = bit_set(&set.buf[..len], CTAG_RX);
        }
        assert!(bit_set(&[], CTAG_RX).is_err());
    }

    #[test]
    fn requests_are_laid_out_as_netlink_wants() {
        let mut m = Message::new(0x1d, ETHTOOL_MSG_FEATURES_GET);
        m.nest(ETHTOOL_A_FEATURES_HEADER, |m| {
            m.attr_str(ETHTOOL_A_HEADER_DEV_NAME, "eth0")
        });
        let b = m.finish(7);
        assert_eq!(
            u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x1d);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(&b[16..20], &[ETHTOOL_MSG_FEATURES_GET, 1, 0, 0]);
        let (kind, header) = attrs(&b[20..]).next().unwrap();
        assert_eq!(kind, ETHTOOL_A_FEATURES_HEADER);
        assert_eq!(
            find(attrs(header), ETHTOOL_A_HEADER_DEV_NAME),
            Some(&b"eth0\0"[..])
        );
        assert_eq!(b.len() % 4, 0);
    }
}
