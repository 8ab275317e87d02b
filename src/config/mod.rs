//! Service definitions: scan a runit-style directory, parse `service.toml`,
//! validate everything into immutable [`ServiceSpec`]s, and report every
//! problem at once with its path (and line:column for TOML).

mod raw;

use std::ffi::{CString, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
use toml::Spanned;

use raw::RawService;
pub use raw::{parse_duration, parse_signal};

use crate::service::{Backoff, Policy, RestartPolicy};
use crate::spawn::{Credentials, Launch, StdinMode};

/// Settings that apply where a service does not set its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub stop_timeout: Duration,
    pub finish_timeout: Duration,
}

impl Defaults {
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
    pub const FINISH_TIMEOUT: Duration = Duration::from_secs(2);
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            stop_timeout: Self::STOP_TIMEOUT,
            finish_timeout: Self::FINISH_TIMEOUT,
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
}

/// One problem in a service tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, for TOML.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_owned(),
            position: None,
            message: message.into(),
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

/// Loads every service under `dir`: each subdirectory (or symlink to one)
/// whose name does not start with `.`, in name order. A missing `dir` is an
/// error only when `required`.
pub fn load_services(dir: &Path, defaults: &Defaults, required: bool) -> Result<Vec<ServiceSpec>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => {
            return Err(vec![ConfigError::new(
                dir,
                format!("cannot read service directory: {e}"),
            )]);
        }
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name()),
            Err(e) => errors.push(ConfigError::new(dir, format!("cannot read service directory: {e}"))),
        }
    }
    names.sort();
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let mut services = Vec::new();
    for name in names {
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = dir.join(&name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => continue, // runsvdir ignores plain files too
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                errors.push(ConfigError::new(&path, "dangling symlink: its target does not exist"));
                continue;
            }
            Err(e) => {
                errors.push(ConfigError::new(&path, format!("cannot read: {e}")));
                continue;
            }
        }
        let Some(name) = name.to_str() else {
            errors.push(ConfigError::new(&path, "service name is not valid UTF-8"));
            continue;
        };
        if let Some(spec) = load_service(name, &path, defaults, &mut errors) {
            services.push(spec);
        }
    }
    if errors.is_empty() { Ok(services) } else { Err(errors) }
}

/// Validates one service directory, adding its problems to `errors`.
fn load_service(name: &str, dir: &Path, defaults: &Defaults, errors: &mut Vec<ConfigError>) -> Option<ServiceSpec> {
    let before = errors.len();
    let toml_path = dir.join("service.toml");
    let (raw, text) = match fs::read(&toml_path) {
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
        Err(e) => {
            errors.push(ConfigError::new(&toml_path, format!("cannot read: {e}")));
            return None;
        }
    };
    let at = |spanned_start: usize, message: String| ConfigError::at(&toml_path, &text, spanned_start, message);

    let run_path = dir.join("run");
    let run_exists = check_executable(&run_path, errors);
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
    let has_finish = check_executable(&finish_path, errors);

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
    let credentials = credentials(raw.user.as_ref(), raw.group.as_ref(), &at, errors);

    let backoff = raw.backoff.as_ref();
    let policy = Policy {
        restart: raw.restart.unwrap_or(RestartPolicy::Always),
        backoff: Backoff {
            initial: backoff
                .and_then(|b| b.initial)
                .map_or(Backoff::DEFAULT.initial, |d| d.0),
            max: backoff
                .and_then(|b| b.max.as_ref())
                .map_or(Backoff::DEFAULT.max, |d| d.get_ref().0),
            reset_after: backoff
                .and_then(|b| b.reset_after)
                .map_or(Backoff::DEFAULT.reset_after, |d| d.0),
        },
        stop_signal: raw.stop_signal.map_or(Signal::SIGTERM, |s| s.0),
        stop_timeout: raw.stop_timeout.map_or(defaults.stop_timeout, |d| d.0),
        finish_timeout: raw.finish_timeout.map_or(defaults.finish_timeout, |d| d.0),
        has_finish,
        drain_group: true,
    };
    if let Some(max) = backoff.and_then(|b| b.max.as_ref())
        && policy.backoff.max < policy.backoff.initial
    {
        errors.push(at(
            max.span().start,
            "backoff.max is shorter than backoff.initial".into(),
        ));
    }

    let env = raw
        .environment
        .iter()
        .flatten()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    for key in raw.environment.iter().flat_map(|e| e.keys()) {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            errors.push(ConfigError::new(
                &toml_path,
                format!("[environment] name {key:?} cannot be an environment variable (empty, or holds '=' or NUL)"),
            ));
        }
    }

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
        down: dir.join("down").exists(),
        policy,
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

fn credentials(
    user: Option<&Spanned<String>>,
    group: Option<&Spanned<String>>,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Credentials> {
    if user.is_none() && group.is_none() {
        return None;
    }
    let passwd = match user {
        None => None,
        Some(user) => match lookup_user(user.get_ref()) {
            Ok(found) => Some((user, found)),
            Err(message) => {
                errors.push(at(user.span().start, message));
                return None;
            }
        },
    };
    let gid = match group {
        Some(group) => match lookup_group(group.get_ref()) {
            Ok(gid) => gid,
            Err(message) => {
                errors.push(at(group.span().start, message));
                return None;
            }
        },
        None => match &passwd {
            Some((_, Ok(user))) => user.gid,
            Some((spanned, Err(uid))) => {
                errors.push(at(
                    spanned.span().start,
                    format!("uid {uid} has no passwd entry, so it has no group: set `group` too"),
                ));
                return None;
            }
            None => return None,
        },
    };
    Some(match passwd {
        Some((_, Ok(user))) => {
            let groups = CString::new(user.name.clone())
                .ok()
                .and_then(|name| getgrouplist(&name, gid).ok())
                .unwrap_or_else(|| vec![gid]);
            Credentials {
                uid: user.uid,
                gid,
                groups,
                identity: Some((user.name, user.dir)),
            }
        }
        Some((_, Err(uid))) => Credentials {
            uid,
            gid,
            groups: vec![gid],
            identity: None,
        },
        // Only `group`: keep the uid, change the group.
        None => Credentials {
            uid: Uid::current(),
            gid,
            groups: vec![gid],
            identity: None,
        },
    })
}

/// A user by name or number: Ok(Ok(entry)), Ok(Err(uid)) for a number with no
/// passwd entry, Err(message) for an unknown name.
fn lookup_user(user: &str) -> Result<Result<User, Uid>, String> {
    if let Ok(n) = user.parse::<u32>() {
        let uid = Uid::from_raw(n);
        return Ok(User::from_uid(uid).ok().flatten().ok_or(uid));
    }
    match User::from_name(user) {
        Ok(Some(entry)) => Ok(Ok(entry)),
        Ok(None) => Err(format!("unknown user `{user}` (not in the passwd database)")),
        Err(e) => Err(format!("cannot look up user `{user}`: {e}")),
    }
}

fn lookup_group(group: &str) -> Result<Gid, String> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(group) {
        Ok(Some(entry)) => Ok(entry.gid),
        Ok(None) => Err(format!("unknown group `{group}` (not in the group database)")),
        Err(e) => Err(format!("cannot look up group `{group}`: {e}")),
    }
}

/// True for a regular file with an executable bit (following symlinks).
pub fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
