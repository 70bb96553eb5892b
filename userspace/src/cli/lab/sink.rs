//! `fanout lab sink`: receives numbered lab datagrams on one socket per listen
//! address and reports, per address, what arrived ([`fanout::lab::SeqTracker`]).
//!
//! Contract: stops when every address received all `--expect` datagrams (then
//! lingers briefly to catch late duplicates), when nothing arrived for
//! `--timeout` seconds, or at `--max-seconds`; always writes the JSON report
//! ([`fanout::lab::SinkReport`]) and prints a table. Exit 0 when every
//! address is clean (nothing missing, corrupted, duplicated or unexpected),
//! 1 otherwise or on a runtime failure, 2 on bad arguments.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use fanout::lab::{SeqTracker, SinkReport};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Addresses to listen on: IP:PORT[,IP:PORT...] (repeatable); a multicast
    /// IP needs a matching --join.
    #[arg(long, value_delimiter = ',', required = true)]
    listen: Vec<SocketAddr>,
    /// Join GROUP on interface IF (repeatable), for listen addresses on GROUP.
    #[arg(long, value_name = "GROUP@IF")]
    join: Vec<String>,
    /// Datagrams expected on each listen address (sequence numbers 0..N).
    #[arg(long)]
    expect: u64,
    /// Idle timeout in seconds: stop when nothing arrived for this long.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Hard time bound of the whole run, in seconds.
    #[arg(long, default_value_t = 300.0)]
    max_seconds: f64,
    /// Once complete, keep listening this long for late duplicates.
    #[arg(long, default_value_t = 0.2)]
    linger: f64,
    /// Only this stream id counts; others are "unexpected".
    #[arg(long)]
    stream: Option<u32>,
    /// Where to write the JSON report.
    #[arg(long)]
    report: PathBuf,
    /// Created once every socket is bound and joined (for scripts to wait on).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// Receive buffer asked for each socket (SO_RCVBUFFORCE as root).
const RCVBUF: usize = 8 << 20;
/// How often a receiving thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

pub fn main(args: Args) -> ExitCode {
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("fanout sink: {err:#}");
            return ExitCode::from(2);
        }
    };
    match receive(&args, &plan) {
        Ok(report) => {
            print_table(&report);
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("fanout sink: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Each listen address with the interface index it joins on (multicast only).
type Plan = Vec<(SocketAddr, Option<u32>)>;

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let secs = |name: &str, v: f64| {
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{name}: {v} is outside 0..=86400"))
        }
    };
    secs("--timeout", args.timeout)?;
    secs("--max-seconds", args.max_seconds)?;
    secs("--linger", args.linger)?;
    let mut joins = Vec::new();
    for join in &args.join {
        let (group, iface) = join
            .split_once('@')
            .with_context(|| format!("--join {join:?}: expected GROUP@IF"))?;
        let group: IpAddr = group
            .parse()
            .with_context(|| format!("--join {join:?}: {group:?} is not an IP address"))?;
        if !group.is_multicast() {
            bail!("--join {join:?}: {group} is not a multicast group");
        }
        if !args.listen.iter().any(|l| l.ip() == group) {
            bail!("--join {join:?}: no --listen address on {group}");
        }
        let index = nix::net::if_::if_nametoindex(iface)
            .with_context(|| format!("--join {join:?}: no interface {iface:?}"))?;
        joins.push((group, index));
    }
    args.listen
        .iter()
        .map(|&listen| {
            if !listen.ip().is_multicast() {
                return Ok((listen, None));
            }
            let index = joins
                .iter()
                .find(|(g, _)| *g == listen.ip())
                .map(|&(_, i)| i)
                .with_context(|| {
                    format!(
                        "--listen {listen}: a multicast address needs --join {}@IF",
                        listen.ip()
                    )
                })?;
            Ok((listen, Some(index)))
        })
        .collect()
}

fn open(listen: SocketAddr, join: Option<u32>) -> anyhow::Result<UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .context("socket(UDP)")?;
    sock.set_reuse_address(true).context("SO_REUSEADDR")?;
    if nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF).is_err()
    {
        // Not root: the ordinary option, capped by net.core.rmem_max.
        let _ = sock.set_recv_buffer_size(RCVBUF);
    }
    match (listen.ip(), join) {
        (IpAddr::V4(group), Some(index)) => sock
            .join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(index))
            .with_context(|| format!("join {group} on ifindex {index}"))?,
        (IpAddr::V6(group), Some(index)) => sock
            .join_multicast_v6(&group, index)
            .with_context(|| format!("join {group} on ifindex {index}"))?,
        _ => {}
    }
    if listen.is_ipv6() {
        sock.set_only_v6(true).context("IPV6_V6ONLY")?;
    }
    sock.bind(&listen.into())
        .with_context(|| format!("bind {listen}"))?;
    sock.set_read_timeout(Some(POLL)).context("SO_RCVTIMEO")?;
    Ok(sock.into())
}

