//! `fanout lab gen`: sends numbered, self-checking datagrams
//! ([`fanout::lab::payload`]) to a multicast group or a unicast address.
//!
//! Contract: bounded in count (`--count`) and in time (`--max-seconds`), paced
//! at `--rate` datagrams per second from a fixed schedule (no bursts to catch
//! up beyond the schedule), sizes cycling by sequence number (`--sizes`).
//! Exit 0 when every datagram was sent, 1 on a send failure or when the time
//! bound cut the run short, 2 on bad arguments.
//!
//! `--fast` (the benchmark's sender): one size, unpaced unless `--rate` is
//! given; datagrams leave as UDP GSO trains (`UDP_SEGMENT`, up to 64
//! datagrams per buffer) batched by `sendmmsg`, so one system call carries
//! hundreds of datagrams. The train is filled once: sequence numbers repeat
//! every train, so fast runs are for counting sinks, not checking ones. The
//! time bound is a normal end in fast mode (exit 0).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use fanout::lab::payload;
use socket2::{Domain, Protocol, Socket, Type};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destination: GROUP:PORT or IP:PORT (IPv6 as [ADDR]:PORT).
    #[arg(long)]
    dest: SocketAddr,
    /// Egress interface (SO_BINDTODEVICE, and the multicast interface).
    #[arg(long)]
    iface: Option<String>,
    /// TTL / hop limit (multicast or unicast, after the destination). Default for
    /// multicast: 8 (hops left for a replicator: fanout, like a router, does not
    /// replicate a datagram received with TTL 1, the kernel's default).
    #[arg(long)]
    ttl: Option<u32>,
    /// Payload sizes in bytes, cycled by sequence number (each 24..=65507).
    #[arg(long, value_delimiter = ',', default_value = "1472")]
    sizes: Vec<usize>,
    /// Number of datagrams (sequence numbers 0..COUNT).
    #[arg(long)]
    count: u64,
    /// Datagrams per second (1..=1000000); default 1000, unpaced with --fast.
    #[arg(long)]
    rate: Option<u64>,
    /// Stream id written into every datagram.
    #[arg(long, default_value_t = 0)]
    stream: u32,
    /// Hard time bound of the whole run, in seconds.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// GSO trains batched by sendmmsg, as fast as possible (see the module docs).
    #[arg(long)]
    fast: bool,
}

/// Paced rate when `--rate` is not given (ordinary mode).
const DEFAULT_RATE: u64 = 1000;

/// Largest UDP payload over IPv4 (IPv6 jumbograms aside).
const MAX_PAYLOAD: usize = 65507;

pub fn main(args: Args) -> ExitCode {
    if let Err(err) = validate(&args) {
        eprintln!("fanout gen: {err:#}");
        return ExitCode::from(2);
    }
    let sent = if args.fast {
        fast::generate(&args)
    } else {
        generate(&args)
    };
    match sent {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("fanout gen: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn validate(args: &Args) -> anyhow::Result<()> {
    if args.sizes.is_empty() {
        bail!("--sizes: at least one size is needed");
    }
    if let Some(bad) = args
        .sizes
        .iter()
        .find(|&&s| !(payload::HEADER_LEN..=MAX_PAYLOAD).contains(&s))
    {
        bail!(
            "--sizes: {bad} is outside {}..={MAX_PAYLOAD}",
            payload::HEADER_LEN
        );
    }
    if let Some(rate) = args.rate
        && !(1..=1_000_000).contains(&rate)
    {
        bail!("--rate: {rate} is outside 1..=1000000");
    }
    if args.fast && args.sizes.len() != 1 {
        bail!("--fast: exactly one --sizes value (a GSO train has equal-sized datagrams)");
    }
    if !(args.max_seconds > 0.0 && args.max_seconds <= 86_400.0) {
        bail!("--max-seconds: {} is outside (0, 86400]", args.max_seconds);
    }
    if args.dest.port() == 0 {
        bail!("--dest: port 0");
    }
    Ok(())
}

/// The IPv4 address of `iface` in this namespace, if it has one.
fn ipv4_of(iface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|ifa| ifa.interface_name == iface)
        .find_map(|ifa| ifa.address?.as_sockaddr_in().map(|sin| sin.ip()))
}

pub(crate) fn open(args: &Args) -> anyhow::Result<UdpSocket> {
    let dest = args.dest;
    let sock = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))
        .context("socket(UDP)")?;
    if let Some(iface) = &args.iface {
        sock.bind_device(Some(iface.as_bytes()))
            .with_context(|| format!("SO_BINDTODEVICE {iface}"))?;
    }
    match dest.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            sock.set_multicast_ttl_v4(args.ttl.unwrap_or(8))
                .context("IP_MULTICAST_TTL")?;
            if let Some(local) = args.iface.as_deref().and_then(ipv4_of) {
                sock.set_multicast_if_v4(&local)
                    .with_context(|| format!("IP_MULTICAST_IF {local}"))?;
            }
        }
        IpAddr::V6(group) if group.is_multicast() => {
            sock.set_multicast_hops_v6(args.ttl.unwrap_or(8))
                .context("IPV6_MULTICAST_HOPS")?;
            if let Some(iface) = &args.iface {
                let index = nix::net::if_::if_nametoindex(iface.as_str())
                    .with_context(|| format!("--iface {iface}: no such interface"))?;
                sock.set_multicast_if_v6(index)
                    .with_context(|| format!("IPV6_MULTICAST_IF {iface}"))?;
            }
        }
        IpAddr::V4(_) => {
            if let Some(ttl) = args.ttl {
                sock.set_ttl_v4(ttl).context("IP_TTL")?;
            }
        }
        IpAddr::V6(_) => {
            if let Some(ttl) = args.ttl {
                sock.set_unicast_hops_v6(ttl).context("IPV6_UNICAST_HOPS")?;
            }
        }
    }
    let any: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    sock.bind(&any.into()).context("bind")?;
    sock.connect(&dest.into())
        .with_context(|| format!("connect {dest}"))?;
    Ok(sock.into())
}

