//! Service definitions: scan a runit-style directory, parse `service.toml`,
//! validate everything into immutable [`ServiceSpec`]s, and report every
//! problem at once with its path (and line:column for TOML).

mod credentials;
mod dependencies;
mod environment;
mod expand;
mod limits;
mod log_files;
mod raw;
mod readiness;
mod ready_kinds;
mod schedule;
mod secrets;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Spanned;

pub use environment::EnvSources;
pub use log_files::LogFiles;
use raw::RawService;
pub use raw::{parse_duration, parse_signal};
pub use ready_kinds::LinePattern;
pub use schedule::{OnFailedRun, Overlap, Schedule, parse as parse_schedule};

use crate::container_env::Vars;
use crate::service::{Backoff, FailureAction, FailurePolicy, Policy, RestartPolicy};
use crate::spawn::{Launch, StdinMode};

/// Settings that apply where a service does not set its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub stop_timeout: Duration,
    pub finish_timeout: Duration,
}

impl Defaults {
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
    pub const FINISH_TIMEOUT: Duration = Duration::from_secs(1);
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            stop_timeout: Self::STOP_TIMEOUT,
            finish_timeout: Self::FINISH_TIMEOUT,
        }
    }
}

/// Where a service's stdout and stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutputMode {
    /// Through baseinit, one whole line at a time, prefixed with the name.
    Prefix,
    /// Straight to baseinit's own stdout and stderr, untouched.
    Inherit,
}

/// How a service tells it is ready (the first that applies, in this order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyCheck {
    /// s6's protocol: it writes a newline to this fd (`notification-fd` file
    /// or `[ready] notification-fd`).
    NotificationFd(i32),
    /// systemd's: it sends `READY=1` to the datagram socket in its
    /// `NOTIFY_SOCKET` (`[ready] sd-notify = true`).
    SdNotify,
    /// This program exits 0 (`[ready] command`, or the `check` script).
    Command(Vec<OsString>),
    /// A TCP connection to this address succeeds (`[ready] tcp`).
    Tcp(String),
    /// A GET of this URL answers 2xx (`[ready] http`).
    Http(crate::http_probe::HttpUrl),
    /// A line of the run's output matches (`[ready] log-line`). In
    /// `[health]`: each matching line is a failed probe.
    LogLine(LinePattern),
    /// Ready as soon as it runs.
    Started,
}

/// Readiness and its probing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub check: ReadyCheck,
    /// Between two probes.
    pub interval: Duration,
    /// One probe's limit.
    pub timeout: Duration,
    /// Probes before giving up on it (it stays not ready).
    pub retries: u32,
}

impl Readiness {
    pub const INTERVAL: Duration = Duration::from_millis(250);
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// 30 s of probes at the default interval.
    pub const RETRIES: u32 = 120;

    pub fn started() -> Self {
        Readiness {
            check: ReadyCheck::Started,
            interval: Self::INTERVAL,
            timeout: Self::TIMEOUT,
            retries: Self::RETRIES,
        }
    }
}

/// One validated service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub dir: PathBuf,
    pub run: Launch,
    /// `finish`, started with runit's two arguments appended.
    pub finish: Option<Launch>,
    /// A `down` file: not started at boot.
    pub down: bool,
    pub policy: Policy,
    /// The `log/` subdirectory's logger, reading this service's stdout.
    pub log: Option<Box<ServiceSpec>>,
    /// `[log]`: its lines kept in a log directory by baseinit itself.
    pub log_files: Option<LogFiles>,
    /// `output` in service.toml; None takes the global `--output`.
    pub output: Option<OutputMode>,
    /// `essential = true`: when it ends for good (or fails), the container
    /// stops, with its exit code.
    pub essential: bool,
    /// Services this one starts after (once they are ready) and stops
    /// before: `after` and `requires` together.
    pub after: Vec<String>,
    /// Services without which this one must not run: stopped when one of
    /// them stops or fails for good, back when they are ready again.
    pub requires: Vec<String>,
    pub readiness: Readiness,
    /// `[health]`: probed while it runs ready; its `check` is a Command or
    /// a Tcp; `retries` failures in a row restart the service.
    pub health: Option<Readiness>,
    /// A hash of the definition's files (`run`, `finish`, `service.toml`, and
    /// the logger's): a rescan restarts a service whose fingerprint changed.
    pub fingerprint: u64,
    /// `env-file`, `env-dir` and `[secrets]`: read at each start.
    pub env_sources: Option<EnvSources>,
    /// `schedule`: its runs start at these times instead of at boot.
    pub schedule: Option<Schedule>,
}

/// One problem in a service tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, for TOML.
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// The service it keeps from running, when it is one service's.
    pub service: Option<String>,
}