/// Receives until complete, idle or out of time; writes and returns the report.
fn receive(args: &Args, plan: &Plan) -> anyhow::Result<SinkReport> {
    let sockets = plan
        .iter()
        .map(|&(listen, join)| open(listen, join).with_context(|| format!("--listen {listen}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(ready) = &args.ready_file {
        std::fs::write(ready, b"ready\n")
            .with_context(|| format!("write --ready-file {}", ready.display()))?;
    }
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let last_rx_ms = AtomicU64::new(0);
    let complete = AtomicUsize::new(0);
    let elapsed_ms = || start.elapsed().as_millis() as u64;

    let (trackers, stopped) = std::thread::scope(|scope| {
        let threads: Vec<_> = sockets
            .iter()
            .map(|sock| {
                let (stop, last_rx_ms, complete) = (&stop, &last_rx_ms, &complete);
                scope.spawn(move || {
                    let mut tracker = SeqTracker::new(args.expect, args.stream);
                    let mut buf = vec![0u8; 65536];
                    let mut counted = tracker.is_complete();
                    if counted {
                        complete.fetch_add(1, Ordering::Relaxed);
                    }
                    while !stop.load(Ordering::Relaxed) {
                        match sock.recv(&mut buf) {
                            Ok(n) => {
                                tracker.record(&buf[..n]);
                                last_rx_ms.fetch_max(elapsed_ms(), Ordering::Relaxed);
                                if !counted && tracker.is_complete() {
                                    counted = true;
                                    complete.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(err)
                                if matches!(
                                    err.kind(),
                                    std::io::ErrorKind::WouldBlock
                                        | std::io::ErrorKind::TimedOut
                                        | std::io::ErrorKind::Interrupted
                                ) => {}
                            Err(err) => return Err(err),
                        }
                    }
                    Ok(tracker)
                })
            })
            .collect();

        let timeout_ms = (args.timeout * 1000.0) as u64;
        let deadline = start + Duration::from_secs_f64(args.max_seconds);
        let mut complete_since: Option<Instant> = None;
        let stopped = loop {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            if complete.load(Ordering::Relaxed) == sockets.len() {
                let since = *complete_since.get_or_insert(now);
                if now - since >= Duration::from_secs_f64(args.linger) {
                    break "complete";
                }
            }
            if now >= deadline {
                break "deadline";
            }
            if elapsed_ms().saturating_sub(last_rx_ms.load(Ordering::Relaxed)) >= timeout_ms {
                break "idle-timeout";
            }
            if threads.iter().any(|t| t.is_finished()) {
                break "receive-error";
            }
        };
        stop.store(true, Ordering::Relaxed);
        let trackers: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("receiver thread panicked"))
            .collect();
        (trackers, stopped)
    });

    let mut outputs = Vec::with_capacity(trackers.len());
    for ((listen, _), tracker) in plan.iter().zip(trackers) {
        let tracker = tracker.with_context(|| format!("receive on {listen}"))?;
        outputs.push(tracker.report(&listen.to_string()));
    }
    let report = SinkReport {
        outputs,
        stopped: stopped.to_owned(),
        elapsed_ms: elapsed_ms(),
    };
    let json = serde_json::to_string_pretty(&report).context("serialize report")?;
    std::fs::write(&args.report, json + "\n")
        .with_context(|| format!("write --report {}", args.report.display()))?;
    Ok(report)
}

fn print_table(report: &SinkReport) {
    println!(
        "fanout sink: stopped ({}) after {} ms",
        report.stopped, report.elapsed_ms
    );
    println!(
        "{:<28} {:>9} {:>9} {:>8} {:>6} {:>9} {:>9} {:>10}  status",
        "listen", "expected", "received", "missing", "dup", "reorder", "corrupt", "unexpected"
    );
    for o in &report.outputs {
        println!(
            "{:<28} {:>9} {:>9} {:>8} {:>6} {:>9} {:>9} {:>10}  {}",
            o.name,
            o.expected,
            o.received,
            o.missing,
            o.duplicated,
            o.reordered,
            o.corrupted,
            o.unexpected,
            o.status()
        );
    }
}
