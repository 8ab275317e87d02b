//! The container environment: my_init's /etc/container_environment import and export.
//!
//! At boot, baseinit takes its own environment, adds every variable of the
//! directory (one file per variable, the file holds the value) that is not set
//! already, so `docker run -e` wins, and writes the result back: to the
//! directory, to `container_environment.sh` (`export NAME=VALUE` lines, for
//! shells) and to `container_environment.json` (one object). After each startup
//! script the directory is read again, so a script can add, change or delete a
//! variable by editing files, and both dumps are rewritten. Nothing here fails
//! boot: every problem is logged and the environment in memory stays whole.
//!
//! Choices:
//!
//! - **Missing directory.** Nothing to import; it is created (0700) for the
//!   export, so startup scripts can add variables. (my_init exported nothing
//!   then, not even the `.sh`.)
//! - **Stale files.** The directory is the source of truth and persists: images
//!   ship files there, and a `docker restart` keeps what the last boot wrote.
//!   Nothing is deleted at boot. A variable whose file a startup script deletes
//!   leaves the environment, and the `.sh` and `.json`, at the next rewrite.
//!   After boot, a startup script's edits are what count: a file it did not
//!   touch does not override the environment, so a variable whose file could
//!   not be written (read-only `/etc`) keeps its `docker run -e` value.
//! - **Names.** A name that cannot be a variable (empty, or holding `=` or a
//!   NUL byte) is dropped, from the inherited environment and from the
//!   directory. A name that cannot be a file (holding `/`, starting with `.`,
//!   longer than 255 bytes) stays in the environment but gets no file; files
//!   starting with `.` (`.gitkeep`, editors' backups) are never imported. A name
//!   that is not a shell name (`[A-Za-z_][A-Za-z0-9_]*`) or that bash makes
//!   read-only (`EUID`, `PPID`, …: assigning one aborts a POSIX-mode bash) is
//!   left out of the `.sh`; my_init renamed such names instead, so names could
//!   collide. Each such name gets one warning, once, saying all it is left out of.
//! - **HOME, USER, GROUP, UID, GID, SHELL** get no file and no `.sh` line, as in
//!   my_init, but the `.json` holds them: my_init dumps its whole environment
//!   there. They are always kept from the environment after a startup script
//!   (my_init loses HOME there); files with their names matter at boot only.
//! - **JSON** holds strings only, so a name or value that is not UTF-8 is
//!   written with U+FFFD replacement characters (warned once per name). The
//!   directory and the `.sh` keep every byte.
//! - **Modes.** A directory baseinit creates is 0700; a new `.sh` or `.json` is
//!   0640, group `docker_env` when that group exists (as in phusion's image).
//!   An existing one keeps its mode, owner and group: a rewrite never widens
//!   access. A new variable file is 0600 (my_init used the umask): values may
//!   be secrets, and an image may open the directory up. The `.sh` and `.json`
//!   are replaced atomically (a temporary file beside them, then a rename);
//!   a variable file is rewritten in place, and only when its value changed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use nix::unistd::Uid;

mod dump;
mod files;

use dump::{json_dump, shell_dump};
use files::{read_value, write_all};

/// Variables by name, in byte order (so the dumps are stable).
pub type Vars = BTreeMap<OsString, OsString>;

/// Where the environment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvPaths {
    /// One file per variable: `/etc/container_environment`.
    pub dir: PathBuf,
    /// `export NAME=VALUE` lines: `/etc/container_environment.sh`.
    pub sh: PathBuf,
    /// One JSON object: `/etc/container_environment.json`.
    pub json: PathBuf,
}

impl EnvPaths {
    /// my_init's layout: `DIR`, `DIR.sh`, `DIR.json`.
    pub fn beside(dir: &std::path::Path) -> Self {
        let with = |ext: &str| {
            let mut path = dir.as_os_str().to_owned();
            path.push(ext);
            PathBuf::from(path)
        };
        EnvPaths {
            dir: dir.to_owned(),
            sh: with(".sh"),
            json: with(".json"),
        }
    }
}

impl Default for EnvPaths {
    fn default() -> Self {
        EnvPaths::beside(std::path::Path::new("/etc/container_environment"))
    }
}

/// my_init's skip-list: never written as files or .sh lines, but kept in the environment.
pub const NOT_EXPORTED: [&str; 6] = ["HOME", "USER", "GROUP", "UID", "GID", "SHELL"];

/// Names bash makes read-only (UID is in [`NOT_EXPORTED`] already). `export
/// PPID=…` is an error there, and a POSIX-mode bash sourcing the `.sh` (as
/// `sh`, or from a profile) would stop at it and miss every line after it.
const SHELL_READ_ONLY: [&str; 5] = ["BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS"];

/// The group phusion's image gives the dumps, so non-root users in it can read them.
const DUMP_GROUP: &str = "docker_env";
const DIR_MODE: u32 = 0o700;
const DUMP_MODE: u32 = 0o640;
const VAR_FILE_MODE: u32 = 0o600;
/// The longest file name Linux file systems take.
const NAME_MAX: usize = 255;

/// my_init's container environment, kept in memory and mirrored to disk.
#[derive(Debug)]
pub struct ContainerEnv {
    paths: EnvPaths,
    vars: Vars,
    /// The directory's contents as of the last export, to tell which files a
    /// startup script changed. None when the directory could not be read or made.
    on_disk: Option<Scan>,
    warned: Warned,
}

/// What one read of the directory found.
#[derive(Clone, Debug, Default)]
struct Scan {
    /// Regular files (symlinks followed) whose names can be variables.
    values: Vars,
    /// Entries whose value could not be had (subdirectories, unreadable or
    /// dangling files): present, so not deleted, but not values either.
    skipped: BTreeSet<OsString>,
}