impl ConfigError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_owned(),
            position: None,
            message: message.into(),
            service: None,
        }
    }

    fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        ConfigError {
            position: Some(line_column(text, offset)),
            ..ConfigError::new(path, message)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A scanned service tree: the valid services, every problem, and the names
/// of the services that had problems (a rescan leaves those as they were).
#[derive(Debug, Default)]
pub struct Scan {
    pub services: Vec<ServiceSpec>,
    pub errors: Vec<ConfigError>,
    pub broken: Vec<String>,
    /// The directory itself was listed. When not, no service can be told to
    /// be gone: a rescan must remove nothing.
    pub complete: bool,
}

impl Scan {
    /// The problems that keep service `name` from running.
    pub fn problems_of(&self, name: &str) -> impl Iterator<Item = &ConfigError> {
        self.errors.iter().filter(move |e| e.service.as_deref() == Some(name))
    }
}

/// Loads every service under `dir`: each subdirectory (or symlink to one)
/// whose name does not start with `.`, in name order. A missing `dir` is an
/// error only when `required`. Any problem anywhere is an error.
pub fn load_services(dir: &Path, defaults: &Defaults, required: bool) -> Result<Vec<ServiceSpec>, Vec<ConfigError>> {
    let scan = scan_services(dir, defaults, required);
    if scan.errors.is_empty() {
        Ok(scan.services)
    } else {
        Err(scan.errors)
    }
}

/// Like [`load_services`], but keeps the valid services next to the problems.
/// Without a container environment: `${VAR}` needs its default.
pub fn scan_services(dir: &Path, defaults: &Defaults, required: bool) -> Scan {
    scan_services_in(dir, defaults, required, &Vars::new())
}

/// [`scan_services`], `${VAR}` in service.toml expanded from `env` (the
/// container environment, as services get it).
pub fn scan_services_in(dir: &Path, defaults: &Defaults, required: bool, env: &Vars) -> Scan {
    let mut scan = Scan::default();
    let errors = &mut scan.errors;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Not complete: at boot that means no services; on a rescan, that
        // nothing is known to be gone (the directory may be moved back).
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return scan,
        Err(e) => {
            errors.push(ConfigError::new(dir, format!("cannot read service directory: {e}")));
            return scan;
        }
    };
    scan.complete = true;
    // With whether each entry is a symlink (from the directory entry itself:
    // no syscall), which decides how its real path is found below.
    let mut names: Vec<(OsString, bool)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push((entry.file_name(), entry.file_type().is_ok_and(|t| t.is_symlink()))),
            Err(e) => errors.push(ConfigError::new(dir, format!("cannot read service directory: {e}"))),
        }
    }
    names.sort();
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let real_dir = fs::canonicalize(&dir).ok();
    for (name, is_symlink) in names {
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = dir.join(&name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => continue, // runsvdir ignores plain files too
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut error = ConfigError::new(&path, "dangling symlink: its target does not exist");
                error.service = Some(name.to_string_lossy().into_owned());
                errors.push(error);
                scan.broken.push(name.to_string_lossy().into_owned());
                continue;
            }
            Err(e) => {
                let mut error = ConfigError::new(&path, format!("cannot read: {e}"));
                error.service = Some(name.to_string_lossy().into_owned());
                errors.push(error);
                scan.broken.push(name.to_string_lossy().into_owned());
                continue;
            }
        }
        let Some(name) = name.to_str() else {
            errors.push(ConfigError::new(&path, "service name is not valid UTF-8"));
            continue;
        };
        let before = errors.len();
        // The real directory, as runsv's chdir would: removing a symlink from
        // the service directory must not pull `finish`, `control/` or the
        // supervise state out from under a service that is still stopping.
        // An entry that is not a symlink is found under the real service
        // directory, resolved once: canonicalizing each one costs a
        // readlink per path component.
        let path = match &real_dir {
            Some(real_dir) if !is_symlink => real_dir.join(name),
            _ => fs::canonicalize(&path).unwrap_or(path),
        };
        let listing = Listing::of(&path);
        let spec = load_service(name, &path, &listing, defaults, env, errors).and_then(|mut spec| {
            let log_dir = path.join("log");
            if listing.may_have("log") && log_dir.is_dir() {
                let log_listing = Listing::of(&log_dir);
                let log = load_service(&format!("{name}/log"), &log_dir, &log_listing, defaults, env, errors)?;
                spec.fingerprint = spec.fingerprint.rotate_left(1) ^ log.fingerprint;
                spec.log = Some(Box::new(log));
            }
            Some(spec)
        });
        match spec {
            Some(spec) if errors.len() == before => scan.services.push(spec),
            _ => {
                for error in &mut errors[before..] {
                    error.service = Some(name.to_owned());
                }
                scan.broken.push(name.to_owned());
            }
        }
    }
    dependencies::check_dependencies(&mut scan);
    schedule::check_tree(&mut scan);
    scan
}

