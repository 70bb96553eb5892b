//! Kernel UDP sockets in lab namespaces and numbered datagrams.
//!
//! Contract: every socket is created on a thread inside its namespace
//! (`Netns::run_in`) and stays there; every datagram a test sends is a
//! `fanout::lab::payload` one (stream, sequence number, a pattern that
//! checks every byte), so a receiver can tell which one it holds and that
//! nothing in it changed; every receive has a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fanout::lab::{Netns, payload};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

/// A UDP socket of `ip`'s family (IPv6 ones v6-only) with room for a whole
/// test stream in its receive buffer (32 MiB, forced: nothing is lost in a
/// receiver) and a 200 ms read timeout.
pub fn udp_socket(ip: IpAddr) -> Socket {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    if !ip.is_ipv4() {
        s.set_only_v6(true).unwrap();
    }
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// A unicast receiver bound to `at`, created in `ns`.
pub fn unicast_receiver(ns: &Netns, at: impl Into<SocketAddr>) -> UdpSocket {
    let at = at.into();
    ns.run_in(|| {
        let s = udp_socket(at.ip());
        s.bind(&at.into())
            .unwrap_or_else(|e| panic!("bind {at} in {}: {e}", ns.name()));
        s.into()
    })
}

/// A receiver of `group:port` only, joined on `ifname`, created in `ns`
/// (what a kernel application on that host does; with IPv4 it does not get
/// the datagrams of other groups joined on the host).
pub fn multicast_receiver(ns: &Netns, group: IpAddr, port: u16, ifname: &str) -> UdpSocket {
    ns.run_in(|| {
        let index = nix::net::if_::if_nametoindex(ifname)
            .unwrap_or_else(|e| panic!("{ifname} in {}: {e}", ns.name()));
        let s = udp_socket(group);
        s.set_reuse_address(true).unwrap();
        match group {
            IpAddr::V4(g) => {
                s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))
                    .unwrap();
                s.set_multicast_all_v4(false).unwrap();
            }
            IpAddr::V6(g) => s.join_multicast_v6(&g, index).unwrap(),
        }
        s.bind(&SocketAddr::new(group, port).into()).unwrap();
        s.into()
    })
}

/// The multicast TTL (hop limit) of [`sender`]: hops left for the engine
/// (which, like a router, replicates nothing received with TTL 1) and for
/// the outputs' configured TTLs to apply.
pub const SENDER_TTL: u32 = 16;

/// A sender bound to `from` in `ns`. Its multicast leaves with TTL (hop
/// limit) [`SENDER_TTL`] and does not loop back; IPv4 multicast leaves by
/// the interface of `from`, IPv6 multicast by the route (the lab's
/// `ff00::/8`).
pub fn sender(ns: &Netns, from: impl Into<SocketAddr>) -> UdpSocket {
    let from = from.into();
    ns.run_in(|| {
        let s = udp_socket(from.ip());
        match from.ip() {
            IpAddr::V4(a) => {
                s.set_multicast_if_v4(&a).unwrap();
                s.set_multicast_ttl_v4(SENDER_TTL).unwrap();
                s.set_multicast_loop_v4(false).unwrap();
            }
            IpAddr::V6(_) => {
                s.set_multicast_hops_v6(SENDER_TTL).unwrap();
                s.set_multicast_loop_v6(false).unwrap();
            }
        }
        s.bind(&from.into())
            .unwrap_or_else(|e| panic!("bind {from} in {}: {e}", ns.name()));
        s.into()
    })
}

/// A raw ICMPv4 socket in `ns` bound to `from`, for [`assert_ping`].
pub fn ping_socket(ns: &Netns, from: Ipv4Addr) -> Socket {
    ns.run_in(|| {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
        s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        s
    })
}

/// Pings `to` from `sock` (echo request `id`/`seq` carrying `data`) and
/// asserts the reply: an echo reply with a valid checksum, this id and
/// sequence number, and the same data.
pub fn assert_ping(sock: &Socket, to: Ipv4Addr, id: u16, seq: u16, data: &[u8]) {
    let reply = fanout::lab::ping(sock, to, id, seq, data, super::DEADLINE)
        .unwrap_or_else(|e| panic!("ping {to} (id {id:#x}, seq {seq}): {e}"));
    assert_eq!(
        fanout::wire::checksum::data(&reply),
        0xffff,
        "reply checksum"
    );
    assert_eq!(&reply[..2], &[0, 0], "echo reply");
    assert_eq!(
        reply[4..8],
        [id.to_be_bytes(), seq.to_be_bytes()].concat()[..],
        "id and sequence number"
    );
    assert_eq!(&reply[8..], data, "echo data");
}

/// Datagram `seq` of `stream`, `len` bytes (at least the 24-byte header).
pub fn datagram(stream: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    payload::fill(stream, seq, &mut d);
    d
}

/// Datagrams of `stream`: `count` of each size, in size order, sequence
/// numbers from `first_seq` on.
pub fn payloads(stream: u32, first_seq: u64, sizes: &[usize], count: usize) -> Vec<Vec<u8>> {
    let mut seq = first_seq;
    let mut out = Vec::new();
    for &size in sizes {
        for _ in 0..count {
            out.push(datagram(stream, seq, size));
            seq += 1;
        }
    }
    out
}