/// Sends the datagrams; `Ok(false)` when the time bound stopped the run early.
fn generate(args: &Args) -> anyhow::Result<bool> {
    let sock = open(args)?;
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    let mut buf = vec![0u8; largest];
    let start = Instant::now();
    let hard_stop = start + Duration::from_secs_f64(args.max_seconds);
    let (mut sent, mut bytes, mut retries) = (0u64, 0u64, 0u64);
    let mut timed_out = false;
    'datagrams: for seq in 0..args.count {
        // The schedule: datagram `seq` leaves no earlier than start + seq/rate.
        let rate = args.rate.unwrap_or(DEFAULT_RATE);
        let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
        let now = Instant::now();
        if due > hard_stop {
            timed_out = true;
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
        }
        let size = args.sizes[(seq % args.sizes.len() as u64) as usize];
        let datagram = &mut buf[..size];
        payload::fill(args.stream, seq, datagram);
        loop {
            match sock.send(datagram) {
                Ok(n) if n == size => break,
                Ok(n) => bail!("datagram {seq}: short send of {n} of {size} bytes"),
                // The egress queue is full for a moment: retry within the bound.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    if Instant::now() >= hard_stop {
                        timed_out = true;
                        break 'datagrams;
                    }
                    retries += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("send datagram {seq} to {}", args.dest));
                }
            }
        }
        sent += 1;
        bytes += size as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fanout gen: sent {sent}/{} datagrams ({bytes} bytes) to {} in {secs:.2} s ({:.0} pps, {retries} ENOBUFS retries){}",
        args.count,
        args.dest,
        sent as f64 / secs.max(1e-9),
        if timed_out {
            ", STOPPED by --max-seconds"
        } else {
            ""
        },
    );
    Ok(!timed_out)
}

/// The `--fast` path: UDP GSO trains, several per `sendmmsg`.
mod fast {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd as _;
    use std::time::{Duration, Instant};

    use anyhow::Context as _;
    use fanout::lab::payload;
    use nix::sys::socket::{
        MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg, setsockopt, sockopt,
    };

    use super::Args;

    /// Datagrams per GSO train at most (the kernel's UDP_MAX_SEGMENTS is 64 or more).
    const MAX_SEGMENTS: usize = 64;
    /// Largest UDP payload of one GSO buffer (IPv4: 65535 - 20 - 8).
    const MAX_GSO_BYTES: usize = 65507;
    /// Send buffer asked for (SO_SNDBUFFORCE as root).
    const SNDBUF: usize = 32 << 20;
    /// Trains per `sendmmsg`.
    const TRAINS: usize = 8;

