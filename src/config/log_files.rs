//! `[log]` in service.toml: the service's own log directory, kept by PID 1
//! in svlogd's layout (`current` and rotated `@<tai64n>.s` files).

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::ConfigError;
use super::raw::RawLog;

/// How a service's lines are kept on disk (validated `[log]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFiles {
    /// The directory: absolute, or as given relative to the service's.
    pub dir: PathBuf,
    /// `current` is rotated before it would pass this.
    pub max_size: u64,
    /// Rotated files kept; the oldest beyond go.
    pub max_files: u32,
    /// An ISO 8601 timestamp before each line.
    pub timestamps: bool,
    /// The lines also go to baseinit's output, prefixed as usual.
    pub stdout: bool,
}

impl LogFiles {
    pub const DEFAULT_MAX_SIZE: u64 = 1_000_000;
    pub const DEFAULT_MAX_FILES: u32 = 10;
    /// Smaller, and a long line or two would rotate the file each time.
    pub const MIN_SIZE: u64 = 4096;
    /// svlogd's own upper limit on `s`.
    pub const MAX_SIZE: u64 = u32::MAX as u64;
}

/// Validates `[log]` of the service in `dir`; a `log/` directory beside it
/// is an error (one or the other keeps the lines).
pub(super) fn log_files(
    dir: &Path,
    raw: &Spanned<RawLog>,
    has_log_dir: bool,
    inherit: bool,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<LogFiles> {
    let start = raw.span().start;
    let raw = raw.get_ref();
    if has_log_dir {
        errors.push(at(
            start,
            "both a log/ directory and [log] are given: keep one (log/ runs a logger, [log] has baseinit write the files)".into(),
        ));
    }
    if inherit {
        errors.push(at(
            start,
            "[log] needs the output through baseinit: not with output = \"inherit\"".into(),
        ));
    }
    let Some(given) = &raw.dir else {
        errors.push(at(
            start,
            "[log] needs `dir`, the directory to keep the files in".into(),
        ));
        return None;
    };
    if given.get_ref().is_empty() {
        errors.push(at(given.span().start, "[log] dir is empty".into()));
        return None;
    }
    let max_size = match &raw.max_size {
        None => LogFiles::DEFAULT_MAX_SIZE,
        Some(size) => {
            let bytes = size.get_ref().0;
            if !(LogFiles::MIN_SIZE..=LogFiles::MAX_SIZE).contains(&bytes) {
                errors.push(at(
                    size.span().start,
                    format!(
                        "[log] max-size must be from {} to {} bytes (\"4KB\" to \"4GB\"), not {bytes}",
                        LogFiles::MIN_SIZE,
                        LogFiles::MAX_SIZE
                    ),
                ));
            }
            bytes
        }
    };
    let max_files = match &raw.max_files {
        None => LogFiles::DEFAULT_MAX_FILES,
        Some(n) if *n.get_ref() == 0 => {
            errors.push(at(
                n.span().start,
                "[log] max-files must be 1 or more (rotated files kept)".into(),
            ));
            0
        }
        Some(n) => *n.get_ref(),
    };
    Some(LogFiles {
        dir: dir.join(given.get_ref()),
        max_size,
        max_files,
        timestamps: raw.timestamps.unwrap_or(true),
        stdout: raw.stdout.unwrap_or(true),
    })
}