impl Scan {
    fn has(&self, name: &OsStr) -> bool {
        self.values.contains_key(name) || self.skipped.contains(name)
    }
}

/// Messages already warned about, so a skip is not repeated on every rewrite.
#[derive(Debug, Default)]
struct Warned(HashSet<String>);

impl Warned {
    /// Logs `message` as a warning the first time; returns whether it did.
    fn warn(&mut self, message: String) -> bool {
        if self.0.contains(&message) {
            return false;
        }
        tracing::warn!("{message}");
        self.0.insert(message);
        true
    }
}

impl ContainerEnv {
    /// Boot: start from `inherited` (baseinit's own environment), import every variable of paths.dir
    /// that is not already set (so `docker run -e` wins), then export. Never fails: problems are logged.
    pub fn boot(paths: EnvPaths, inherited: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let (mut env, export) = ContainerEnv::import(paths, inherited);
        env.exported(export.write());
        env
    }

    /// The first half of [`ContainerEnv::boot`]: the environment in memory,
    /// and the writes still to be made. Those are file creations, which on a
    /// disk cost more than the rest of boot put together (see
    /// [`ContainerEnv::start_boot`]).
    fn import(paths: EnvPaths, inherited: impl IntoIterator<Item = (OsString, OsString)>) -> (Self, Export) {
        let mut env = ContainerEnv {
            paths,
            vars: Vars::new(),
            on_disk: None,
            warned: Warned::default(),
        };
        for (name, value) in inherited {
            if let Some(why) = unusable(&name, &value) {
                env.warned.warn(format!(
                    "environment variable {name:?}: {why}; not passed on to any child"
                ));
                continue;
            }
            env.vars.insert(name, value);
        }
        let mut problems = Problems::default();
        let scan = env.scan(&mut problems);
        if let Some(scan) = &scan {
            for (name, value) in &scan.values {
                if env.vars.contains_key(name) {
                    tracing::debug!("{}: already set, file not imported", name.display());
                } else {
                    tracing::debug!("{}: imported from {}", name.display(), env.paths.dir.display());
                    env.vars.insert(name.clone(), value.clone());
                }
            }
        }
        env.warn_skips();
        let export = Export {
            paths: env.paths.clone(),
            vars: env.vars.clone(),
            scan,
            problems,
        };
        (env, export)
    }

    /// The second half of [`ContainerEnv::boot`]: what the writes left on
    /// disk, and one report of their problems and the import's.
    fn exported(&mut self, written: Written) {
        self.on_disk = written.on_disk;
        self.report(written.problems);
    }

    /// After each startup script: the directory becomes the truth again (a script can add, change or delete
    /// variables by editing files); NOT_EXPORTED variables and variables that cannot be stored as files are kept
    /// from the current environment (my_init loses HOME here: don't). Then rewrite .sh and .json.
    pub fn after_startup_script(&mut self) {
        let mut problems = Problems::default();
        let scan = self.scan(&mut problems);
        match &scan {
            Some(now) => self.apply_edits(now),
            None => tracing::debug!("{}: not readable, environment unchanged", self.paths.dir.display()),
        }
        self.on_disk = self.export(scan, &mut problems);
        self.report(problems);
    }

    /// The environment children would get, from `inherited` and the
    /// directory, with nothing written (for `baseinit check`).
    pub fn read_only(paths: EnvPaths, inherited: impl IntoIterator<Item = (OsString, OsString)>) -> Vars {
        ContainerEnv::import(paths, inherited).0.vars
    }

    /// The environment every child gets.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// Applies what changed in the directory since the last export: files
    /// added or changed set their variable, files deleted unset it. Comparing
    /// with the last export rather than the environment keeps a variable whose
    /// file could not be written from being reset to the file's old value.
    fn apply_edits(&mut self, now: &Scan) {
        let before = self.on_disk.take().unwrap_or_default();
        for (name, value) in &now.values {
            if before.values.get(name) == Some(value) {
                continue;
            }
            if is_not_exported(name) {
                tracing::debug!(
                    "{}: file changed, ignored: {} is kept from the environment after boot",
                    self.paths.dir.join(name).display(),
                    name.display()
                );
                continue;
            }
            match self.vars.insert(name.clone(), value.clone()) {
                Some(old) if old == *value => {}
                Some(_) => tracing::debug!("{}: changed by a startup script", name.display()),
                None => tracing::debug!("{}: added by a startup script", name.display()),
            }
        }
        for name in before.values.keys().chain(&before.skipped) {
            if now.has(name) || is_not_exported(name) {
                continue;
            }
            if self.vars.remove(name).is_some() {
                tracing::debug!("{}: deleted by a startup script", name.display());
            }
        }
    }