/// The largest `service.toml` read. A definition is a few hundred bytes;
/// parsing megabytes would stall PID 1's event loop during a rescan.
pub const MAX_SERVICE_TOML: u64 = 1 << 20;

/// Files up to this size are fingerprinted by content: scripts and
/// `service.toml`, where a rewrite with the same text (a `docker cp`, a
/// config tool) must not restart the service. Larger ones are programs, by
/// metadata: reading and hashing every service's binary at boot and at each
/// rescan would cost PID 1 time in proportion to the binaries' size.
pub const FINGERPRINT_BY_CONTENT: u64 = 16 * 1024;

/// Which of the files a service directory may hold are there, read once.
/// Most of them (`finish`, `check`, `down`, `service.toml`,
/// `notification-fd`, `log/`) are usually absent, and asking for each with
/// a failed `stat` would cost more than the rest of the scan; a name the
/// listing lacks is not looked up. Unreadable (no read permission on the
/// directory, say), every name may be there and each is looked up. A set of
/// bits, not of names: a set of strings per service would leave PID 1's
/// heap larger for good.
struct Listing(Option<u8>);

impl Listing {
    const NAMES: [&'static str; 7] = [
        "run",
        "finish",
        "check",
        "down",
        "log",
        "service.toml",
        "notification-fd",
    ];

    fn of(dir: &Path) -> Self {
        let Ok(entries) = fs::read_dir(dir) else {
            return Listing(None);
        };
        let mut present = 0u8;
        for entry in entries {
            let Ok(entry) = entry else {
                return Listing(None);
            };
            let name = entry.file_name();
            if let Some(i) = Self::NAMES.iter().position(|known| name == *known) {
                present |= 1 << i;
            }
        }
        Listing(Some(present))
    }

    /// False only when `name` is known to be absent.
    fn may_have(&self, name: &str) -> bool {
        match (self.0, Self::NAMES.iter().position(|known| *known == name)) {
            (Some(present), Some(i)) => present & (1 << i) != 0,
            _ => true,
        }
    }
}

/// A hash of the files that define a service, to notice edits on a rescan.
/// Small regular files are hashed by content; anything else (a binary `run`,
/// a FIFO that would block the read) by its metadata, never opened.
fn fingerprint(dir: &Path, listing: &Listing) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::hash::DefaultHasher::new();
    for file in ["run", "finish", "service.toml", "notification-fd"] {
        let path = dir.join(file);
        if !listing.may_have(file) {
            0u8.hash(&mut hasher);
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() <= FINGERPRINT_BY_CONTENT => {
                fs::read(&path).ok().hash(&mut hasher)
            }
            Ok(meta) => (meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher),
            Err(_) => 0u8.hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// Reads a `service.toml` that is a regular file of at most
/// [`MAX_SERVICE_TOML`] bytes; anything else is a problem to report, never
/// a blocking open (a FIFO) or a huge parse.
fn read_service_toml(path: &Path) -> io::Result<Vec<u8>> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > MAX_SERVICE_TOML {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("too large: {} bytes (the limit is {MAX_SERVICE_TOML})", meta.len()),
        ));
    }
    fs::read(path)
}