    /// Sends trains until `--count` datagrams or `--max-seconds`; `Ok(true)` either way.
    pub(super) fn generate(args: &Args) -> anyhow::Result<bool> {
        let size = args.sizes[0];
        let sock = super::open(args)?;
        // A deep send buffer: datagrams queued at the receiving end (a veth
        // peer's NAPI ring) still count against it, and a shallow one would
        // pace the generator by the receiver's wakeups instead of its capacity.
        if setsockopt(&sock, sockopt::SndBufForce, &SNDBUF).is_err() {
            let _ = setsockopt(&sock, sockopt::SndBuf, &SNDBUF);
        }
        let per_train = (MAX_GSO_BYTES / size).clamp(1, MAX_SEGMENTS);
        // One datagram per buffer when it cannot be a train (GSO needs 2+).
        if per_train > 1 {
            setsockopt(&sock, sockopt::UdpGsoSegment, &(size as i32))
                .context("UDP_SEGMENT (GSO)")?;
        }
        let mut train = vec![0u8; per_train * size];
        for (i, datagram) in train.chunks_mut(size).enumerate() {
            payload::fill(args.stream, i as u64, datagram);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = (0..TRAINS).map(|_| [IoSlice::new(&train)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = vec![None; TRAINS];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(TRAINS, None);

        let start = Instant::now();
        let hard_stop = start + Duration::from_secs_f64(args.max_seconds);
        let (mut sent, mut calls, mut retries) = (0u64, 0u64, 0u64);
        let mut timed_out = false;
        while sent < args.count {
            let now = Instant::now();
            if now >= hard_stop {
                timed_out = true;
                break;
            }
            if let Some(rate) = args.rate {
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                if due > hard_stop {
                    timed_out = true;
                    break;
                }
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            // Whole trains only while they fit in --count; the tail goes alone.
            let left = args.count - sent;
            // Paced: one train per call, so bursts stay short.
            let most = if args.rate.is_some() { 1 } else { TRAINS };
            let trains = ((left / per_train as u64) as usize).clamp(1, most);
            let n = if left < per_train as u64 {
                // The tail: `left` datagrams, one plain send each.
                let n = sock
                    .send(&train[..size])
                    .with_context(|| format!("send to {}", args.dest))?;
                anyhow::ensure!(n == size, "short send of {n} of {size} bytes");
                sent += 1;
                calls += 1;
                continue;
            } else {
                match sendmmsg(
                    sock.as_raw_fd(),
                    &mut headers,
                    &iovs[..trains],
                    &addrs[..trains],
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(results) => results.count(),
                    Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EAGAIN) => {
                        retries += 1;
                        std::thread::sleep(Duration::from_micros(50));
                        0
                    }
                    Err(err) => {
                        return Err(err).with_context(|| format!("sendmmsg to {}", args.dest));
                    }
                }
            };
            calls += 1;
            sent += (n * per_train) as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "fanout gen: sent {sent}/{} datagrams ({} bytes) to {} in {secs:.2} s ({:.0} pps, {retries} ENOBUFS retries; fast: {per_train} per GSO train, {calls} calls){}",
            args.count,
            sent * size as u64,
            args.dest,
            sent as f64 / secs.max(1e-9),
            if timed_out {
                ", time bound reached"
            } else {
                ""
            },
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    use fanout::lab::payload;
    use fanout::lab::{Netns, privileged, unique_prefix};

    use super::Args;

    fn fast_args(dest: std::net::SocketAddr, size: usize, count: u64) -> Args {
        Args {
            dest,
            iface: None,
            ttl: None,
            sizes: vec![size],
            count,
            rate: None,
            stream: 7,
            max_seconds: 10.0,
            fast: true,
        }
    }

    /// `--fast` sends exactly `--count` datagrams (whole GSO trains, then the
    /// tail one by one), each intact, sequence numbers cycling per train.
    /// Inside a namespace of its own, over its loopback.
    #[test]
    fn fast_sends_exactly_count_intact_datagrams() {
        if !privileged("fast_sends_exactly_count_intact_datagrams") {
            return;
        }
        let ns = Netns::new(&unique_prefix("gen")).unwrap();
        for (size, count) in [(1472usize, 1000u64), (8972, 61), (64, 200)] {
            let per_train = (65507 / size).clamp(1, 64) as u64;
            let received = ns.run_in(|| {
                let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
                let _ = nix::sys::socket::setsockopt(
                    &rx,
                    nix::sys::socket::sockopt::RcvBufForce,
                    &(32usize << 20),
                );
                rx.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let args = fast_args(rx.local_addr().unwrap(), size, count);
                assert!(super::fast::generate(&args).unwrap());
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(5);
                while (got.len() as u64) < count && Instant::now() < deadline {
                    if let Ok(n) = rx.recv(&mut buf) {
                        assert_eq!(n, size);
                        got.push(payload::check(&buf[..n]).unwrap());
                    }
                }
                // Nothing beyond the count.
                assert!(rx.recv(&mut buf).is_err(), "more than {count} datagrams");
                got
            });
            assert_eq!(received.len() as u64, count, "size {size}");
            for (i, &(stream, seq)) in received.iter().enumerate() {
                assert_eq!(stream, 7);
                let i = i as u64;
                let in_trains = count / per_train * per_train;
                let want = if i < in_trains { i % per_train } else { 0 };
                assert_eq!(seq, want, "size {size}, datagram {i}");
            }
        }
    }
}
