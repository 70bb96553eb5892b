//! Zero-copy header views, the frame parser, checksums and replica headers.
//!
//! `wire` owns the byte layout of everything fanout reads or writes on the
//! wire: Ethernet II with up to two VLAN tags (802.1ad / 802.1Q), IPv4 (with
//! options on receive), the IPv6 fixed header and UDP.
//!
//! It works at two levels:
//!
//! * typed views ([`ethernet::Frame`], [`ethernet::VlanTag`], [`ipv4::Packet`],
//!   [`ipv6::Packet`], [`udp::Packet`]) over any `T: AsRef<[u8]>`: named field
//!   ranges, getters after the field names, `set_*` setters for
//!   `T: AsMut<[u8]>`. `new_checked` validates the buffer once; after it, no
//!   getter panics. `new_unchecked` skips the check: its getters and setters
//!   panic when the buffer is too short (that is the caller's contract);
//! * the hot-path pair the engines call per packet: [`parse`] turns a received
//!   frame into a small [`Datagram`] (or a [`ParseError`] to count), and
//!   [`ReplicaTemplate::write`] writes the Ethernet/IP/UDP headers of one
//!   replica, adjusting the received UDP checksum incrementally (RFC 1624, see
//!   [`checksum`]) so that the payload is never read.
//!
//! Promises: nothing in this module allocates, and [`parse`] never panics,
//! whatever the input. Nothing here logs: errors are small `Copy` values that
//! the caller counts.
//!
//! Non-goals: IPv4 fragments and IPv6 extension headers are rejected, not
//! reassembled or walked; replicas carry no IPv4 options; a replica has the
//! same IP family as the datagram it copies.

pub mod checksum;
mod error;
pub mod ethernet;
mod field;
mod ip;
pub mod ipv4;
pub mod ipv6;
mod parse;
pub mod replica;
pub mod udp;

pub use error::ParseError;
pub use ip::{IPPROTO_UDP, IpPair};
pub use parse::{Datagram, parse, parse_head};
pub use replica::{Received, ReplicaSpec, ReplicaTemplate, TemplateError, TosPolicy, WriteError};

#[cfg(test)]
mod differential;
#[cfg(test)]
pub(crate) mod testutil;