    /// Reads the directory. None when it is missing (fine: nothing to import)
    /// or unreadable (a problem).
    fn scan(&mut self, problems: &mut Problems) -> Option<Scan> {
        let dir = &self.paths.dir;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!("{}: no container environment directory", dir.display());
                return None;
            }
            Err(e) => {
                problems.io(format!("{}: cannot read: {e}", dir.display()), &e);
                return None;
            }
        };
        let mut scan = Scan::default();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    problems.io(format!("{}: cannot read: {e}", dir.display()), &e);
                    continue;
                }
            };
            let name = entry.file_name();
            let path = entry.path();
            if name.as_bytes().starts_with(b".") {
                tracing::debug!("{}: hidden file, not a variable", path.display());
                continue;
            }
            if !is_env_name(&name) {
                self.warned.warn(format!(
                    "{}: {name:?} cannot be an environment variable name (it holds '='); file ignored",
                    dir.display()
                ));
                continue;
            }
            match read_value(&path) {
                Ok(Some(value)) => {
                    scan.values.insert(name, value);
                }
                Ok(None) => {
                    tracing::debug!("{}: not a regular file, skipped", path.display());
                    scan.skipped.insert(name);
                }
                Err(e) => {
                    problems.io(format!("{}: cannot import: {e}", path.display()), &e);
                    scan.skipped.insert(name);
                }
            }
        }
        Some(scan)
    }

    /// Writes the variable files, the `.sh` and the `.json`. `scan` is what the
    /// directory holds now; returns it updated with what was written.
    fn export(&mut self, scan: Option<Scan>, problems: &mut Problems) -> Option<Scan> {
        self.warn_skips();
        write_all(&self.paths, &self.vars, scan, problems)
    }

    /// Warns, once per name, about every variable the export cannot write
    /// whole: one line saying all that happens to it.
    fn warn_skips(&mut self) {
        for (name, value) in &self.vars {
            let mut skips = Vec::new();
            if !is_not_exported(name) {
                if let Some(why) = not_a_file_name(name) {
                    skips.push(format!("no file in {} ({why})", self.paths.dir.display()));
                }
                if let Some(why) = not_a_shell_line(name) {
                    skips.push(format!("no line in {} ({why})", self.paths.sh.display()));
                }
            }
            if name.to_str().is_none() || value.to_str().is_none() {
                skips.push(format!(
                    "U+FFFD for its bytes that are not UTF-8 in {}",
                    self.paths.json.display()
                ));
            }
            if !skips.is_empty() {
                self.warned.warn(format!(
                    "environment variable {name:?} is kept in the environment, but gets {}",
                    skips.join(" and ")
                ));
            }
        }
    }

    /// One warning for all of a round's problems, and only once for the same
    /// ones (a read-only /etc fails the same way after every script). A
    /// non-root baseinit that may not read or write the files (the base
    /// image's are root's) is expected to: one line at info level instead.
    fn report(&mut self, problems: Problems) {
        if problems.messages.is_empty() {
            return;
        }
        let expected = !problems.unexpected && !Uid::effective().is_root();
        let message = if expected {
            format!(
                "container environment: not all of it can be read or written as uid {} (permission), \
                 so imported and exported where it can be; children get the whole environment: {}",
                Uid::effective(),
                problems.messages.join("; ")
            )
        } else {
            format!(
                "container environment not fully imported or exported; children still get the whole environment: {}",
                problems.messages.join("; ")
            )
        };
        if self.warned.0.contains(&message) {
            tracing::debug!("container environment: the same problems as before");
        } else if expected {
            tracing::info!("{message}");
            self.warned.0.insert(message);
        } else {
            self.warned.warn(message);
        }
    }
}

/// A round's problems, and whether any was more than a permission denied
/// (or a read-only file system), which a non-root baseinit expects.
#[derive(Clone, Debug, Default)]
struct Problems {
    messages: Vec<String>,
    unexpected: bool,
}

impl Problems {
    fn io(&mut self, message: String, error: &io::Error) {
        if denied(error) {
            self.denied(message);
        } else {
            self.other(message);
        }
    }

    fn denied(&mut self, message: String) {
        self.messages.push(message);
    }

    fn other(&mut self, message: String) {
        self.unexpected = true;
        self.messages.push(message);
    }
}

fn denied(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// The boot's writes, apart from the environment they come from, so that
/// another thread can make them (see [`ContainerEnv::import`]).
#[derive(Debug)]
struct Export {
    paths: EnvPaths,
    vars: Vars,
    /// What the directory held at the import.
    scan: Option<Scan>,
    /// The import's problems, reported with the writes'.
    problems: Problems,
}

/// What [`Export::write`] did, for [`ContainerEnv::exported`].
#[derive(Debug)]
struct Written {
    on_disk: Option<Scan>,
    problems: Problems,
}

impl Export {
    /// Makes the writes. Logs nothing above debug level: the problems are
    /// reported by [`ContainerEnv::exported`], on the supervisor's thread.
    fn write(&self) -> Written {
        let mut problems = self.problems.clone();
        let on_disk = write_all(&self.paths, &self.vars, self.scan.clone(), &mut problems);
        Written { on_disk, problems }
    }
}

impl Written {
    /// When the writes could not be made at all (the thread making them
    /// died): nothing is known to be on disk.
    fn lost(why: String) -> Self {
        let mut problems = Problems::default();
        problems.other(why);
        Written {
            on_disk: None,
            problems,
        }
    }
}

/// The boot's export under way on a thread of its own (see
/// [`ContainerEnv::start_boot`]); [`BootExport::finish`] waits for it.
#[derive(Debug)]
pub struct BootExport {
    env: ContainerEnv,
    export: Arc<Export>,
    writer: io::Result<std::thread::JoinHandle<Written>>,
}

impl ContainerEnv {
    /// [`ContainerEnv::boot`] with the writes on another thread, started
    /// at once: the caller goes on with its own boot (reading the service
    /// definitions) and calls [`BootExport::finish`] before any child runs.
    pub fn start_boot(paths: EnvPaths, inherited: impl IntoIterator<Item = (OsString, OsString)>) -> BootExport {
        let (env, export) = ContainerEnv::import(paths, inherited);
        let export = Arc::new(export);
        let job = export.clone();
        let writer = std::thread::Builder::new().name("export".into()).spawn(move || {
            // Signals are the event loop's to take.
            crate::inherited::hold_signals();
            job.write()
        });
        if let Ok(handle) = &writer {
            beside_this_cpu(handle);
        }
        BootExport { env, export, writer }
    }
}

impl BootExport {
    /// The environment children will get (imported already; only the
    /// writes may be under way).
    pub fn vars(&self) -> &Vars {
        self.env.vars()
    }

    /// Waits for the writes (or makes them here, when no thread could be
    /// started) and returns the environment with them reported.
    pub fn finish(self) -> ContainerEnv {
        let BootExport {
            mut env,
            export,
            writer,
        } = self;
        let written = match writer {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Written::lost("the thread writing it panicked".to_owned())),
            Err(e) => {
                tracing::debug!("cannot start a thread for the container environment ({e}): written in turn");
                export.write()
            }
        };
        env.exported(written);
        env
    }
}

