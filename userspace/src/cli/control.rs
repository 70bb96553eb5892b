//! The control socket of `fanout run` ([`fanout::control`] is the
//! protocol): a Unix stream socket served by a thread of its own
//! (`fanout-control`, holding no capability), for `fanout ctl` and `fanout
//! top`.
//!
//! Contract: [`Server::bind`] creates the socket before the engine starts
//! (root only, 0600; with a group, 0660 and that group), and refuses a path
//! another live `fanout run` serves; a stale socket file is replaced.
//! [`Server::update`] hands it the running plan's counters every second;
//! `show` answers from the last two (the rates are over the interval
//! between them). `reload` is handed to the supervision loop through
//! [`Server::requests`], which answers it; the control thread waits for
//! that answer at most [`RELOAD_WAIT`]; `change` (`fanout ctl add-output`
//! and the like) goes the same way. One connection at a time, one
//! request each, [`READ_TIMEOUT`] to send it. [`Server::stop`] ends the
//! thread and removes the socket.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout::control::{PlanFlow, Rates, Request, Response, Show};
use fanout::stats::Snapshot;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request read.
const MAX_REQUEST: u64 = 64 << 10;
/// How long the control thread waits for the supervision loop to carry a
/// reload out.
const RELOAD_WAIT: Duration = Duration::from_secs(30);
/// How often the idle server looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What `show` is built from.
#[derive(Debug)]
struct State {
    config: String,
    started: Instant,
    flows: Vec<PlanFlow>,
    runtime_changes: Vec<String>,
    before: Option<(Snapshot, Instant)>,
    now: (Snapshot, Instant),
}

/// A request only the supervision loop can carry out, and where to answer.
pub struct Pending {
    pub request: Request,
    pub reply: SyncSender<Response>,
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another fanout run serves {0} (stop it, or give this one [engine] control)")]
    InUse(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("[engine] control_group = {0:?}: no such group")]
    NoGroup(String),
}

/// The running server.
pub struct Server {
    path: PathBuf,
    listener: Option<UnixListener>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: (Sender<Pending>, Option<Receiver<Pending>>),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Creates the socket at `path` (and its directory, 0755, if missing),
    /// 0600, or 0660 owned by `group`.
    pub fn bind(path: &Path, group: Option<&str>, config: &Path) -> Result<Server, BindError> {
        let shown = path.display().to_string();
        let io = |source| BindError::Io {
            path: shown.clone(),
            source,
        };
        let gid = match group {
            None => None,
            Some(g) => match nix::unistd::Group::from_name(g) {
                Ok(Some(g)) => Some(g.gid),
                _ => return Err(BindError::NoGroup(g.to_owned())),
            },
        };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        if path.exists() {
            // A live server answers; a stale file (a crash) is replaced.
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(shown));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        // Until the chmod, the umask's mode: no write bit for others, so
        // nobody else can connect in between.
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        if let Some(gid) = gid {
            nix::unistd::chown(path, None, Some(gid)).map_err(|e| io(e.into()))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let empty = Snapshot {
            engine: String::new(),
            flows: Vec::new(),
            xdp: None,
        };
        let (tx, rx) = channel();
        Ok(Server {
            path: path.to_owned(),
            listener: Some(listener),
            state: Arc::new(Mutex::new(State {
                config: config.display().to_string(),
                started: Instant::now(),
                flows: Vec::new(),
                runtime_changes: Vec::new(),
                before: None,
                now: (empty, Instant::now()),
            })),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            requests: (tx, Some(rx)),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The requests the supervision loop carries out (`reload`); taken once.
    pub fn requests(&mut self) -> Option<Receiver<Pending>> {
        self.requests.1.take()
    }

    /// Serves the running plan `plan` and its counters `first`, on the
    /// thread `fanout-control`.
    pub fn start(&mut self, plan: &fanout::plan::Plan, first: Snapshot) -> io::Result<()> {
        {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            s.flows = PlanFlow::of(plan);
            s.started = Instant::now();
            s.now = (first, Instant::now());
        }
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        let state = self.state.clone();
        let stop = self.stop.clone();
        let requests = self.requests.0.clone();
        let (dropped, narrowed) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fanout-control".into())
            .spawn(move || {
                if let Err(e) = fanout::privileges::drop_thread(&[]) {
                    log::warn!("fanout-control: dropping capabilities: {e}");
                }
                let _ = dropped.send(());
                serve(&listener, &state, &stop, &requests);
            })?;
        // Back only once the thread holds no capability.
        let _ = narrowed.recv();
        self.thread = Some(thread);
        Ok(())
    }

    /// The running plan changed: `show` answers with `plan`, and
    /// `runtime_changes`, how it differs from the file.
    pub fn set_plan(&self, plan: &fanout::plan::Plan, runtime_changes: Vec<String>) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.flows = PlanFlow::of(plan);
        s.runtime_changes = runtime_changes;
    }

    /// The counters `show` answers from next (the rates are over the time
    /// since the previous update).
    pub fn update(&self, snap: Snapshot) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let last = std::mem::replace(&mut s.now, (snap, Instant::now()));
        s.before = Some(last);
    }

    /// Ends the thread and removes the socket.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("control: removing {}: {e}", self.path.display());
        }
    }
}

fn serve(
    listener: &UnixListener,
    state: &Mutex<State>,
    stop: &AtomicBool,
    requests: &Sender<Pending>,
) {
    let mut last_error: Option<io::ErrorKind> = None;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, state, requests) {
                    log::debug!("control: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                if last_error != Some(e.kind()) {
                    log::warn!("control: accept: {e}");
                    last_error = Some(e.kind());
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

/// What `show` says now.
fn show(state: &Mutex<State>) -> Show {
    let s = state.lock().unwrap_or_else(PoisonError::into_inner);
    let (now, at) = &s.now;
    let rates = match &s.before {
        Some((before, then)) => Rates::between(before, now, at.duration_since(*then).as_secs_f64()),
        None => Rates::between(now, now, 0.0),
    };
    Show {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        config: s.config.clone(),
        uptime_secs: s.started.elapsed().as_secs_f64(),
        flows: s.flows.clone(),
        runtime_changes: s.runtime_changes.clone(),
        stats: now.clone(),
        rates,
    }
}

/// Reads one request from `stream` and answers it.
fn answer(stream: UnixStream, state: &Mutex<State>, requests: &Sender<Pending>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::error(1, format!("error: not a request: {e}")),
        Ok(Request::Show) => Response {
            error: None,
            status: 0,
            show: Some(Box::new(show(state))),
            message: None,
        },
        Ok(request) => {
            let (reply, answer) = sync_channel(1);
            if requests.send(Pending { request, reply }).is_err() {
                Response::error(1, "error: fanout run is stopping")
            } else {
                answer
                    .recv_timeout(RELOAD_WAIT)
                    .unwrap_or_else(|_| Response::error(1, "error: fanout run did not answer"))
            }
        }
    };
    let mut out = serde_json::to_string(&response).map_err(io::Error::other)?;
    out.push('\n');
    let mut stream = stream;
    stream.write_all(out.as_bytes())?;
    stream.flush()
}
