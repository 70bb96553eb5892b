//! Why a frame is not a datagram fanout replicates: the one error of every
//! header view and of the parser.

/// Why a buffer is not a datagram fanout can replicate.
///
/// Returned by the views' `new_checked` and by [`parse`]; the engine counts
/// it (one counter per variant) and passes or drops the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before a header, or before the length a header claims.
    #[error("truncated: the buffer is shorter than a header or a length field claims")]
    Truncated,
    /// More than two VLAN tags, or a second tag that is not 802.1Q.
    #[error("unsupported VLAN tag stack")]
    BadVlan,
    /// The (inner) ethertype is neither IPv4 nor IPv6.
    #[error("not IP: ethertype {0:#06x}")]
    NotIp(u16),
    /// The IP version field does not match the ethertype.
    #[error("bad IP version {0}")]
    BadVersion(u8),
    /// IPv4 IHL below 5.
    #[error("bad IPv4 IHL {0}")]
    BadIhl(u8),
    /// A length field is inconsistent (IPv4 total length below the header
    /// length, UDP length below 8 or beyond the IP payload).
    #[error("inconsistent length field")]
    BadLength,
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadChecksum,
    /// An IPv4 fragment (MF set or a non-zero offset), or an IPv6 packet
    /// whose next header is a fragment header.
    #[error("IP fragment")]
    Fragment,
    /// Not UDP (IPv4 protocol or IPv6 next header, which includes every
    /// IPv6 extension header but the fragment header).
    #[error("not UDP: protocol {0}")]
    NotUdp(u8),
    /// UDP over IPv6 with a zero checksum (RFC 8200 section 8.1: discard).
    #[error("UDP over IPv6 without checksum")]
    ZeroChecksumV6,
}
