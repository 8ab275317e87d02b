//! Test harness: runs the real `baseinit` binary as PID 1 of a fresh PID
//! namespace (or as a plain child subreaper), with a watchdog on every wait.
//!
//! Tests are not PID 1: waiting for the `unshare` process they start is fine
//! here, so the supervisor's waitpid rule does not apply.
//!
//! A test that needs something of the machine (PID namespaces, runit, a
//! Docker engine, a pids cgroup, root) starts with `require!(Capability::X)`:
//! without it, a loud skip, or a failure when the matching BASEINIT_REQUIRE_*
//! variable is 1 (as in CI). The usual end of a run is `init.stop(timeout)`;
//! `sv`, `baseinit status` and other commands go through [`Tree::sv`],
//! [`Tree::baseinit`], [`Tree::status`] and [`run`], each with a deadline.
#![allow(clippy::disallowed_methods, dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_baseinit");

/// How long any single test may wait for baseinit before the watchdog kills
/// it (and with it the whole namespace).
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// How long one command the harness runs (`sv`, `baseinit status`, …) may
/// take before it is killed.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// What a test needs of the machine

/// Something of the machine a test cannot run without. Each is probed once
/// per test process; see [`require`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `unshare --user --map-root-user --pid --fork --mount-proc` works.
    Namespaces,
    /// Debian's runit: `runsv` and `sv` in PATH.
    Runit,
    /// A Docker engine answers `docker info`.
    Docker,
    /// A pids cgroup (v1 or v2) this process may create and write.
    Cgroups,
    /// The test runs as root (to mount, to switch users, to make a cgroup).
    Root,
    /// Podman (Debian's `podman`, with `uidmap` for rootless use).
    Podman,
}

impl Capability {
    const ALL: [Capability; 6] = [
        Capability::Namespaces,
        Capability::Runit,
        Capability::Docker,
        Capability::Cgroups,
        Capability::Root,
        Capability::Podman,
    ];

