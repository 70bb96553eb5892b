//! The only `unsafe` outside the AF_XDP rings: a system call that neither socket2 nor
//! nix wraps safely.
//!
//! Today that is one call: the protocol-independent source-specific join
//! (`MCAST_JOIN_SOURCE_GROUP`, RFC 3678), used for both IPv4 and IPv6 because
//! it names the ingress interface by index (socket2's IPv4-only
//! `join_ssm_v4` needs an interface *address*, which an unnumbered ingress
//! interface does not have, and nothing wraps the IPv6 form).

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Writes `ip` (port 0) into a zeroed `sockaddr_storage`.
fn storage_of(ip: IpAddr) -> libc::sockaddr_storage {
    let addr = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    // SAFETY: `sockaddr_storage` is plain old data for which all-zero bytes
    // are a valid value.
    #[allow(unsafe_code)]
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = (addr.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `addr.as_ptr()` points to a socket address of `addr.len()`
    // valid bytes; `storage` is a distinct local at least `len` bytes long;
    // both are byte-addressable, so the copy is in bounds and does not overlap.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr().cast::<u8>(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    storage
}

/// Joins `group` for datagrams from `source` only, on interface `ifindex`
/// (`setsockopt(MCAST_JOIN_SOURCE_GROUP)`, IGMPv3 / MLDv2 source-specific).
/// `group` and `source` must be of the socket's family.
pub fn join_source_group(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    group: IpAddr,
    source: IpAddr,
) -> io::Result<()> {
    if group.is_ipv4() != source.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "group and source are of different address families",
        ));
    }
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    let req = libc::group_source_req {
        gsr_interface: ifindex,
        gsr_group: storage_of(group),
        gsr_source: storage_of(source),
    };
    // SAFETY: `fd` is a live socket for the duration of the call (borrowed);
    // the option value points to a fully initialised `group_source_req` on
    // our stack whose exact size is passed, and the kernel only reads it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            libc::MCAST_JOIN_SOURCE_GROUP,
            (&req as *const libc::group_source_req).cast::<libc::c_void>(),
            mem::size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn storage_holds_family_and_address() {
        let s = storage_of(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(s.ss_family as i32, libc::AF_INET);
        let s6 = storage_of(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(s6.ss_family as i32, libc::AF_INET6);
    }

    #[test]
    fn mixed_families_are_refused_before_the_call() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsFd;
        let err = join_source_group(
            sock.as_fd(),
            1,
            "239.1.1.1".parse().unwrap(),
            "::1".parse().unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