/// Moves a helper thread just started off the CPU this thread runs on, when
/// the process may use another. A new thread is queued on its creator's CPU
/// and waits there while its creator runs, even with another CPU idle (the
/// scheduler does not pull work to a CPU that idles only briefly), so the
/// export would begin only when the boot thread's time slice ran out, and
/// overlap nothing. Best effort: on failure it shares the CPU.
fn beside_this_cpu<T>(handle: &std::thread::JoinHandle<T>) {
    use nix::libc;
    use std::os::unix::thread::JoinHandleExt;
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: cpu_set_t is plain bits, valid when zeroed; every call gets a
    // pointer to a live set and its true size, and the pthread_t is that of
    // a thread not joined yet (we hold its handle), so it still exists.
    unsafe {
        let here = libc::sched_getcpu();
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if here < 0 || libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return;
        }
        libc::CPU_CLR(here as usize, &mut allowed);
        if libc::CPU_COUNT(&allowed) > 0 {
            libc::pthread_setaffinity_np(handle.as_pthread_t() as _, size, &allowed);
        }
    }
}

/// Why `name=value` cannot be an environment variable, if it cannot.
fn unusable(name: &OsStr, value: &OsStr) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name.as_bytes().contains(&b'=') {
        Some("the name holds '='")
    } else if name.as_bytes().contains(&0) || value.as_bytes().contains(&0) {
        Some("holds a NUL byte")
    } else {
        None
    }
}

fn is_env_name(name: &OsStr) -> bool {
    !name.is_empty() && !name.as_bytes().iter().any(|&b| b == b'=' || b == 0)
}

fn is_not_exported(name: &OsStr) -> bool {
    NOT_EXPORTED.iter().any(|skip| OsStr::new(skip) == name)
}

/// Why a variable name cannot name a file in the directory, if it cannot.
/// Names starting with `.` could, but are never imported (hidden files), so
/// they would not come back.
fn not_a_file_name(name: &OsStr) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.contains(&b'/') {
        Some("the name holds '/'")
    } else if bytes.starts_with(b".") {
        Some("the name starts with '.'")
    } else if bytes.len() > NAME_MAX {
        Some("the name is longer than a file name can be")
    } else {
        None
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_shell_name(name: &OsStr) -> bool {
    match name.as_bytes() {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        [] => false,
    }
}

/// Why a variable gets no `export` line, if it gets none (NOT_EXPORTED aside).
fn not_a_shell_line(name: &OsStr) -> Option<&'static str> {
    if !is_shell_name(name) {
        Some("not a shell variable name")
    } else if SHELL_READ_ONLY.iter().any(|skip| OsStr::new(skip) == name) {
        Some("read-only in bash")
    } else {
        None
    }
}

// clippy.toml forbids the std methods that wait for a child, because in the
// crate the supervisor's reaper owns waitpid. These tests are not PID 1 and
// run `sh` to check the `.sh` round trip, so they may wait.
#[allow(clippy::disallowed_methods)]
#[cfg(test)]
mod tests {
    use super::files::dump_group;
    use super::*;
    use std::fs::Permissions;
    use std::io::Write;
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::Path;
    use std::process::Command;
    use std::sync::{Arc, Mutex};

    struct Setup {
        _tmp: tempfile::TempDir,
        paths: EnvPaths,
    }

    impl Setup {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let paths = EnvPaths {
                dir: tmp.path().join("container_environment"),
                sh: tmp.path().join("container_environment.sh"),
                json: tmp.path().join("container_environment.json"),
            };
            Setup { _tmp: tmp, paths }
        }

        /// With the directory made, as an image ships it.
        fn with_dir() -> Self {
            let setup = Setup::new();
            fs::create_dir(&setup.paths.dir).unwrap();
            setup
        }

        fn file(&self, name: &str, value: &str) {
            fs::write(self.paths.dir.join(name), value).unwrap();
        }

        fn read(&self, name: impl AsRef<OsStr>) -> Option<Vec<u8>> {
            fs::read(self.paths.dir.join(name.as_ref())).ok()
        }