    /// The variable that turns the skip into a failure (CI's .ci/run sets
    /// every one of them to 1).
    pub fn variable(self) -> &'static str {
        match self {
            Capability::Namespaces => "BASEINIT_REQUIRE_NAMESPACES",
            Capability::Runit => "BASEINIT_REQUIRE_RUNIT",
            Capability::Docker => "BASEINIT_REQUIRE_DOCKER",
            Capability::Cgroups => "BASEINIT_REQUIRE_CGROUPS",
            Capability::Root => "BASEINIT_REQUIRE_ROOT",
            Capability::Podman => "BASEINIT_REQUIRE_PODMAN",
        }
    }

    /// What it is, in words.
    fn what(self) -> &'static str {
        match self {
            Capability::Namespaces => "PID namespaces",
            Capability::Runit => "runit's runsv and sv (Debian package `runit`)",
            Capability::Docker => "a Docker engine",
            Capability::Cgroups => "a pids cgroup",
            Capability::Root => "root",
            Capability::Podman => "Podman and newuidmap (Debian packages `podman`, `uidmap`)",
        }
    }

    /// Ok when the machine has it; else why not.
    fn probe(self) -> Result<(), String> {
        match self {
            Capability::Namespaces => {
                let mut command = Command::new("unshare");
                command.args(["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "true"]);
                let out = try_run(command, COMMAND_DEADLINE)?;
                match out.code {
                    0 => Ok(()),
                    code => Err(format!("unshare exited {code}: {}", out.stderr.trim())),
                }
            }
            Capability::Runit => {
                let missing: Vec<&str> = ["runsv", "sv"].into_iter().filter(|p| which(p).is_none()).collect();
                match missing[..] {
                    [] => Ok(()),
                    _ => Err(format!("{} not found in PATH", missing.join(" and "))),
                }
            }
            Capability::Docker => {
                let mut command = Command::new("docker");
                command.args(["info", "--format", "{{.ServerVersion}}"]);
                let out = try_run(command, Duration::from_secs(60))?;
                match out.code {
                    0 => Ok(()),
                    code => Err(format!("docker info exited {code}: {}", out.stderr.trim())),
                }
            }
            Capability::Cgroups => pids_cgroup_parent().map(|_| ()),
            Capability::Podman => {
                let missing: Vec<&str> = ["podman", "newuidmap"]
                    .into_iter()
                    .filter(|p| which(p).is_none())
                    .collect();
                match missing[..] {
                    [] => Ok(()),
                    _ => Err(format!("{} not found in PATH", missing.join(" and "))),
                }
            }
            Capability::Root => {
                let uid = nix::unistd::Uid::effective();
                if uid.is_root() {
                    Ok(())
                } else {
                    Err(format!("running as uid {uid}"))
                }
            }
        }
    }
}

/// True when the machine has `capability`. When it has not, says so loudly
/// (`*** SKIPPED test: ...`) and the test should return; with the
/// capability's BASEINIT_REQUIRE_* variable set to 1 (CI) it panics instead.
/// The probe runs once per test process.
pub fn require(capability: Capability, test: &str) -> bool {
    static PROBES: [OnceLock<Result<(), String>>; Capability::ALL.len()] =
        [const { OnceLock::new() }; Capability::ALL.len()];
    let at = Capability::ALL
        .iter()
        .position(|c| *c == capability)
        .expect("every capability is in ALL");
    let Err(why) = PROBES[at].get_or_init(|| capability.probe()) else {
        return true;
    };
    let (variable, what) = (capability.variable(), capability.what());
    if std::env::var(variable).as_deref() == Ok("1") {
        panic!("{test}: needs {what} ({variable}=1), which is unavailable: {why}");
    }
    eprintln!(
        "\n*** SKIPPED {test}: needs {what}, which is unavailable ({why}); set {variable}=1 to fail instead ***\n"
    );
    false
}

/// `require!(Capability::X)`: returns from the test (after [`require`]'s loud
/// message) when the machine lacks X. The test is named by the function the
/// macro stands in.
#[allow(unused_macros)]
macro_rules! require_or_return {
    ($capability:expr) => {
        if !common::require($capability, common::function_name!()) {
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_or_return as require;

/// The name of the function this stands in (without its module path).
#[allow(unused_macros)]
macro_rules! function_name {
    () => {{
        fn f() {}
        let path = std::any::type_name_of_val(&f);
        let path = path.strip_suffix("::f").unwrap_or(path);
        path.rsplit("::").next().unwrap_or(path)
    }};
}
#[allow(unused_imports)]
pub(crate) use function_name;

/// `program`'s path when it is in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A directory in which this process may make a pids cgroup (v1 or v2):
/// found by making one and removing it again.
pub fn pids_cgroup_parent() -> Result<PathBuf, String> {
    let name = format!("baseinit-test-probe-{}", std::process::id());
    let mut why = String::from("no pids controller mounted");
    for parent in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
        let parent = Path::new(parent);
        if !parent.join("cgroup.procs").exists() {
            continue;
        }
        let dir = parent.join(&name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                let has_pids = dir.join("pids.max").exists();
                let _ = fs::remove_dir(&dir);
                if has_pids {
                    return Ok(parent.to_owned());
                }
                why = format!("{} has no pids.max", parent.display());
            }
            Err(e) => why = format!("cannot create {}: {e}", dir.display()),
        }
    }
    Err(why)
}

// ---------------------------------------------------------------------------
// Commands with a deadline

/// How a command the harness ran ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Exit code, or 128+signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `command` to its end (stdin /dev/null, output to files, in a process
/// group of its own); past `deadline` its group is killed, by its id, and the
/// error says so.
pub fn try_run(mut command: Command, deadline: Duration) -> Result<Output, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let what = format!("{command:?}");
    let logs = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let file = |p: &Path| fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    command
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        .process_group(0);
    let mut child = command.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let until = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(Output {
                    code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                    stdout: read(&out_path),
                    stderr: read(&err_path),
                });
            }
            Ok(None) if Instant::now() >= until => {
                // SAFETY: kill(2) on the process group of our own unreaped
                // child, which leads it (process_group(0)).
                unsafe { nix::libc::kill(-(child.id() as i32), nix::libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!(
                    "watchdog: {what} still running after {deadline:?}; killed. stdout:\n{}\nstderr:\n{}",
                    read(&out_path),
                    read(&err_path)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// [`try_run`] with [`COMMAND_DEADLINE`], panicking when it fails.
pub fn run(command: Command) -> Output {
    try_run(command, COMMAND_DEADLINE).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// sv

/// Which `sv` a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sv {
    /// `baseinit sv`.
    Baseinit,
    /// baseinit's applet through a symlink named `sv`, as an image without
    /// runit has it.
    Link,
    /// Debian's runit `sv`, from PATH (see [`Capability::Runit`]).
    Stock,
}

impl Sv {
    /// A command running this `sv` on the services of `svdir` (`$SVDIR`, and
    /// no `$SVWAIT`). [`Sv::Link`] runs the symlink `link`, made when missing.
    pub fn command(self, svdir: &Path, link: &Path) -> Command {
        let mut command = match self {
            Sv::Baseinit => {
                let mut command = Command::new(BIN);
                command.arg("sv");
                command
            }
            Sv::Link => {
                if fs::symlink_metadata(link).is_err() {
                    fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
                    std::os::unix::fs::symlink(BIN, link).expect("symlink sv");
                }
                Command::new(link)
            }
            Sv::Stock => Command::new("sv"),
        };
        command.env("SVDIR", svdir).env_remove("SVWAIT");
        command
    }
}

/// A temporary tree: a service dir, a startup dir, and room for probes.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("baseinit-test-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("service")).expect("mkdir service");
        fs::create_dir(dir.path().join("startup")).expect("mkdir startup");
        Tree { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn service_dir(&self) -> PathBuf {
        self.path().join("service")
    }

    pub fn startup_dir(&self) -> PathBuf {
        self.path().join("startup")
    }

    /// The container environment directory (its .sh and .json sit beside it).
    pub fn env_dir(&self) -> PathBuf {
        self.path().join("container_environment")
    }

    /// A file in the tree for services to write to (`$OUT` in scripts).
    pub fn out(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Writes `service/NAME/FILE` with `mode`.
    pub fn service_file(&self, service: &str, file: &str, body: &str, mode: u32) -> PathBuf {
        let path = self.service_dir().join(service).join(file);
        write_file(&path, body, mode);
        path
    }

    /// A service whose `run` is a shell script body; `$OUT` is the tree's path.
    pub fn service(&self, name: &str, body: &str) {
        self.service_file(name, "run", &self.script(body), 0o755);
    }

    pub fn startup_script(&self, name: &str, body: &str) {
        write_file(&self.startup_dir().join(name), &self.script(body), 0o755);
    }

    pub fn script(&self, body: &str) -> String {
        format!("#!/bin/sh\nOUT='{}'\n{body}\n", self.path().display())
    }

    /// The usual flags pointing baseinit at this tree, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--service-dir".to_owned(),
            self.service_dir().display().to_string(),
            "--startup-dir".to_owned(),
            self.startup_dir().display().to_string(),
            "--rc-local".to_owned(),
            self.path().join("rc.local").display().to_string(),
            // Tests run as root: never the real /etc.
            "--env-dir".to_owned(),
            self.env_dir().display().to_string(),
            "--pre-shutdown-dir".to_owned(),
            self.path().join("pre_shutdown.d").display().to_string(),
            "--post-shutdown-dir".to_owned(),
            self.path().join("post_shutdown.d").display().to_string(),
            "--runtime-dir".to_owned(),
            self.path().join("run").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.out(name)).unwrap_or_default()
    }

    /// The runtime directory `args` names (the control socket, `$BASEINIT_RUNTIME_DIR`).
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    /// Gives `command` this tree's `$SVDIR` and `$BASEINIT_RUNTIME_DIR`.
    pub fn point_at(&self, command: &mut Command) {
        command
            .env("SVDIR", self.service_dir())
            .env("BASEINIT_RUNTIME_DIR", self.runtime_dir());
    }

    /// `baseinit ARGS` (an applet: `status`, `health`, `sv`, `setuser`…)
    /// pointed at this tree, with a deadline.
    pub fn baseinit(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command.args(args);
        self.point_at(&mut command);
        run(command)
    }

    /// `sv ARGS` (`which` one) on this tree's services, with a deadline.
    pub fn sv(&self, which: Sv, args: &[&str]) -> Output {
        let mut command = which.command(&self.service_dir(), &self.path().join("bin/sv"));
        command.args(args);
        self.point_at(&mut command);
        run(command)
    }

    /// Waits until `sv status NAME` (`which` one) starts with `prefix`; its line.
    pub fn wait_sv_status(&self, which: Sv, name: &str, prefix: &str, timeout: Duration) -> String {
        wait_for(&format!("sv status {name} to say {prefix:?}"), timeout, || {
            let text = self.sv(which, &["status", name]).text();
            text.starts_with(prefix).then_some(text)
        })
    }

    /// `baseinit check` pointed at this tree's service and startup
    /// directories, rc.local and environment directory, then `extra`.
    pub fn check_command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("check")
            .arg("--service-dir")
            .arg(self.service_dir())
            .arg("--startup-dir")
            .arg(self.startup_dir())
            .arg("--rc-local")
            .arg(self.path().join("rc.local"))
            .arg("--env-dir")
            .arg(self.env_dir())
            .args(extra);
        command
    }

    /// The running baseinit's `status --json` snapshot; None while nothing
    /// answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.baseinit(&["status", "--json"]);
        (out.code == 0).then(|| serde_json::from_str(&out.stdout).expect("status --json parses"))
    }

    /// Polls the status snapshot until `probe` gives a value.
    pub fn wait_status<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> T {
        wait_for(what, timeout, || probe(&self.status()?))
    }
}

pub fn write_file(path: &Path, body: &str, mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let mut f = fs::File::create(path).expect("create");
    f.write_all(body.as_bytes()).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// How to run baseinit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a new PID namespace (user namespace, root mapped).
    Pid1,
    /// A plain child of the test: baseinit is a child subreaper.
    Subreaper,
}

/// A running baseinit.
pub struct Baseinit {
    child: Child,
    mode: Mode,
    started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit code, or 128+signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// From the start of the process (or the last mark) to its exit.
    pub elapsed: Duration,
}

impl Finished {
    /// Asserts that baseinit's stderr (its log) has `text`; the whole of it
    /// in the message when not.
    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) {
        assert!(self.stderr.contains(text), "no {text:?} in stderr:\n{}", self.stderr);
    }
}

impl Baseinit {
    pub fn start(mode: Mode, args: &[String]) -> Self {
        Self::start_with(mode, args, |_| {})
    }

    /// `setup` adjusts the command (environment, pre_exec) before spawning.
    pub fn start_with(mode: Mode, args: &[String], setup: impl FnOnce(&mut Command)) -> Self {
        Self::start_named(mode, Path::new(BIN), args, setup)
    }

    /// Like [`Baseinit::start_with`], through `program` (e.g. a symlink to
    /// the binary under another name).
    pub fn start_named(mode: Mode, program: &Path, args: &[String], setup: impl FnOnce(&mut Command)) -> Self {
        let logs = tempfile::tempdir().expect("tempdir");
        let stdout = logs.path().join("stdout");
        let stderr = logs.path().join("stderr");
        let mut command = match mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args([
                    "--user",
                    "--map-root-user",
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--kill-child",
                    BIN,
                ]);
                c
            }
            Mode::Subreaper => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        // cargo's CARGO_BIN_EXE_NAME variables name the crate's binaries, and
        // `baseinit-generate` makes one that is not a shell name, which
        // baseinit's export warns about: tests counting warnings would see
        // it. Not the container's environment anyway.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CARGO_BIN_EXE_") {
                command.env_remove(name);
            }
        }
        setup(&mut command);
        let child = command.spawn().expect("spawn baseinit");
        Baseinit {
            child,
            mode,
            started: Instant::now(),
            stdout,
            stderr,
            _logs: logs,
        }
    }

    /// The host pid of baseinit itself (in Pid1 mode, the child of unshare).
    pub fn pid(&self) -> i32 {
        let me = self.child.id() as i32;
        if self.mode == Mode::Subreaper {
            return me;
        }
        let children = format!("/proc/{me}/task/{me}/children");
        wait_for("unshare to fork baseinit", Duration::from_secs(10), || {
            fs::read_to_string(&children)
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a pid we started and have not reaped.
        let rc = unsafe { nix::libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Restarts the clock used for `Finished::elapsed` (e.g. right before a stop).
    pub fn mark(&mut self) {
        self.started = Instant::now();
    }

    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// True while baseinit has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The read end of baseinit's stdout, when `start_with` made it a pipe.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The usual end of a test: SIGTERM, then wait (past `timeout` the
    /// watchdog kills it and fails the test) for an exit with code 0.
    pub fn stop(self, timeout: Duration) -> Finished {
        self.signal(nix::libc::SIGTERM);
        let run = self.wait(timeout);
        assert_eq!(run.code, 0, "exit code after SIGTERM; stderr:\n{}", run.stderr);
        run
    }

    /// Waits for baseinit to exit; past `timeout` the watchdog kills it (and
    /// its namespace) and the test fails.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout.min(WATCHDOG);
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    let elapsed = self.started.elapsed();
                    use std::os::unix::process::ExitStatusExt;
                    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                    return Finished {
                        code,
                        stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
                        stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
                        elapsed,
                    };
                }
                None if Instant::now() >= deadline => {
                    let stderr = self.stderr_so_far();
                    self.kill();
                    panic!("watchdog: baseinit still running after {timeout:?}; stderr:\n{stderr}");
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Kills baseinit by pid. In Pid1 mode, killing `unshare --kill-child`
    /// kills the namespace's PID 1 and so everything in it. A subreaper's
    /// descendants would outlive a SIGKILL, so it gets a SIGTERM and a few
    /// seconds to stop them first.
    fn kill(&mut self) {
        if self.mode == Mode::Subreaper {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { nix::libc::kill(self.child.id() as i32, nix::libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Baseinit {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Polls `probe` every 10 ms until it gives a value; panics (with `what`)
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `file` in the tree contains `text`; the file's content.
pub fn wait_text(tree: &Tree, file: &str, text: &str, timeout: Duration) -> String {
    wait_for(&format!("{text:?} in {file}"), timeout, || {
        let content = tree.read(file);
        content.contains(text).then_some(content)
    })
}

/// Waits until `file` in the tree holds at least `lines` lines.
pub fn wait_lines(tree: &Tree, file: &str, lines: usize, timeout: Duration) -> String {
    wait_for(&format!("{lines} lines in {file}"), timeout, || {
        let text = tree.read(file);
        (text.lines().count() >= lines).then_some(text)
    })
}

/// Waits until baseinit has made `service`'s runit state (its
/// `supervise/status`). It is made just after the wake-up of the event loop
/// that started the service, so the service's first line can come first,
/// and `sv` says "runsv not running" until then (docs/applets.md).
pub fn wait_supervised(tree: &Tree, service: &str, timeout: Duration) {
    let status = tree.service_dir().join(service).join("supervise/status");
    wait_for(&format!("{service}'s supervise/status"), timeout, || {
        status.exists().then_some(())
    });
}

/// Waits until baseinit's control socket (`RUNTIME/control.sock`) is there:
/// it is bound once the first services have started.
pub fn wait_control_socket(tree: &Tree, timeout: Duration) {
    let socket = tree.runtime_dir().join("control.sock");
    wait_for("the control socket", timeout, || socket.exists().then_some(()));
}

/// Host pids of processes whose parent is `ppid`, with their state letter.
pub fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let parent: i32 = fields.next()?.parse().ok()?;
            (parent == ppid).then_some((pid, state))
        })
        .collect()
}

/// A small deterministic generator (xorshift64*): the seed is printed, so a
/// failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Live (not zombie) children of `parent` whose command line is `sleep <n>`,
/// by `n`: every service of the soak ends in `exec sleep <its number>`.
pub fn sleeping_services(parent: i32) -> BTreeMap<u32, Vec<i32>> {
    let mut found: BTreeMap<u32, Vec<i32>> = BTreeMap::new();
    for (pid, state) in children_of(parent) {
        if state == 'Z' {
            continue;
        }
        let line = cmdline(pid);
        if let Some(n) = line.trim_end().strip_prefix("sleep ").and_then(|n| n.parse().ok()) {
            found.entry(n).or_default().push(pid);
        }
    }
    found
}

/// (VmRSS in kB, open fds) of a process.
pub fn footprint(pid: i32) -> (u64, usize) {
    let rss = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss, fds)
}

/// Zombie children of `parent` that are still zombies 300 ms later: a
/// zombie that is reaped promptly is how every process ends.
pub fn lasting_zombies(parent: i32) -> Vec<i32> {
    let zombies = |p| -> Vec<i32> {
        children_of(p)
            .into_iter()
            .filter(|(_, s)| *s == 'Z')
            .map(|(pid, _)| pid)
            .collect()
    };
    let first = zombies(parent);
    std::thread::sleep(Duration::from_millis(300));
    let second = zombies(parent);
    first.into_iter().filter(|pid| second.contains(pid)).collect()
}

/// How many inotify watches `pid` holds (from /proc/PID/fdinfo).
pub fn inotify_watches(pid: i32) -> usize {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|info| info.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

/// How many directories `pid` holds open.
pub fn open_directories(pid: i32) -> usize {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.is_dir()))
        .count()
}

/// Makes `command` start with what a careless parent leaves behind, for
/// baseinit to clean up and never pass on: ignored signals, blocked
/// signals and a stray fd (7, not close-on-exec).
pub fn dirty_inheritance(command: &mut Command) {
    use nix::libc;
    use std::os::unix::process::CommandExt;
    // SAFETY: in the forked child before exec: only async-signal-safe calls.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGALRM, libc::SIG_IGN);
            libc::signal(libc::SIGTSTP, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::dup2(2, 7); // dup2 clears close-on-exec on fd 7
            Ok(())
        });
    }
}

/// The service named `name` in a `baseinit status --json` snapshot.
pub fn service_in<'a>(snapshot: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    snapshot["services"].as_array()?.iter().find(|s| s["name"] == name)
}

/// `NAME=VALUE` pairs of `env -0` output, as bytes.
pub fn parse_env0(bytes: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    bytes
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let eq = entry.iter().position(|b| *b == b'=')?;
            Some((entry[..eq].to_vec(), entry[eq + 1..].to_vec()))
        })
        .collect()
}

/// The environment a real shell gets from sourcing `sh` (a
/// `container_environment.sh`), and nothing else.
pub fn sourced_env(sh: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". '{}'; env -0", sh.display()))
        .env_clear()
        .output()
        .expect("run sh");
    parse_env0(&out.stdout)
}

/// True when `pid` is blocked in nanosleep(2) or clock_nanosleep(2), as
/// `sleep` is once it has started.
pub fn in_nanosleep(pid: i32) -> bool {
    let Ok(syscall) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    let sleeping = [nix::libc::SYS_nanosleep, nix::libc::SYS_clock_nanosleep];
    #[cfg(not(target_arch = "x86_64"))]
    let sleeping = [nix::libc::SYS_clock_nanosleep];
    let number: Option<nix::libc::c_long> = syscall.split_whitespace().next().and_then(|n| n.parse().ok());
    number.is_some_and(|n| sleeping.contains(&n))
}