/// Validates one service directory, adding its problems to `errors`.
fn load_service(
    name: &str,
    dir: &Path,
    listing: &Listing,
    defaults: &Defaults,
    env: &Vars,
    errors: &mut Vec<ConfigError>,
) -> Option<ServiceSpec> {
    let before = errors.len();
    let toml_path = dir.join("service.toml");
    let toml = if listing.may_have("service.toml") {
        read_service_toml(&toml_path)
    } else {
        Err(io::ErrorKind::NotFound.into())
    };
    let (mut raw, text) = match toml {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => match toml::from_str::<RawService>(&text) {
                Ok(raw) => (raw, text),
                Err(e) => {
                    let offset = e.span().map_or(0, |s| s.start);
                    errors.push(ConfigError::at(&toml_path, &text, offset, e.message().trim_end()));
                    return None;
                }
            },
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
                errors.push(ConfigError::at(&toml_path, &valid, offset, "not valid UTF-8"));
                return None;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (RawService::default(), String::new()),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            errors.push(ConfigError::new(&toml_path, e.to_string()));
            return None;
        }
        Err(e) => {
            errors.push(ConfigError::new(&toml_path, format!("cannot read: {e}")));
            return None;
        }
    };
    let at = |spanned_start: usize, message: String| ConfigError::at(&toml_path, &text, spanned_start, message);
    expand::expand_raw(&mut raw, &text, env, &at, errors);

    let run_path = dir.join("run");
    let run_exists = listing.may_have("run") && check_executable(&run_path, errors);
    let argv = match (&raw.command, run_exists) {
        (Some(command), true) => {
            errors.push(at(
                command.span().start,
                "both `command` and a `run` file are given: keep one".into(),
            ));
            None
        }
        (Some(command), false) => command_argv(command, dir, &at, errors),
        (None, true) => Some(vec![run_path.into_os_string()]),
        (None, false) => {
            errors.push(ConfigError::new(
                &run_path,
                "missing: a service needs an executable `run` file or `command` in service.toml",
            ));
            None
        }
    };

    let finish_path = dir.join("finish");
    let has_finish = listing.may_have("finish") && check_executable(&finish_path, errors);
    // `check` is run by sv, not by baseinit, but a non-executable one would
    // make every `sv check` fail: catch it here too.
    if listing.may_have("check") {
        check_executable(&dir.join("check"), errors);
    }

    let cwd = match &raw.working_directory {
        None => dir.to_owned(),
        Some(wd) => {
            let path = dir.join(wd.get_ref());
            if !path.is_dir() {
                errors.push(at(
                    wd.span().start,
                    format!("working-directory {} is not a directory", path.display()),
                ));
            }
            path
        }
    };
    let credentials = credentials::credentials(raw.user.as_ref(), raw.group.as_ref(), &at, errors);

    let backoff = raw.backoff.as_ref();
    let duration =
        |value: Option<&Spanned<raw::DurationValue>>, default: Duration| value.map_or(default, |d| d.get_ref().0);
    let policy = Policy {
        restart: raw.restart.unwrap_or(RestartPolicy::Always),
        backoff: Backoff {
            initial: duration(backoff.and_then(|b| b.initial.as_ref()), Backoff::DEFAULT.initial),
            max: duration(backoff.and_then(|b| b.max.as_ref()), Backoff::DEFAULT.max),
            reset_after: duration(
                backoff.and_then(|b| b.reset_after.as_ref()),
                Backoff::DEFAULT.reset_after,
            ),
        },
        stop_signal: raw.stop_signal.map_or(Signal::SIGTERM, |s| s.0),
        stop_timeout: raw.stop_timeout.map_or(defaults.stop_timeout, |d| d.0),
        finish_timeout: raw.finish_timeout.map_or(defaults.finish_timeout, |d| d.0),
        has_finish,
        drain_group: true,
        failure: FailurePolicy {
            max_restarts: raw.max_restarts.unwrap_or(FailurePolicy::DEFAULT.max_restarts),
            window: raw.restart_window.map_or(FailurePolicy::DEFAULT.window, |d| d.0),
            action: match raw.on_failure.unwrap_or(raw::OnFailure::RestartLater) {
                raw::OnFailure::RestartLater => {
                    FailureAction::RestartLater(raw.retry_after.map_or(FailurePolicy::DEFAULT_RETRY_AFTER, |d| d.0))
                }
                raw::OnFailure::Stop => FailureAction::Stop,
                raw::OnFailure::Exit => FailureAction::Exit,
            },
        },
        run_timeout: None,
    };
    if let Some(b) = backoff {
        // Zero would make a crashing service restart in a tight loop.
        for (key, value) in [("initial", &b.initial), ("reset-after", &b.reset_after)] {
            if let Some(value) = value
                && value.get_ref().0.is_zero()
            {
                errors.push(at(value.span().start, format!("backoff.{key} must be more than 0")));
            }
        }
        if let Some(max) = &b.max
            && policy.backoff.max < policy.backoff.initial
        {
            errors.push(at(
                max.span().start,
                "backoff.max is shorter than backoff.initial".into(),
            ));
        }
    }

    let env = raw
        .environment
        .iter()
        .flatten()
        .map(|(k, v)| (OsString::from(k), OsString::from(v.get_ref())))
        .collect();
    for key in raw.environment.iter().flat_map(|e| e.keys()) {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            errors.push(ConfigError::new(
                &toml_path,
                format!("[environment] name {key:?} cannot be an environment variable (empty, or holds '=' or NUL)"),
            ));
        }
    }

    let requires_list: Vec<String> = raw.requires.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default();
    let mut after_list: Vec<String> = raw.after.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default();
    for name in &requires_list {
        if !after_list.contains(name) {
            after_list.push(name.clone());
        }
    }
    let readiness = readiness::readiness(dir, listing, raw.ready.as_ref(), &at, errors);
    let health = schedule::health_probe(&raw).and_then(|h| readiness::health(dir, h, &at, errors));
    ready_kinds::check_output(&raw, &at, errors);
    let schedule = schedule::schedule(&raw, &text, &at, errors);
    let log_files = raw.log.as_ref().and_then(|log| {
        let has_log_dir = listing.may_have("log") && dir.join("log").is_dir();
        let inherit = raw.output == Some(OutputMode::Inherit);
        log_files::log_files(dir, log, has_log_dir, inherit, &at, errors)
    });
    let (env_sources, env_files_hash) = environment::sources(name, dir, &raw, &at, errors);
    let notification_fd = match &readiness.check {
        ReadyCheck::NotificationFd(fd) => Some(*fd),
        _ => None,
    };
    let limits = raw
        .limits
        .as_ref()
        .and_then(|raw| limits::limits(raw, limits::Host::current(), notification_fd, &at, errors));

    if errors.len() > before {
        return None;
    }
    let run = Launch {
        argv: argv?,
        cwd: Some(cwd),
        env,
        stdin: StdinMode::Null,
        credentials,
        foreground: false,
        limits,
    };
    let finish = has_finish.then(|| Launch {
        argv: vec![finish_path.into_os_string()],
        ..run.clone()
    });
    Some(ServiceSpec {
        name: name.to_owned(),
        dir: dir.to_owned(),
        run,
        finish,
        down: listing.may_have("down") && dir.join("down").exists(),
        policy,
        log: None,
        log_files,
        output: raw.output,
        essential: raw.essential.unwrap_or(false),
        after: after_list,
        requires: requires_list,
        readiness,
        health,
        fingerprint: fingerprint(dir, listing) ^ env_files_hash,
        env_sources,
        schedule,
    })
}

