//! `/metrics` of `fanout run`: a small HTTP/1.1 server on its own thread
//! (`fanout-metrics`, holding no capability) that answers `GET /metrics`
//! with [`fanout::metrics::render`] of the engine's latest snapshot.
//!
//! Contract: [`Server::bind`] binds the address before the engine starts
//! (a busy or foreign address stops `fanout run` with exit 1 before anything
//! is attached), [`Server::update`] hands it a snapshot (the supervision
//! loop does every second, and once more at the stop), [`Server::stop`]
//! ends the thread. One connection at a time, each closed after its
//! answer: `GET /metrics` (or `HEAD`) gets 200 and the exposition, any
//! other path 404, any other method 405, a request that does not arrive
//! within [`READ_TIMEOUT`] or exceeds [`MAX_REQUEST`] bytes 400. A
//! scraper never blocks the engine: the datapath does not know it exists.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fanout::metrics::{BuildInfo, CONTENT_TYPE, render};
use fanout::stats::Snapshot;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request accepted (line and headers).
const MAX_REQUEST: usize = 8192;
/// How often the idle server looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What `fanout_build_info` says of this binary.
pub fn build_info() -> BuildInfo {
    let sha = env!("FANOUT_EBPF_SHA256");
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        revision: env!("FANOUT_REVISION").to_owned(),
        xdp_program: if sha.is_empty() || fanout::xdp::program::embedded_object().is_none() {
            "not embedded".to_owned()
        } else {
            format!("embedded sha256:{sha}")
        },
    }
}

/// The running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    latest: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    listener: Option<TcpListener>,
    build: BuildInfo,
}

impl Server {
    /// Binds `addr` (nothing served until [`Server::start`]).
    pub fn bind(addr: SocketAddr, build: BuildInfo) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            addr: listener.local_addr()?,
            latest: Arc::new(Mutex::new(Snapshot {
                engine: String::new(),
                flows: Vec::new(),
                xdp: None,
            })),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            listener: Some(listener),
            build,
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `first` from now on, on the thread `fanout-metrics`.
    pub fn start(&mut self, first: Snapshot) -> io::Result<()> {
        self.update(first);
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        let latest = self.latest.clone();
        let stop = self.stop.clone();
        let build = self.build.clone();
        let (dropped, narrowed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fanout-metrics".into())
            .spawn(move || {
                if let Err(e) = fanout::privileges::drop_thread(&[]) {
                    log::warn!("fanout-metrics: dropping capabilities: {e}");
                }
                let _ = dropped.send(());
                serve(&listener, &latest, &stop, &build);
            })?;
        // Back only once the thread holds no capability.
        let _ = narrowed.recv();
        self.thread = Some(thread);
        Ok(())
    }

    /// What the next scrape sees.
    pub fn update(&self, snap: Snapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = snap;
    }

    /// Ends the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, latest: &Mutex<Snapshot>, stop: &AtomicBool, build: &BuildInfo) {
    let mut last_error: Option<io::ErrorKind> = None;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, latest, build) {
                    log::debug!("metrics: {peer}: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                if last_error != Some(e.kind()) {
                    log::warn!("metrics: accept: {e}");
                    last_error = Some(e.kind());
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Reads one request from `stream` and answers it.
fn answer(mut stream: TcpStream, latest: &Mutex<Snapshot>, build: &BuildInfo) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    let complete = loop {
        if request.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if request.len() > MAX_REQUEST {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&request);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = match (complete, method, path) {
        (false, _, _) => ("400 Bad Request", "bad request\n".to_owned()),
        (_, "GET" | "HEAD", "/metrics") => {
            let snap = latest
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            ("200 OK", render(&snap, build))
        }
        (_, "GET" | "HEAD", _) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "GET /metrics only\n".to_owned()),
    };
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