        fn json(&self) -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_slice(&fs::read(&self.paths.json).unwrap()).unwrap()
        }

        /// The variables `sh` has after sourcing the `.sh` in an empty environment.
        fn sourced(&self) -> Vars {
            let out = Command::new("sh")
                .args(["-c", ". \"$1\"; env -0", "sh"])
                .arg(&self.paths.sh)
                .env_clear()
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stderr.is_empty(),
                "sh complained: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
                .split(|&b| b == 0)
                .filter(|entry| !entry.is_empty())
                .map(|entry| {
                    let eq = entry.iter().position(|&b| b == b'=').unwrap();
                    (os(&entry[..eq]), os(&entry[eq + 1..]))
                })
                .collect()
        }
    }

    fn os(bytes: &[u8]) -> OsString {
        OsString::from_vec(bytes.to_vec())
    }

    fn vars<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(OsString, OsString)> {
        pairs.into_iter().map(|(n, v)| (n.into(), v.into())).collect()
    }

    fn get<'a>(env: &'a ContainerEnv, name: &str) -> Option<&'a str> {
        env.vars().get(OsStr::new(name)).map(|v| v.to_str().unwrap())
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    /// Runs `f` with the log captured (debug and up); returns its result and the log.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let result = tracing::subscriber::with_default(subscriber, f);
        let log = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
        (result, log)
    }

    fn warnings<'a>(log: &'a str, about: &str) -> Vec<&'a str> {
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains(about))
            .collect()
    }

    /// The one warning about `about`.
    fn the_warning<'a>(log: &'a str, about: &str) -> &'a str {
        match warnings(log, about)[..] {
            [warning] => warning,
            ref other => panic!("{} warnings about {about}: {log}", other.len()),
        }
    }

    #[test]
    fn import_does_not_override_inherited_variables() {
        let s = Setup::with_dir();
        s.file("FROM_IMAGE", "image\n");
        s.file("BOTH", "image");
        let env = ContainerEnv::boot(s.paths.clone(), vars([("BOTH", "docker run -e"), ("INHERITED", "x")]));
        assert_eq!(get(&env, "FROM_IMAGE"), Some("image"));
        assert_eq!(get(&env, "BOTH"), Some("docker run -e"));
        assert_eq!(get(&env, "INHERITED"), Some("x"));
        // The winner is written back to the directory.
        assert_eq!(s.read("BOTH").unwrap(), b"docker run -e");
    }

    #[test]
    fn exactly_one_trailing_newline_is_stripped() {
        let s = Setup::with_dir();
        for (name, value) in [
            ("NONE", "v"),
            ("ONE", "v\n"),
            ("TWO", "v\n\n"),
            ("ONLY", "\n"),
            ("EMPTY", ""),
            ("CRLF", "v\r\n"),
        ] {
            s.file(name, value);
        }
        let env = ContainerEnv::boot(s.paths.clone(), []);
        assert_eq!(get(&env, "NONE"), Some("v"));
        assert_eq!(get(&env, "ONE"), Some("v"));
        assert_eq!(get(&env, "TWO"), Some("v\n"));
        assert_eq!(get(&env, "ONLY"), Some(""));
        assert_eq!(get(&env, "EMPTY"), Some(""));
        assert_eq!(get(&env, "CRLF"), Some("v\r"));
        // A file whose value did not change is left as the image shipped it.
        assert_eq!(s.read("ONE").unwrap(), b"v\n");
    }

    #[test]
    fn missing_directory_imports_nothing_and_is_created_0700() {
        let s = Setup::new();
        let env = ContainerEnv::boot(s.paths.clone(), vars([("A", "1")]));
        assert_eq!(env.vars().len(), 1);
        assert_eq!(mode(&s.paths.dir), 0o700);
        assert_eq!(s.read("A").unwrap(), b"1");
    }

    #[test]
    fn import_follows_symlinks_and_skips_everything_else() {
        let s = Setup::with_dir();
        let elsewhere = s.paths.dir.parent().unwrap().join("secret");
        fs::write(&elsewhere, "s3cret\n").unwrap();
        symlink(&elsewhere, s.paths.dir.join("LINKED")).unwrap();
        symlink("/nonexistent/target", s.paths.dir.join("DANGLING")).unwrap();
        fs::create_dir(s.paths.dir.join("SUBDIR")).unwrap();
        nix::unistd::mkfifo(
            &s.paths.dir.join("FIFO"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        s.file(".gitkeep", "");
        s.file("A=B", "x");
        fs::write(s.paths.dir.join("NUL"), b"a\0b").unwrap();
        let (env, log) = logged(|| ContainerEnv::boot(s.paths.clone(), []));
        assert_eq!(env.vars().keys().collect::<Vec<_>>(), [OsStr::new("LINKED")]);
        assert_eq!(get(&env, "LINKED"), Some("s3cret"));
        assert!(log.contains("SUBDIR: not a regular file"), "{log}");
        assert_eq!(
            warnings(&log, "\"A=B\" cannot be an environment variable name").len(),
            1,
            "{log}"
        );
        assert_eq!(warnings(&log, "DANGLING: cannot import").len(), 1, "{log}");
        assert_eq!(warnings(&log, "NUL: cannot import").len(), 1, "{log}");
    }

    #[test]
    fn export_writes_one_file_per_variable_but_not_the_skip_list() {
        let s = Setup::with_dir();
        let env = ContainerEnv::boot(
            s.paths.clone(),
            vars([
                ("PLAIN", "value"),
                ("MULTI", "a\nb\n"),
                ("EMPTY", ""),
                ("HOME", "/root"),
                ("SHELL", "/bin/sh"),
            ]),
        );
        assert_eq!(s.read("PLAIN").unwrap(), b"value");
        // Raw value, no newline added, as my_init writes it. Read back, one
        // trailing newline goes: a value ending in a newline loses it on the
        // next import, as with my_init.
        assert_eq!(s.read("MULTI").unwrap(), b"a\nb\n");
        assert_eq!(s.read("EMPTY").unwrap(), b"");
        assert_eq!(s.read("HOME"), None);
        assert_eq!(s.read("SHELL"), None);
        assert_eq!(get(&env, "HOME"), Some("/root"));
        assert_eq!(mode(&s.paths.dir.join("PLAIN")), 0o600);
        let sh = fs::read_to_string(&s.paths.sh).unwrap();
        assert!(!sh.contains("HOME") && !sh.contains("SHELL"), "{sh}");
        assert!(sh.contains("export PLAIN=value\n"), "{sh}");
    }

    #[test]
    fn sh_round_trips_every_byte_through_a_real_shell() {
        let s = Setup::with_dir();
        let values: Vec<(&str, Vec<u8>)> = vec![
            ("SINGLE", b"it's 'quoted'".to_vec()),
            ("DOUBLE", b"say \"hi\"".to_vec()),
            ("NEWLINES", b"line 1\nline 2\n\n".to_vec()),
            ("LEADING_NEWLINE", b"\nx".to_vec()),
            ("DOLLAR", b"$HOME ${PATH} $(id) `id`".to_vec()),
            ("BACKSLASH", b"a\\b\\\\c\\n\\".to_vec()),
            ("SPACES", b"  a  b  ".to_vec()),
            ("EMPTY", b"".to_vec()),
            ("GLOB", b"* ? [a] ~ ~root".to_vec()),
            ("SHELLY", b"; & | < > ( ) { } # ! %".to_vec()),
            ("ONLY_QUOTE", b"'".to_vec()),
            ("QUOTES", b"''\"\"'\\''".to_vec()),
            ("NOT_UTF8", b"\xff\xfe caf\xc3\xa9 \x80".to_vec()),
            ("CONTROL", b"\x01\x1b[31m\x7f\t\r".to_vec()),
            ("PLAIN", b"user@host:8080/path,x=y+z%.-_".to_vec()),
            ("DASH", b"-n".to_vec()),
        ];
        let inherited: Vec<(OsString, OsString)> = values.iter().map(|(n, v)| ((*n).into(), os(v))).collect();
        let env = ContainerEnv::boot(s.paths.clone(), inherited);
        let sourced = s.sourced();
        for (name, value) in &values {
            assert_eq!(sourced.get(OsStr::new(name)), Some(&os(value)), "{name}");
            assert_eq!(env.vars().get(OsStr::new(name)), Some(&os(value)), "{name}");
            assert_eq!(s.read(name).unwrap(), *value, "{name}");
        }
        // Plain words stay bare, as my_init wrote them.
        let sh = fs::read(&s.paths.sh).unwrap();
        assert!(
            sh.windows(26).any(|w| w == b"export DASH=-n\nexport DOLL"),
            "{}",
            String::from_utf8_lossy(&sh)
        );
    }

    #[test]
    fn json_holds_the_whole_environment_with_lossy_non_utf8() {
        let s = Setup::with_dir();
        let inherited = vec![
            ("A".into(), "1".into()),
            ("HOME".into(), "/root".into()),
            ("WEIRD-NAME".into(), "x".into()),
            ("QUOTE".into(), "\"\\\n".into()),
            ("BAD".into(), os(b"caf\xe9")),
            (os(b"N\xff"), "v".into()),
        ];
        let (mut env, log) = logged(|| ContainerEnv::boot(s.paths.clone(), inherited));
        let json = s.json();
        let expected = [
            ("A", "1"),
            ("BAD", "caf\u{fffd}"),
            ("HOME", "/root"),
            ("N\u{fffd}", "v"),
            ("QUOTE", "\"\\\n"),
            ("WEIRD-NAME", "x"),
        ];
        assert_eq!(json.len(), expected.len(), "{json:?}");
        for (name, value) in expected {
            assert_eq!(json[name], serde_json::Value::String(value.into()), "{name}");
        }
        for name in ["\"BAD\"", "\"N\\xFF\""] {
            let warning = the_warning(&log, name);
            assert!(
                warning.contains("U+FFFD for its bytes that are not UTF-8 in"),
                "{warning}"
            );
        }
        // The directory and the .sh keep the bytes.
        assert_eq!(s.read("BAD").unwrap(), b"caf\xe9");
        assert_eq!(s.sourced().get(OsStr::new("BAD")), Some(&os(b"caf\xe9")));
        let ((), log) = logged(|| env.after_startup_script());
        assert!(warnings(&log, "").is_empty(), "{log}");
        assert_eq!(env.vars().get(OsStr::new("BAD")), Some(&os(b"caf\xe9")));
    }

    #[test]
    fn odd_names_never_panic_are_stored_where_they_can_be_and_warned_once() {
        let s = Setup::with_dir();
        let long = "L".repeat(300);
        let inherited = vec![
            ("1DIGIT".into(), "a".into()),
            ("DASH-ED".into(), "b".into()),
            ("DOT.TED".into(), "c".into()),
            ("ÄÖ".into(), "d".into()),
            ("SLASH/ED".into(), "e".into()),
            (".HIDDEN".into(), "f".into()),
            ("..".into(), "g".into()),
            (long.clone().into(), "h".into()),
            (os(b"RAW\xff"), "i".into()),
            ("PPID".into(), "j".into()),
            ("OK_1".into(), "k".into()),
            // Not environment variables at all: dropped.
            ("A=B".into(), "x".into()),
            ("=LEAD".into(), "x".into()),
            ("".into(), "x".into()),
            ("NUL\0NAME".into(), "x".into()),
            ("NUL_VALUE".into(), "a\0b".into()),
        ];
        let (mut env, log) = logged(|| ContainerEnv::boot(s.paths.clone(), inherited));
        let kept = [
            "1DIGIT", "DASH-ED", "DOT.TED", "ÄÖ", "SLASH/ED", ".HIDDEN", "..", &long, "PPID", "OK_1",
        ];
        for name in kept {
            assert!(env.vars().contains_key(OsStr::new(name)), "{name}");
        }
        assert!(env.vars().contains_key(&os(b"RAW\xff")));
        assert_eq!(env.vars().len(), kept.len() + 1, "{:?}", env.vars());
        // Files for every name a file can have.
        for name in ["1DIGIT", "DASH-ED", "DOT.TED", "ÄÖ", "PPID", "OK_1"] {
            assert!(s.read(name).is_some(), "{name}");
        }
        assert!(s.read(os(b"RAW\xff")).is_some());
        let mut files: Vec<_> = fs::read_dir(&s.paths.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        assert_eq!(files.len(), 7, "{files:?}");
        // Only real shell names, and no bash read-only one, in the .sh.
        let sourced = s.sourced();
        assert_eq!(sourced.get(OsStr::new("OK_1")).unwrap(), "k");
        let sh = fs::read(&s.paths.sh).unwrap();
        // (The long name is a fine shell name; only a file cannot have it.)
        assert_eq!(sh, format!("export {long}=h\nexport OK_1=k\n").as_bytes());
        // The JSON has them all.
        assert_eq!(s.json().len(), kept.len() + 1);

        // Dropped: one warning each.
        for fragment in [
            "\"A=B\": the name holds '='; not passed on",
            "\"=LEAD\": the name holds '='; not passed on",
            "\"\": empty name; not passed on",
            "\"NUL\\0NAME\": holds a NUL byte; not passed on",
            "\"NUL_VALUE\": holds a NUL byte; not passed on",
        ] {
            the_warning(&log, fragment);
        }
        // Kept: one warning each, saying all that is skipped.
        let no_line = "no line in";
        let not_shell = "(not a shell variable name)";
        for (name, has, has_not) in [
            ("\"1DIGIT\"", vec![no_line, not_shell], vec!["no file"]),
            ("\"DASH-ED\"", vec![no_line, not_shell], vec!["no file"]),
            ("\"DOT.TED\"", vec![no_line, not_shell], vec!["no file"]),
            ("\"ÄÖ\"", vec![no_line, not_shell], vec!["no file", "U+FFFD"]),
            (
                "\"SLASH/ED\"",
                vec!["no file in", "(the name holds '/')", no_line, not_shell],
                vec![],
            ),
            (
                "\".HIDDEN\"",
                vec!["no file in", "(the name starts with '.')", no_line],
                vec![],
            ),
            (
                "\"..\"",
                vec!["no file in", "(the name starts with '.')", no_line],
                vec![],
            ),
            (
                "LLLL",
                vec!["no file in", "(the name is longer than a file name can be)"],
                vec![no_line],
            ),
            ("\"RAW\\xFF\"", vec![no_line, not_shell, "U+FFFD"], vec!["no file"]),
            ("\"PPID\"", vec![no_line, "(read-only in bash)"], vec!["no file"]),
        ] {
            let warning = the_warning(&log, name);
            assert!(warning.contains("is kept in the environment, but gets"), "{warning}");
            for fragment in has {
                assert!(warning.contains(fragment), "{fragment}: {warning}");
            }
            for fragment in has_not {
                assert!(!warning.contains(fragment), "{fragment}: {warning}");
            }
        }
        assert!(warnings(&log, "OK_1").is_empty(), "{log}");

        // Rewrites warn no more, and keep the names no file holds.
        let ((), log) = logged(|| {
            env.after_startup_script();
            env.after_startup_script();
        });
        assert!(warnings(&log, "").is_empty(), "{log}");
        for name in ["SLASH/ED", ".HIDDEN", "..", &long, "1DIGIT", "ÄÖ"] {
            assert!(env.vars().contains_key(OsStr::new(name)), "{name}");
        }
        assert_eq!(env.vars().len(), kept.len() + 1);
    }

    #[test]
    fn startup_script_edits_add_change_and_delete_variables() {
        let s = Setup::with_dir();
        s.file("KEEP", "same");
        s.file("CHANGE", "old");
        s.file("DELETE", "doomed");
        let mut env = ContainerEnv::boot(
            s.paths.clone(),
            vars([
                ("HOME", "/root"),
                ("USER", "root"),
                ("PATH", "/usr/bin"),
                ("SLASH/ED", "kept"),
            ]),
        );
        assert_eq!(get(&env, "DELETE"), Some("doomed"));

        // What a startup script does.
        s.file("ADD", "new\n");
        s.file("CHANGE", "changed\n");
        fs::remove_file(s.paths.dir.join("DELETE")).unwrap();
        env.after_startup_script();

        assert_eq!(get(&env, "KEEP"), Some("same"));
        assert_eq!(get(&env, "ADD"), Some("new"));
        assert_eq!(get(&env, "CHANGE"), Some("changed"));
        assert_eq!(get(&env, "DELETE"), None);
        assert_eq!(get(&env, "PATH"), Some("/usr/bin"));
        // my_init loses these here.
        assert_eq!(get(&env, "HOME"), Some("/root"));
        assert_eq!(get(&env, "USER"), Some("root"));
        assert_eq!(get(&env, "SLASH/ED"), Some("kept"));

        let sourced = s.sourced();
        assert_eq!(sourced.get(OsStr::new("ADD")).unwrap(), "new");
        assert_eq!(sourced.get(OsStr::new("CHANGE")).unwrap(), "changed");
        assert!(!sourced.contains_key(OsStr::new("DELETE")));
        let json = s.json();
        assert_eq!(json["CHANGE"], "changed");
        assert_eq!(json["HOME"], "/root");
        assert!(!json.contains_key("DELETE"));

        // A file for a skip-list name does not change it after boot.
        s.file("HOME", "/elsewhere");
        env.after_startup_script();
        assert_eq!(get(&env, "HOME"), Some("/root"));

        // A second script deleting what the first added.
        fs::remove_file(s.paths.dir.join("ADD")).unwrap();
        env.after_startup_script();
        assert_eq!(get(&env, "ADD"), None);
        assert!(!s.json().contains_key("ADD"));
    }

    #[test]
    fn stale_files_persist_and_are_imported_at_the_next_boot() {
        let s = Setup::with_dir();
        drop(ContainerEnv::boot(s.paths.clone(), vars([("FROM_LAST_RUN", "1")])));
        let env = ContainerEnv::boot(s.paths.clone(), vars([("OTHER", "2")]));
        assert_eq!(get(&env, "FROM_LAST_RUN"), Some("1"));
        assert_eq!(get(&env, "OTHER"), Some("2"));
    }

    #[test]
    fn a_variable_whose_file_cannot_be_written_is_not_reset_by_the_directory() {
        let s = Setup::with_dir();
        // Its "file" is a directory: the write fails, the value stays.
        fs::create_dir(s.paths.dir.join("BLOCKED")).unwrap();
        let (mut env, log) = logged(|| ContainerEnv::boot(s.paths.clone(), vars([("BLOCKED", "from -e")])));
        assert_eq!(warnings(&log, "1 variable file(s) not written").len(), 1, "{log}");
        let ((), log) = logged(|| env.after_startup_script());
        assert_eq!(get(&env, "BLOCKED"), Some("from -e"));
        assert_eq!(s.sourced().get(OsStr::new("BLOCKED")).unwrap(), "from -e");
        // The same problem again: not warned again.
        assert!(warnings(&log, "").is_empty(), "{log}");
    }

    #[test]
    fn new_files_get_base_image_modes() {
        let s = Setup::new();
        ContainerEnv::boot(s.paths.clone(), vars([("A", "1")]));
        assert_eq!(mode(&s.paths.dir), 0o700);
        assert_eq!(mode(&s.paths.sh), 0o640);
        assert_eq!(mode(&s.paths.json), 0o640);
        assert_eq!(mode(&s.paths.dir.join("A")), 0o600);
        let expected_gid = dump_group().unwrap_or_else(|| nix::unistd::getegid().as_raw());
        assert_eq!(fs::metadata(&s.paths.sh).unwrap().gid(), expected_gid);
        // No temporary file is left behind.
        let parent = s.paths.sh.parent().unwrap();
        let names: Vec<_> = fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn existing_files_keep_their_modes() {
        let s = Setup::with_dir();
        fs::set_permissions(&s.paths.dir, Permissions::from_mode(0o750)).unwrap();
        fs::write(&s.paths.sh, "old").unwrap();
        fs::set_permissions(&s.paths.sh, Permissions::from_mode(0o600)).unwrap();
        fs::write(&s.paths.json, "{}").unwrap();
        fs::set_permissions(&s.paths.json, Permissions::from_mode(0o400)).unwrap();
        s.file("A", "old");
        fs::set_permissions(s.paths.dir.join("A"), Permissions::from_mode(0o640)).unwrap();
        let mut env = ContainerEnv::boot(s.paths.clone(), vars([("A", "new"), ("B", "2")]));
        env.after_startup_script();
        assert_eq!(mode(&s.paths.dir), 0o750);
        assert_eq!(mode(&s.paths.sh), 0o600);
        assert_eq!(mode(&s.paths.json), 0o400);
        assert_eq!(mode(&s.paths.dir.join("A")), 0o640);
        assert_eq!(s.read("A").unwrap(), b"new");
        assert_eq!(mode(&s.paths.dir.join("B")), 0o600);
        assert_eq!(fs::read_to_string(&s.paths.sh).unwrap(), "export A=new\nexport B=2\n");
    }

    #[test]
    fn a_symlinked_dump_is_written_through() {
        let s = Setup::with_dir();
        let real = s.paths.sh.with_file_name("real.sh");
        fs::write(&real, "").unwrap();
        symlink(&real, &s.paths.sh).unwrap();
        ContainerEnv::boot(s.paths.clone(), vars([("A", "1")]));
        assert!(fs::symlink_metadata(&s.paths.sh).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "export A=1\n");
    }

    #[test]
    fn a_read_only_target_is_one_warning_and_never_a_failure() {
        let s = Setup::new();
        // A parent that is a regular file: fails even as root.
        let file = s.paths.dir.parent().unwrap().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let paths = EnvPaths {
            dir: file.join("container_environment"),
            sh: file.join("container_environment.sh"),
            json: file.join("container_environment.json"),
        };
        let (mut env, log) = logged(|| ContainerEnv::boot(paths, vars([("A", "1"), ("HOME", "/root")])));
        assert_eq!(log.lines().filter(|l| l.contains(" WARN ")).count(), 1, "{log}");
        assert_eq!(warnings(&log, "container environment not fully").len(), 1, "{log}");
        assert_eq!(get(&env, "A"), Some("1"));
        let ((), log) = logged(|| env.after_startup_script());
        assert!(warnings(&log, "").is_empty(), "{log}");
        assert_eq!(get(&env, "A"), Some("1"));
        assert_eq!(get(&env, "HOME"), Some("/root"));
    }

    #[test]
    fn a_leftover_temporary_file_does_not_block_the_write() {
        let s = Setup::with_dir();
        let tmp = s.paths.sh.with_file_name(".container_environment.sh.baseinit-tmp");
        fs::write(&tmp, "garbage").unwrap();
        ContainerEnv::boot(s.paths.clone(), vars([("A", "1")]));
        assert_eq!(fs::read_to_string(&s.paths.sh).unwrap(), "export A=1\n");
        assert!(!tmp.exists());
    }
}
