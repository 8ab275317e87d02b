//! Services' `[log]` directories, kept by the output writer thread: the
//! lines of each batch appended to its directory (svlogd's layout, through
//! [`crate::logdir`]), and every failure reported once, never waited out.
//!
//! The thread writes baseinit's stdout too, so a slow disk slows the
//! relay as a slow stdout does (back-pressure, no loss), while the event
//! loop never waits on it. A directory that cannot be opened or written
//! (read-only, full) loses the lines meant for it, the service runs on,
//! and the lines still go to stdout when `stdout = true`: a service is
//! never held up for a disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::config::LogFiles;
use crate::logdir::{Config, LogDir, LogDirError, Settings, Timestamp};

/// How long a directory that failed is left alone before the next batch
/// tries it again: a failing open or write per batch would cost every
/// flood its system calls for nothing.
const RETRY: Duration = Duration::from_secs(10);

/// One service's lines for its directory: whole lines, each with its
/// newline, unstamped.
pub struct FileBatch {
    pub files: Arc<LogFiles>,
    pub lines: Vec<u8>,
}

/// A directory as the writer keeps it.
struct Kept {
    settings: LogFiles,
    dir: Option<LogDir>,
    /// The last failure, reported; lines are dropped until `RETRY` after.
    failed: Option<(SystemTime, String)>,
    dropped: u64,
}

/// The writer thread's open directories, by path.
#[derive(Default)]
pub struct LogDirs {
    kept: HashMap<PathBuf, Kept>,
}

fn settings(files: &LogFiles) -> Settings {
    Settings {
        timestamp: files.timestamps.then_some(Timestamp::Iso8601),
        // svlogd's default `-l`: `current` is rotated once within this of
        // `max-size` (and before any line that would pass it).
        line_max: 1000,
        defaults: Config {
            max_size: files.max_size,
            max_files: u64::from(files.max_files),
            min_files: u64::from(files.max_files),
            ..Config::default()
        },
        // service.toml says how the directory is kept, not a `config` file.
        read_config: false,
        buffer: 64 * 1024,
    }
}

impl LogDirs {
    /// Appends `batch`'s lines to its directory, opening it (again, with
    /// new settings) as needed.
    pub fn write(&mut self, batch: &FileBatch) {
        let now = SystemTime::now();
        let path = &batch.files.dir;
        let kept = self.kept.entry(path.clone()).or_insert_with(|| Kept {
            settings: (*batch.files).clone(),
            dir: None,
            failed: None,
            dropped: 0,
        });
        if kept.settings != *batch.files {
            // A rescan changed the service's [log]: the next lines follow it.
            if let Some(dir) = kept.dir.take() {
                close(dir, now);
            }
            kept.settings = (*batch.files).clone();
            kept.failed = None;
        }
        let lines = batch.lines.split_inclusive(|&b| b == b'\n').count() as u64;
        if let Some((at, _)) = &kept.failed
            && now.duration_since(*at).unwrap_or_default() < RETRY
        {
            kept.dropped += lines;
            return;
        }
        let result = match &mut kept.dir {
            Some(dir) => append(dir, &batch.lines, now),
            None => LogDir::open(path, &settings(&kept.settings), now).and_then(|mut dir| {
                let _ = dir.take_notices();
                let written = append(&mut dir, &batch.lines, now);
                kept.dir = Some(dir);
                written
            }),
        };
        match result {
            Ok(()) => {
                if let Some((_, why)) = kept.failed.take() {
                    info!(
                        "{}: writing log files again ({} line(s) lost since: {why})",
                        path.display(),
                        kept.dropped
                    );
                    kept.dropped = 0;
                }
            }
            Err(e) => {
                let why = e.to_string();
                if kept.failed.as_ref().is_none_or(|(_, before)| *before != why) {
                    warn!(
                        "cannot keep log files in {}: {why}; its lines are lost until it works again{}",
                        path.display(),
                        if kept.settings.stdout {
                            " (they still go to stdout)"
                        } else {
                            ""
                        }
                    );
                }
                kept.dropped += lines;
                kept.failed = Some((now, why));
            }
        }
    }

    /// Closes every directory cleanly (`current` marked finished), at exit.
    pub fn close_all(&mut self) {
        let now = SystemTime::now();
        for (_, kept) in self.kept.drain() {
            if let Some(dir) = kept.dir {
                close(dir, now);
            }
        }
    }

    /// Whether any directory is open (and so must be closed at exit).
    pub fn any_open(&self) -> bool {
        self.kept.values().any(|k| k.dir.is_some())
    }
}

fn append(dir: &mut LogDir, lines: &[u8], now: SystemTime) -> Result<(), LogDirError> {
    for line in lines.split_inclusive(|&b| b == b'\n') {
        dir.write_line(line.strip_suffix(b"\n").unwrap_or(line), now)?;
    }
    dir.flush(now)
}

fn close(dir: LogDir, now: SystemTime) {
    if let Err(failed) = dir.close(now) {
        let (dir, e) = *failed;
        warn!("cannot close the log files in {}: {e}", dir.path().display());
    }
}
