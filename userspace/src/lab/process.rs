//! Child processes of the lab (engine, generator, sink) and waiting on
//! conditions with deadlines.
//!
//! Contract: a [`Process`] collects its child's stdout and stderr on
//! background threads (a chatty child never blocks on a full pipe) and kills
//! and reaps a child still running when dropped: nothing outlives a test or
//! the demo. [`wait_until`] polls a condition until a deadline, never longer.

use std::process::Command;

use super::netns::{LabError, describe};

/// A child process started by a lab user (engine, generator, sink), with its
/// stdout and stderr collected on background threads (so a chatty child never
/// blocks on a full pipe). Dropping a still-running `Process` kills it
/// (SIGKILL, by its pid) and reaps it: nothing outlives a test or the demo.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: std::process::Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<()>>,
    /// What the child wrote to stderr so far (the collector appends).
    stderr_bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// What a finished [`Process`] left behind.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr piped; `name` labels errors.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Process, LabError> {
        use std::{io::Read, process::Stdio};
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: describe(cmd),
                source,
            })?;
        let collect = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = child.stdout.take().map(|p| collect(Box::new(p)));
        let stderr_bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().map(|mut pipe| {
            let into = stderr_bytes.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    into.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&buf[..n]);
                }
            })
        });
        Ok(Process {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            stderr_bytes,
        })
    }

    /// What the child has written to stderr so far (it may still run).
    pub fn stderr_so_far(&self) -> String {
        let bytes = self
            .stderr_bytes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The child's pid (with [`Netns::command`], the program's own pid).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM to the child (by pid).
    pub fn terminate(&self) -> Result<(), LabError> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(|source| {
            LabError::Signal {
                name: self.name.clone(),
                source,
            }
        })
    }

    /// Waits up to `timeout` for the child to exit and returns its status and
    /// output; on timeout it is an error (and dropping `self` kills it).
    pub fn finish(&mut self, timeout: std::time::Duration) -> Result<Finished, LabError> {
        let name = self.name.clone();
        let status =
            wait_until(timeout, || self.child.try_wait().ok().flatten()).ok_or_else(|| {
                LabError::Timeout {
                    what: format!("{name} to exit"),
                    timeout,
                }
            })?;
        let join = |h: Option<std::thread::JoinHandle<String>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        Ok(Finished {
            status,
            stdout: join(self.stdout.take()),
            stderr: self.stderr_so_far(),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `probe` every 10 ms until it returns `Some`, or `timeout` passes.
pub fn wait_until<T>(
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