/// True when `path` exists; records an error when it is not an executable
/// regular file.
fn check_executable(path: &Path, errors: &mut Vec<ConfigError>) -> bool {
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            errors.push(ConfigError::new(path, "not a regular file"));
            true
        }
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
            errors.push(ConfigError::new(path, "not executable (chmod +x it)"));
            true
        }
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                errors.push(ConfigError::new(path, "dangling symlink: its target does not exist"));
                return true;
            }
            false
        }
        Err(e) => {
            errors.push(ConfigError::new(path, format!("cannot read: {e}")));
            true
        }
    }
}

fn command_argv(
    command: &Spanned<Vec<String>>,
    dir: &Path,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<OsString>> {
    let args = command.get_ref();
    let Some(program) = args.first() else {
        errors.push(at(
            command.span().start,
            "`command` is empty: give at least the program".into(),
        ));
        return None;
    };
    if program.is_empty() {
        errors.push(at(
            command.span().start,
            "`command` starts with an empty program name".into(),
        ));
        return None;
    }
    // A relative path with a slash is relative to the service directory; a bare
    // name is looked up in PATH when it starts.
    let program: OsString = if program.contains('/') {
        dir.join(program).into_os_string()
    } else {
        program.into()
    };
    Some(
        std::iter::once(program)
            .chain(args[1..].iter().map(OsString::from))
            .collect(),
    )
}

/// True for a regular file with an executable bit (following symlinks).
pub fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new() -> Self {
            Tree(tempfile::tempdir().unwrap())
        }
        fn file(&self, path: &str, body: &str, mode: u32) -> &Self {
            let path = self.0.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, body).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            self
        }
        fn run(&self, service: &str) -> &Self {
            self.file(&format!("{service}/run"), "#!/bin/sh\n", 0o755)
        }
        fn toml(&self, service: &str, body: &str) -> &Self {
            self.file(&format!("{service}/service.toml"), body, 0o644)
        }
        fn load(&self) -> Result<Vec<ServiceSpec>, Vec<ConfigError>> {
            load_services(self.0.path(), &Defaults::default(), true)
        }
        /// Every error as "service/file:line:col: message", relative to the tree.
        fn errors(&self) -> Vec<String> {
            let root = format!("{}/", self.0.path().display());
            self.load()
                .expect_err("expected errors")
                .iter()
                .map(|e| e.to_string().replace(&root, ""))
                .collect()
        }
    }

    #[test]
    fn log_sections_are_validated() {
        let tree = Tree::new();
        tree.run("ok").toml(
            "ok",
            "[log]\ndir = \"/var/log/ok\"\nmax-size = \"10MB\"\nmax-files = 3\n",
        );
        let specs = tree.load().unwrap();
        assert_eq!(
            specs[0].log_files,
            Some(LogFiles {
                dir: "/var/log/ok".into(),
                max_size: 10_000_000,
                max_files: 3,
                timestamps: true,
                stdout: true,
            })
        );
        let tree = Tree::new();
        tree.run("a").toml("a", "[log]\nmax-files = 3\n");
        tree.run("b").toml("b", "[log]\ndir = \"x\"\nmax-size = \"1kB\"\n");
        tree.run("c").toml("c", "[log]\ndir = \"x\"\nmax-files = 0\n");
        tree.run("d").toml("d", "[log]\ndir = \"x\"\nmax-size = \"lots\"\n");
        tree.run("e").toml("e", "[log]\ndir = \"x\"\n").run("e/log");
        tree.run("f").toml("f", "output = \"inherit\"\n[log]\ndir = \"x\"\n");
        tree.run("g").toml("g", "[log]\ndir = \"x\"\nsize = 1\n");
        let errors = tree.errors();
        for expected in [
            "a/service.toml:1:1: [log] needs `dir`",
            "b/service.toml:3:12: [log] max-size must be from 4096 to 4294967295 bytes",
            "c/service.toml:3:13: [log] max-files must be 1 or more",
            "d/service.toml:3:12: invalid size \"lots\"",
            "e/service.toml:1:1: both a log/ directory and [log] are given",
            "f/service.toml:2:1: [log] needs the output through baseinit",
            "g/service.toml:3:1: unknown field `size`",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn a_listing_rules_out_only_names_it_read() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("run"), "").unwrap();
        let listing = Listing::of(tmp.path());
        assert!(listing.may_have("run"));
        assert!(!listing.may_have("finish"), "absent from a directory read whole");
        // Unreadable (here: missing): nothing is ruled out, each file is looked up.
        let unread = Listing::of(&tmp.path().join("missing"));
        assert!(unread.may_have("finish"));
    }
    #[test]
    fn every_key_is_read_with_its_value() {
        let t = Tree::new();
        t.file("web/htdocs/.keep", "", 0o644).toml(
            "web",
            r#"
command = ["./bin/server", "--port", "80"]
restart = "on-failure"
stop-signal = "QUIT"
stop-timeout = "1.5s"
finish-timeout = 3
working-directory = "htdocs"
user = "0"
group = "0"
[backoff]
initial = "50ms"
max = "2s"
reset-after = "1m"
[environment]
B = "2"
A = "1"
"#,
        );
        let specs = t.load().unwrap();
        let web = &specs[0];
        let dir = t.0.path().join("web");
        assert_eq!(web.name, "web");
        assert_eq!(
            web.run.argv,
            [dir.join("./bin/server").into_os_string(), "--port".into(), "80".into()]
        );
        assert_eq!(web.run.cwd, Some(dir.join("htdocs")));
        assert_eq!(web.run.env, [("A".into(), "1".into()), ("B".into(), "2".into())]);
        let creds = web.run.credentials.as_ref().unwrap();
        assert_eq!((creds.uid.as_raw(), creds.gid.as_raw()), (0, 0));
        assert_eq!(
            web.policy,
            Policy {
                restart: RestartPolicy::OnFailure,
                backoff: Backoff {
                    initial: Duration::from_millis(50),
                    max: Duration::from_secs(2),
                    reset_after: Duration::from_secs(60),
                },
                stop_signal: Signal::SIGQUIT,
                stop_timeout: Duration::from_millis(1500),
                finish_timeout: Duration::from_secs(3),
                has_finish: false,
                drain_group: true,
                failure: FailurePolicy::DEFAULT,
                run_timeout: None,
            }
        );
    }

    #[test]
    fn a_plain_run_directory_gets_the_defaults() {
        let t = Tree::new();
        t.run("svc")
            .file("svc/finish", "#!/bin/sh\n", 0o755)
            .file("svc/down", "", 0o644);
        let spec = &t.load().unwrap()[0];
        let dir = t.0.path().join("svc");
        assert_eq!(spec.run.argv, [dir.join("run").into_os_string()]);
        assert_eq!(spec.run.cwd, Some(dir.clone()));
        assert_eq!(
            spec.finish.as_ref().unwrap().argv,
            [dir.join("finish").into_os_string()]
        );
        assert!(spec.down);
        assert_eq!(spec.policy.restart, RestartPolicy::Always);
        assert_eq!(spec.policy.backoff, Backoff::DEFAULT);
        assert_eq!(spec.policy.stop_signal, Signal::SIGTERM);
        assert_eq!(spec.policy.stop_timeout, Defaults::STOP_TIMEOUT);
        assert!(spec.policy.has_finish);
    }

    #[test]
    fn which_entries_are_services() {
        let t = Tree::new();
        t.run("b").run("a").run(".hidden").file("notes.txt", "", 0o644);
        let target = tempfile::tempdir().unwrap();
        fs::write(target.path().join("run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(target.path().join("run"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink(target.path(), t.0.path().join("linked")).unwrap();
        let specs = t.load().unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "linked"]);
        // A symlinked service lives in its real directory.
        assert_eq!(specs[2].dir, fs::canonicalize(target.path()).unwrap());
        // So does every service when the service directory itself is
        // reached through a symlink.
        let via = tempfile::tempdir().unwrap();
        symlink(t.0.path(), via.path().join("service")).unwrap();
        let specs = load_services(&via.path().join("service"), &Defaults::default(), true).unwrap();
        assert_eq!(specs[0].dir, fs::canonicalize(t.0.path()).unwrap().join("a"));
        assert_eq!(specs[2].dir, fs::canonicalize(target.path()).unwrap());
    }

    #[test]
    fn a_script_is_fingerprinted_by_content_and_a_program_by_metadata() {
        let t = Tree::new();
        let dir = t.0.path().join("a");
        t.run("a");
        let run = dir.join("run");
        let rewrite = |body: &[u8], mtime_s: u64| {
            fs::write(&run, body).unwrap();
            let at = std::time::UNIX_EPOCH + Duration::from_secs(mtime_s);
            fs::File::options()
                .write(true)
                .open(&run)
                .unwrap()
                .set_modified(at)
                .unwrap();
        };
        rewrite(b"#!/bin/sh\nexec sleep 1\n", 1_000_000);
        let script = fingerprint(&dir, &Listing::of(&dir));
        rewrite(b"#!/bin/sh\nexec sleep 1\n", 2_000_000);
        assert_eq!(
            fingerprint(&dir, &Listing::of(&dir)),
            script,
            "the same text, rewritten later"
        );
        rewrite(b"#!/bin/sh\nexec sleep 2\n", 2_000_000);
        assert_ne!(fingerprint(&dir, &Listing::of(&dir)), script, "another text");

        let program = vec![7u8; FINGERPRINT_BY_CONTENT as usize + 1];
        rewrite(&program, 1_000_000);
        let before = fingerprint(&dir, &Listing::of(&dir));
        rewrite(&program, 1_000_000);
        assert_eq!(
            fingerprint(&dir, &Listing::of(&dir)),
            before,
            "the same bytes and metadata"
        );
        rewrite(&program, 2_000_000);
        assert_ne!(fingerprint(&dir, &Listing::of(&dir)), before, "a new modification time");
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let t = Tree::new();
        t.run("a").toml("a", "restart = \"sometimes\"\n");
        t.run("b").toml("b", "[backoff]\ninitial = \"5s\"\nmax = \"1s\"\n");
        t.run("c").toml("c", "stop-timeout = \"soon\"\n");
        t.run("d").toml("d", "command = [\"x\"]\n");
        t.toml("e", "command = []\n");
        t.run("f").toml("f", "user = \"no-such-user-here\"\n");
        t.run("g").toml("g", "working-directory = \"nowhere\"\n");
        t.run("h").toml("h", "[environment]\n\"A=B\" = \"x\"\n");
        t.run("i").toml("i", "[backoff]\njitter = 1\n");
        t.file("j/run", "#!/bin/sh\n", 0o644).file("j/finish", "", 0o644);
        t.run("k").file("k/service.toml", "\u{fffd}", 0o644);
        fs::write(t.0.path().join("k/service.toml"), b"a = 1\n\xff").unwrap();
        symlink("/nonexistent/target", t.0.path().join("l")).unwrap();
        t.run("m").toml("m", "user = \"4242\"\n");
        t.run("n").toml("n", "[backoff]\ninitial = 0\nreset-after = \"0s\"\n");
        t.run("o").toml("o", "stop-timeout = \"400d\"\n");
        let errors = t.errors();
        let expected = [
            "a/service.toml:1:11: invalid value: string \"sometimes\", expected one of \"always\", \"on-failure\", \"never\"",
            "b/service.toml:3:7: backoff.max is shorter than backoff.initial",
            "c/service.toml:1:16: invalid duration \"soon\": expected number at 0 (write e.g. \"5s\" or \"250ms\")",
            "d/service.toml:1:11: both `command` and a `run` file are given: keep one",
            "e/service.toml:1:11: `command` is empty: give at least the program",
            "f/service.toml:1:8: unknown user `no-such-user-here` (not in the passwd database)",
            "g/service.toml:1:21: working-directory",
            "h/service.toml: [environment] name \"A=B\" cannot be an environment variable",
            "i/service.toml:2:1: unknown field `jitter`, expected one of `initial`, `max`, `reset-after`",
            "j/run: not executable (chmod +x it)",
            "j/finish: not executable (chmod +x it)",
            "k/service.toml:2:1: not valid UTF-8",
            "l: dangling symlink: its target does not exist",
            "m/service.toml:1:8: uid 4242 has no passwd entry, so it has no group: set `group` too",
            "n/service.toml:2:11: backoff.initial must be more than 0",
            "n/service.toml:3:15: backoff.reset-after must be more than 0",
            "o/service.toml:1:16: duration \"400d\" is too long: at most a year",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got:?}\nwant {want:?}...");
        }
    }

    #[test]
    fn a_huge_or_fifo_service_toml_is_an_error_and_never_read() {
        let t = Tree::new();
        t.run("huge").run("fifo").run("fine");
        let huge = t.0.path().join("huge/service.toml");
        fs::File::create(&huge).unwrap().set_len(MAX_SERVICE_TOML + 1).unwrap();
        nix::unistd::mkfifo(&t.0.path().join("fifo/service.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A FIFO would block a read (and the fingerprint) forever.
        let errors = t.errors();
        assert_eq!(
            errors,
            [
                "fifo/service.toml: not a regular file".to_owned(),
                format!(
                    "huge/service.toml: too large: {} bytes (the limit is {MAX_SERVICE_TOML})",
                    MAX_SERVICE_TOML + 1
                ),
            ]
        );
        let scan = scan_services(t.0.path(), &Defaults::default(), true);
        assert_eq!(
            scan.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["fine"]
        );
    }

    #[test]
    fn dependencies_must_exist_and_form_no_cycle() {
        let t = Tree::new();
        t.run("a").toml("a", "after = [\"b\"]\n");
        t.run("b").toml("b", "requires = [\"c\"]\n");
        t.run("c").toml("c", "after = [\"a\"]\n");
        t.run("d").toml("d", "after = [\"nope\"]\n");
        t.run("e").toml("e", "after = [\"e\"]\n");
        t.run("f").toml("f", "requires = [\"g\"]\nafter = [\"g\", \"h\"]\n");
        t.run("g");
        t.run("h").toml("h", "after = [\"g\"]\n");
        let scan = scan_services(t.0.path(), &Defaults::default(), true);
        let root = format!("{}/", t.0.path().display());
        let errors: Vec<String> = scan.errors.iter().map(|e| e.to_string().replace(&root, "")).collect();
        assert!(
            errors.contains(&"a/service.toml: dependency cycle: a -> b -> c -> a".to_owned()),
            "{errors:#?}"
        );
        assert!(
            errors.contains(&"d/service.toml: `nope` in after/requires is not a service of this directory".to_owned()),
            "{errors:#?}"
        );
        assert!(
            errors.contains(&"e/service.toml: `e` cannot come after itself".to_owned()),
            "{errors:#?}"
        );
        let good: Vec<&str> = scan.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(good, ["f", "g", "h"], "a diamond is fine");
        let f = &scan.services[0];
        assert_eq!(f.after, ["g", "h"]);
        assert_eq!(f.requires, ["g"]);
    }

    #[test]
    fn readiness_is_chosen_in_order() {
        let t = Tree::new();
        t.run("fd").file("fd/notification-fd", "3\n", 0o644);
        t.run("cmd").toml(
            "cmd",
            "[ready]\ncommand = [\"pg_isready\"]\ninterval = \"1s\"\nretries = 5\n",
        );
        t.run("check").file("check/check", "#!/bin/sh\n", 0o755);
        t.run("tcp").toml("tcp", "[ready]\ntcp = \"127.0.0.1:5432\"\n");
        t.run("sd").toml("sd", "[ready]\nsd-notify = true\n");
        t.run("plain");
        t.run("badfd").toml("badfd", "[ready]\nnotification-fd = 1\n");
        let scan = scan_services(t.0.path(), &Defaults::default(), true);
        let by = |n: &str| scan.services.iter().find(|s| s.name == n).unwrap().readiness.clone();
        assert_eq!(by("fd").check, ReadyCheck::NotificationFd(3));
        assert_eq!(by("cmd").check, ReadyCheck::Command(vec!["pg_isready".into()]));
        assert_eq!((by("cmd").interval, by("cmd").retries), (Duration::from_secs(1), 5));
        assert_eq!(
            by("check").check,
            ReadyCheck::Command(vec![t.0.path().join("check/check").into_os_string()])
        );
        assert_eq!(by("tcp").check, ReadyCheck::Tcp("127.0.0.1:5432".into()));
        assert_eq!(by("sd").check, ReadyCheck::SdNotify);
        assert_eq!(by("plain").check, ReadyCheck::Started);
        assert_eq!(scan.broken, ["badfd"]);
        assert!(
            scan.errors[0].message.contains("must be between 3 and 1023"),
            "{:?}",
            scan.errors
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_only_when_named() {
        let t = Tree::new();
        let missing = t.0.path().join("nope");
        assert_eq!(load_services(&missing, &Defaults::default(), false), Ok(Vec::new()));
        assert!(load_services(&missing, &Defaults::default(), true).is_err());
    }

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
