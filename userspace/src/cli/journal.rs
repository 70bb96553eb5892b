//! Logs that fit the journal: under systemd (`JOURNAL_STREAM` names our
//! stderr), every line fanout writes to stderr starts with its syslog
//! priority (`<3>` error, `<4>` warning, `<5>` notice, `<6>` info, `<7>`
//! debug), the way `sd-daemon(3)` says, and carries no timestamp of its own
//! (the journal stamps it); elsewhere lines stay as they were (a timestamp
//! and the level word from the logger).
//!
//! Contract: [`init`] sets the logger up once (level: `--log-level`, else
//! `RUST_LOG`, else `info`); [`line`] prefixes a line fanout prints itself
//! (the engine announcement, errors) when the journal reads stderr.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::OnceLock;

use log::{Level, LevelFilter};

/// Priority of an error (`<3>`).
pub const ERR: u8 = 3;
/// Priority of a notice (`<5>`): the engine announcement.
pub const NOTICE: u8 = 5;

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` is
/// `DEVICE:INODE` of the stream systemd connected, and stderr is it.
pub fn active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(st) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
            return false;
        };
        matches_stream(&stream.to_string_lossy(), st.st_dev, st.st_ino)
    })
}

/// Whether `JOURNAL_STREAM`'s `DEVICE:INODE` is `dev`, `ino`.
fn matches_stream(stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = stream.split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// The syslog priority of a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `text` as a line of priority `priority` on stderr: prefixed under the
/// journal, as it is elsewhere.
pub fn line(priority: u8, text: &str) -> String {
    if active() {
        format!("<{priority}>{text}")
    } else {
        text.to_owned()
    }
}

/// Sets the logger up: `level` (`--log-level`) over `RUST_LOG`, default
/// `info`; under the journal, priority prefixes and no timestamps.
pub fn init(level: Option<LevelFilter>) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_target(false);
    if let Some(level) = level {
        builder.filter_level(level);
    }
    if active() {
        builder
            .format(|buf, record| writeln!(buf, "<{}>{}", priority(record.level()), record.args()));
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_ours_only_when_device_and_inode_match() {
        assert!(matches_stream("8:1234", 8, 1234));
        assert!(!matches_stream("8:1235", 8, 1234));
        assert!(!matches_stream("9:1234", 8, 1234));
        assert!(!matches_stream("8", 8, 1234));
        assert!(!matches_stream("x:y", 8, 1234));
        assert!(!matches_stream("", 8, 1234));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        let p: Vec<u8> = [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .into_iter()
        .map(priority)
        .collect();
        assert_eq!(p, [3, 4, 6, 7, 7]);
    }
}