/// Checks that `got` is exactly a datagram of `stream` (every byte, the
/// length it says) and returns its sequence number.
pub fn check_exact(got: &[u8], stream: u32, what: &str) -> u64 {
    let (s, seq) = payload::check(got)
        .unwrap_or_else(|e| panic!("{what}: corrupt datagram of {} bytes: {e}", got.len()));
    assert_eq!(s, stream, "{what}: datagram of another stream");
    assert!(
        got == &datagram(stream, seq, got.len())[..],
        "{what}: datagram {seq} differs"
    );
    seq
}

/// Sends every datagram to `to` (bounded: the list is finite), yielding
/// every 16 so that the stream stays a stream, not one burst.
pub fn send_all(tx: &UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>]) {
    for (i, d) in datagrams.iter().enumerate() {
        assert_eq!(tx.send_to(d, to).unwrap(), d.len(), "send datagram {i}");
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// The next datagram on `sock` and its sender, within `timeout`.
pub fn recv_from_within(sock: &UdpSocket, timeout: Duration, what: &str) -> (Vec<u8>, SocketAddr) {
    sock.set_nonblocking(false).unwrap();
    let timeout = Some(timeout)
        .filter(|t| !t.is_zero())
        .unwrap_or_else(|| panic!("{what}: no time left to wait"));
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: nothing within {timeout:?}: {e}"));
    buf.truncate(n);
    (buf, from)
}

/// The next datagram on `sock` within `timeout`.
pub fn recv_within(sock: &UdpSocket, timeout: Duration, what: &str) -> Vec<u8> {
    recv_from_within(sock, timeout, what).0
}

/// Receives until `want` datagrams arrived or [`super::DEADLINE`] passed;
/// returns them with their senders (fewer than `want` when some never
/// came: the caller's comparison says which).
pub fn receive(rx: &UdpSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    rx.set_nonblocking(false).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + super::DEADLINE;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < want && Instant::now() < deadline {
        match rx.recv_from(&mut buf) {
            Ok((n, from)) => got.push((buf[..n].to_vec(), from)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    got
}

/// [`receive`] with each datagram's TTL (IPv4) or hop limit (IPv6) as the
/// receiving kernel saw it (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT`).
pub fn receive_with_ttl(rx: &UdpSocket, want: usize) -> Vec<(Vec<u8>, u8)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    use std::os::fd::AsRawFd;
    if rx.local_addr().unwrap().is_ipv4() {
        setsockopt(rx, sockopt::Ipv4RecvTtl, &true).unwrap();
    } else {
        setsockopt(rx, sockopt::Ipv6RecvHopLimit, &true).unwrap();
    }
    rx.set_nonblocking(false).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + super::DEADLINE;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < want && Instant::now() < deadline {
        let mut cmsg = nix::cmsg_space!(libc::c_int);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(rx.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
            Ok(m) => {
                let ttl = m
                    .cmsgs()
                    .unwrap()
                    .find_map(|c| match c {
                        ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                            Some(u8::try_from(t).unwrap())
                        }
                        _ => None,
                    })
                    .expect("the kernel says the TTL");
                let n = m.bytes;
                got.push((buf[..n].to_vec(), ttl));
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("recvmsg: {e}"),
        }
    }
    got
}

/// Whatever is queued on `rx` now (without waiting). A receive error other
/// than "nothing there" fails the test.
pub fn drain(rx: &UdpSocket) -> Vec<Vec<u8>> {
    rx.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("drain: {e}"),
        }
    }
    rx.set_nonblocking(false).unwrap();
    got
}

/// Asserts that nothing is queued on `sock`.
pub fn assert_empty(sock: &UdpSocket, what: &str) {
    let extra = drain(sock);
    assert!(
        extra.is_empty(),
        "{what}: expected nothing, got {} datagrams",
        extra.len()
    );
}

/// Asserts that `got` is exactly `want`, byte for byte and in order.
pub fn assert_stream(label: &str, got: &[(Vec<u8>, SocketAddr)], want: &[Vec<u8>]) {
    for (i, ((g, _), w)) in got.iter().zip(want).enumerate() {
        if g != w {
            let what = payload::check(g).map(|(s, q)| format!("stream {s} seq {q}"));
            panic!(
                "{label}: datagram {i} differs: got {} bytes ({what:?}), want {} bytes",
                g.len(),
                w.len()
            );
        }
    }
    assert_eq!(got.len(), want.len(), "{label}: datagram count");
}

/// A paced, bounded stream on a thread of its own: datagrams `0, 1, ...` of
/// `stream`, `len` bytes each, to `to`, one a millisecond, until stopped,
/// `count` were sent or `max` has passed.
#[derive(Debug)]
pub struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    /// Starts sending from `sock`.
    pub fn start(
        sock: UdpSocket,
        to: impl Into<SocketAddr>,
        (stream, len): (u32, usize),
        count: u64,
        max: Duration,
    ) -> Stream {
        let to = to.into();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut buf = vec![0u8; len];
            for seq in 0..count {
                if s.load(Ordering::Relaxed) || start.elapsed() > max {
                    break;
                }
                payload::fill(stream, seq, &mut buf);
                sock.send_to(&buf, to).unwrap();
                n.store(seq + 1, Ordering::Relaxed);
                // Pacing, not waiting for a condition.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Stream {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// How many datagrams were sent so far (the next one has this number).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the sender and waits for it; a panic of the sender (a failed
    /// send) fails the test here. Returns how many it sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && let Err(panic) = t.join()
        {
            std::panic::resume_unwind(panic);
        }
        self.sent()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
