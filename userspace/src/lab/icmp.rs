//! ICMP echo, to prove that ordinary traffic still reaches the kernel
//! while the XDP program is attached (it passes what is not a flow).

use std::io;

/// An ICMP echo request (type 8) with a valid checksum.
pub fn echo_request(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8u8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let sum = !crate::wire::checksum::data(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// Pings `to` from `sock` (a raw ICMPv4 socket, made inside the namespace
/// that pings) and waits up to `timeout` for the echo reply with this `id`
/// and `seq`; returns the reply's ICMP message (header and data), or an
/// error naming what is missing.
pub fn ping(
    sock: &socket2::Socket,
    to: std::net::Ipv4Addr,
    id: u16,
    seq: u16,
    data: &[u8],
    timeout: std::time::Duration,
) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    sock.send_to(
        &echo_request(id, seq, data),
        &std::net::SocketAddr::from((to, 0)).into(),
    )?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no echo reply {seq} from {to} within {timeout:?}"),
                )
            })?;
        sock.set_read_timeout(Some(left))?;
        let n = match (&*sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        // A raw socket hands over the IP header too.
        let Some(&first) = buf[..n].first() else {
            continue;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        let Some(icmp) = buf.get(ihl..n) else {
            continue;
        };
        if icmp.len() >= 8
            && icmp[0] == 0
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
        {
            return Ok(icmp.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let m = echo_request(0x4242, 7, b"abc");
        assert_eq!(&m[..2], &[8, 0]);
        assert_eq!(&m[4..8], &[0x42, 0x42, 0, 7]);
        assert_eq!(&m[8..], b"abc");
        // The one's complement sum over a message with its checksum is 0.
        assert_eq!(crate::wire::checksum::data(&m), 0xffff);
    }
}
