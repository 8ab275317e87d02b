//! Scenarios of the whole supervisor with fake processes and a fake clock:
//! real service definitions in a temporary directory, every spawn, signal
//! and exit played by [`Fake`], time moved by hand. Each runs in
//! milliseconds; the end-to-end tests under `tests/` run the real binary.
//!
//! Test code only: `mod.rs` declares this module `#[cfg(test)]`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::host::{Processes, Reaped};
use super::{Options, Supervisor};
use crate::config::{Defaults, OutputMode};
use crate::container_env::{EnvPaths, Vars};
use crate::exit::{ExitStatus, Outcome};
use crate::reaper::ReapedChild;
use crate::shutdown::KillAll;
use crate::spawn::{Launch, Redirect, SpawnError};

mod ready_kinds;
mod schedule;
mod stop;

/// Processes that exist only as entries here: a spawn makes one, a stop
/// signal or the kill-all ends it (unless it is stubborn), and an exit
/// reaches the supervisor at its next reap.
#[derive(Default)]
struct Fake {
    next_pid: i32,
    /// Every start, in order: the program's short name (see `short`).
    started: Vec<String>,
    alive: HashMap<Pid, String>,
    /// Exits the next reap returns.
    exited: Vec<ReapedChild>,
    /// Programs that ignore SIGTERM.
    stubborn: HashSet<String>,
    /// Programs whose start fails (not found).
    missing: HashSet<String>,
    /// Every signal sent, with the program it went to (or "all": the
    /// kill-all).
    signals: Vec<(String, Signal)>,
    /// The real time at the loop's first reading, which it moves with.
    wall: Option<(Instant, std::time::SystemTime)>,
}

/// A program's short name: a service's `run` is its directory's name, a
/// script or command its file name.
fn short(program: &OsString) -> String {
    let path = Path::new(program);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.parent().and_then(Path::file_name) {
        Some(dir) if file == "run" => dir.to_string_lossy().into_owned(),
        _ => file,
    }
}

impl Fake {
    fn end(&mut self, pid: Pid, status: ExitStatus) {
        if self.alive.remove(&pid).is_some() {
            self.exited.push(ReapedChild { pid, status });
        }
    }

    fn pid_of(&self, name: &str) -> Option<Pid> {
        self.alive.iter().find(|(_, n)| *n == name).map(|(pid, _)| *pid)
    }
}

impl Processes for Fake {
    fn spawn(&mut self, launch: &Launch, _: &[OsString], _: &Vars, _: Redirect<'_>) -> Result<Pid, SpawnError> {
        let name = launch.argv.first().map(short).unwrap_or_default();
        if self.missing.contains(&name) {
            return Err(SpawnError::new(launch, io::Error::from(io::ErrorKind::NotFound)));
        }
        self.next_pid += 1;
        let pid = Pid::from_raw(100 + self.next_pid);
        self.started.push(name.clone());
        self.alive.insert(pid, name);
        Ok(pid)
    }

    fn signal_group(&mut self, pgid: Pid, signal: Signal, _: bool) {
        let name = self.alive.get(&pgid).cloned().unwrap_or_default();
        self.signals.push((name, signal));
        let stubborn = self.alive.get(&pgid).is_some_and(|n| self.stubborn.contains(n));
        let deadly = matches!(signal, Signal::SIGKILL) || (matches!(signal, Signal::SIGTERM) && !stubborn);
        if deadly {
            self.end(pgid, ExitStatus::Signaled(signal as i32));
        }
    }

    fn signal(&mut self, pid: Pid, signal: Signal) -> nix::Result<()> {
        self.signal_group(pid, signal, true);
        Ok(())
    }

    fn group_empty(&mut self, pgid: Pid) -> bool {
        !self.alive.contains_key(&pgid)
    }

    fn kill_all(&mut self, _: KillAll, signal: Signal) {
        self.signals.push(("all".to_owned(), signal));
        let pids: Vec<Pid> = self.alive.keys().copied().collect();
        for pid in pids {
            self.signal_group(pid, signal, true);
        }
    }

    fn wall_clock(&mut self, now: Instant) -> std::time::SystemTime {
        // 2025-01-01T00:00:00.250Z at the first reading.
        let start = std::time::UNIX_EPOCH + Duration::from_millis(1_735_689_600_250);
        let (base, wall) = *self.wall.get_or_insert((now, start));
        wall + now.saturating_duration_since(base)
    }

    fn reap(&mut self) -> Reaped {
        Reaped {
            children: std::mem::take(&mut self.exited)
                .into_iter()
                .map(|c| (c, None))
                .collect(),
            no_children: self.alive.is_empty(),
        }
    }
}

/// A supervisor of fake processes over a temporary tree, and its clock.
struct World {
    sup: Supervisor<Fake>,
    now: Instant,
    _tree: tempfile::TempDir,
}

/// The tree's layout: service/, startup/, pre/, post/, env/.
fn tree() -> tempfile::TempDir {
    let tree = tempfile::tempdir().expect("tempdir");
    for dir in ["service", "startup", "pre", "post"] {
        fs::create_dir(tree.path().join(dir)).expect("mkdir");
    }
    tree
}

/// Service `name` in `tree`: `command = [name]` and `extra` lines.
fn service(tree: &Path, name: &str, extra: &str) {
    let dir = tree.join("service").join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("service.toml"), format!("command = [\"{name}\"]\n{extra}\n")).expect("write");
}

/// An executable script in `tree/dir` (a startup script or a hook).
fn script(tree: &Path, dir: &str, name: &str) {
    let path = tree.join(dir).join(name);
    fs::write(&path, "#!/bin/sh\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn options(tree: &Path) -> Options {
    let at = |name: &str| -> PathBuf { tree.join(name) };
    Options {
        service_dir: at("service"),
        service_dir_required: true,
        skip_services: false,
        startup: Some((at("startup"), at("rc.local"))),
        insecure_key: None,
        pre_shutdown_dir: at("pre"),
        post_shutdown_dir: at("post"),
        hook_timeout: Duration::from_secs(10),
        shutdown_delay: Duration::ZERO,
        main_stop_signal: Signal::SIGTERM,
        remap_exit: crate::exit::Remap::default(),
        runtime_dir: at("run"),
        env: EnvPaths::beside(&at("env")),
        output: OutputMode::Inherit,
        style: crate::output::Style {
            format: crate::output::Format::Text,
            timestamps: false,
        },
        command: Vec::new(),
        defaults: Defaults::default(),
        kill_all: KillAll::Namespace,
        kill_all_grace: Duration::from_secs(5),
        startup_timeout: None,
        wait_for_services: None,
        syslog: None,
    }
}

impl World {
    /// Boots a supervisor over the tree `setup` fills in, with `opts`
    /// changed by `adjust`.
    fn boot(setup: impl FnOnce(&Path), adjust: impl FnOnce(&mut Options)) -> World {
        Self::boot_with(Fake::default(), setup, adjust)
    }

    fn boot_with(fake: Fake, setup: impl FnOnce(&Path), adjust: impl FnOnce(&mut Options)) -> World {
        let tree = tree();
        setup(tree.path());
        let mut opts = options(tree.path());
        adjust(&mut opts);
        let (sup, _channels) = Supervisor::with_processes(opts, fake);
        let mut world = World {
            sup,
            now: Instant::now(),
            _tree: tree,
        };
        world.sup.boot(world.now);
        world.settle();
        world
    }

    fn fake(&mut self) -> &mut Fake {
        &mut self.sup.processes
    }

    /// Hands every exit to the supervisor and fires every deadline due
    /// now, as the event loop would, until nothing is left to do.
    fn settle(&mut self) {
        for _ in 0..1000 {
            if !self.sup.processes.exited.is_empty() {
                self.sup.reap(self.now);
            } else if self.sup.next_wake().is_some_and(|at| at <= self.now) {
                self.sup.on_tick(self.now);
            } else {
                return;
            }
        }
        panic!("the supervisor keeps finding work at {:?}", self.now);
    }

    /// Lets `d` pass, firing every deadline on the way.
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.sup.next_wake().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.sup.on_tick(self.now);
            self.settle();
        }
        self.now = end;
    }

    /// The program `name` (a service, probe, script) exits with `code`.
    fn exit(&mut self, name: &str, code: i32) {
        let pid = self
            .fake()
            .pid_of(name)
            .unwrap_or_else(|| panic!("{name} does not run"));
        self.fake().end(pid, ExitStatus::Exited(code));
        self.settle();
    }

    /// The programs started so far, in order.
    fn started(&self) -> Vec<&str> {
        self.sup.processes.started.iter().map(String::as_str).collect()
    }

    fn running(&self, name: &str) -> bool {
        self.sup.processes.pid_of(name).is_some()
    }

    /// Service `name`'s state as `baseinit status` shows it.
    fn state(&self, name: &str) -> String {
        self.sup
            .snapshot(self.now)
            .services
            .into_iter()
            .find(|s| s.name == name)
            .map_or_else(|| "absent".to_owned(), |s| s.state)
    }

    fn stop(&mut self) {
        self.sup.on_stop_signal(Signal::SIGTERM, self.now);
        self.settle();
    }
}

const READY_PROBE: &str = "[ready]\ncommand = [\"probe\"]\ninterval = \"100ms\"\n";

#[tokio::test]
async fn an_after_chain_starts_one_level_at_a_time_and_stops_in_reverse() {
    let mut w = World::boot(
        |t| {
            service(t, "db", READY_PROBE);
            service(t, "app", "after = [\"db\"]");
            service(t, "web", "after = [\"app\"]");
        },
        |_| {},
    );
    assert_eq!(w.started(), ["db", "probe"], "db and its first readiness probe");
    assert_eq!(w.state("app"), "waiting");
    w.exit("probe", 1);
    assert_eq!(w.started(), ["db", "probe"], "not ready: app still waits");
    w.wait(Duration::from_millis(100));
    assert_eq!(
        w.started(),
        ["db", "probe", "probe"],
        "the next probe, an interval later"
    );
    w.exit("probe", 0);
    assert_eq!(w.started(), ["db", "probe", "probe", "app", "web"]);
    w.stop();
    let stopped: Vec<&str> = w
        .fake()
        .signals
        .iter()
        .filter(|(name, signal)| *signal == Signal::SIGTERM && name != "all")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(stopped, ["web", "app", "db"], "the reverse of the start order");
    assert!(w.sup.phases.is_done());
    assert_eq!(w.sup.phases.outcome(&w.sup.units), Outcome::Stopped);
}

#[tokio::test]
async fn a_dependency_cycle_keeps_its_services_down_and_the_rest_starts() {
    let w = World::boot(
        |t| {
            service(t, "a", "after = [\"b\"]");
            service(t, "b", "requires = [\"a\"]");
            service(t, "c", "");
        },
        |_| {},
    );
    assert_eq!(w.started(), ["c"]);
    assert!(w.sup.phases.is_running());
    let snapshot = w.sup.snapshot(w.now);
    let states: Vec<(&str, &str)> = snapshot
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(states, [("c", "run"), ("a", "broken"), ("b", "broken")]);
    assert!(
        snapshot.services[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("dependency cycle: a -> b -> a"))
    );
    assert!(snapshot.health().is_err());
}

#[tokio::test]
async fn a_dependency_dying_mid_boot_holds_back_what_comes_after_it_until_it_is_ready() {
    let mut w = World::boot(
        |t| {
            service(t, "db", READY_PROBE);
            service(t, "app", "after = [\"db\"]\nrequires = [\"db\"]");
        },
        |_| {},
    );
    w.exit("db", 1);
    assert_eq!(w.state("db"), "backoff");
    assert_eq!(w.state("app"), "waiting", "db never was ready");
    // Its probe was of the run that died: its result counts for nothing.
    w.exit("probe", 0);
    assert!(!w.running("app"));
    w.wait(Duration::from_millis(100));
    assert!(w.running("db"), "restarted after the backoff");
    w.exit("probe", 0);
    assert!(w.running("app"), "db is ready now");
    // A crash that is restarted is not going down for good: app runs on.
    w.exit("db", 1);
    assert!(w.running("app"));
    w.wait(Duration::from_millis(200));
    w.exit("probe", 0);
    // `sv down db`: app, which requires it, is stopped first, then db.
    let db = w.sup.units.by_name("db").expect("db");
    w.fake().signals.clear();
    w.sup.on_command(db, b'd', w.now);
    w.settle();
    let stopped: Vec<&str> = w
        .fake()
        .signals
        .iter()
        .filter(|(_, signal)| *signal == Signal::SIGTERM)
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(stopped, ["app", "db"], "app first");
    assert_eq!(w.state("app"), "held");
    // `sv up db`: app comes back once db is ready again.
    w.sup.on_command(db, b'u', w.now);
    w.settle();
    assert!(!w.running("app"));
    w.exit("probe", 0);
    assert!(w.running("app"));
    assert_eq!(w.started().iter().filter(|n| **n == "app").count(), 2);
}

#[tokio::test]
async fn a_rescan_adds_removes_and_changes_services_while_one_waits_for_readiness() {
    let mut w = World::boot(
        |t| {
            service(t, "db", READY_PROBE);
            service(t, "app", "after = [\"db\"]");
            service(t, "old", "");
        },
        |_| {},
    );
    let tree = w.sup.opts.service_dir.clone();
    let root = tree.parent().expect("tree").to_owned();
    service(&root, "new", "");
    fs::remove_dir_all(tree.join("old")).expect("rm old");
    service(&root, "app", "after = [\"db\"]\nstop-timeout = \"2s\"");
    w.sup.rescan(w.now);
    w.settle();
    assert!(w.running("new"));
    assert!(!w.running("old"));
    assert_eq!(w.state("old"), "absent", "retired once down");
    assert_eq!(
        w.state("app"),
        "waiting",
        "the changed definition waits as the old one did"
    );
    assert!(!w.started().contains(&"app"));
    w.exit("probe", 0);
    assert!(w.running("app"), "started once db is ready, with the new definition");
    let app = w.sup.units.by_name("app").expect("app");
    assert_eq!(w.sup.units[app].life.policy().stop_timeout, Duration::from_secs(2));
}

#[tokio::test]
async fn a_stop_during_a_startup_script_stops_it_and_starts_no_service() {
    let mut w = World::boot(
        |t| {
            script(t, "startup", "10_slow");
            service(t, "web", "");
        },
        |_| {},
    );
    assert_eq!(w.started(), ["10_slow"]);
    w.stop();
    assert!(!w.running("10_slow"), "stopped by the shutdown");
    assert_eq!(w.started(), ["10_slow"], "no service ever started");
    assert!(w.sup.phases.is_done());
    assert_eq!(w.sup.phases.outcome(&w.sup.units), Outcome::Stopped);
}

#[tokio::test]
async fn a_stop_during_backoff_settles_at_once_and_never_restarts() {
    let mut w = World::boot(|t| service(t, "flaky", ""), |_| {});
    w.exit("flaky", 1);
    w.wait(Duration::from_millis(100));
    w.exit("flaky", 1);
    assert_eq!(w.state("flaky"), "backoff");
    w.stop();
    assert!(w.sup.phases.is_done(), "nothing to wait for");
    w.wait(Duration::from_secs(60));
    assert_eq!(w.started(), ["flaky", "flaky"], "no restart after the stop");
}

#[tokio::test]
async fn a_second_stop_during_a_hook_changes_nothing_and_a_hook_past_its_budget_is_stopped() {
    let mut w = World::boot(
        |t| {
            script(t, "pre", "10_drain");
            script(t, "post", "10_after");
            service(t, "web", "");
        },
        |o| o.hook_timeout = Duration::from_secs(2),
    );
    w.stop();
    assert_eq!(w.started(), ["web", "10_drain"]);
    assert!(w.running("web"), "services run while the pre-shutdown hook does");
    w.sup.on_stop_signal(Signal::SIGTERM, w.now);
    w.settle();
    assert!(
        w.running("10_drain") && w.running("web"),
        "a second SIGTERM changes nothing"
    );
    w.fake().stubborn.insert("10_drain".into());
    w.wait(Duration::from_secs(3));
    assert!(!w.running("10_drain"), "past the budget: stopped, then killed");
    assert!(!w.running("web"), "then the services stop");
    assert_eq!(w.started(), ["web", "10_drain", "10_after"]);
    w.exit("10_after", 0);
    assert!(w.sup.phases.is_done());
}

#[tokio::test]
async fn the_main_command_waits_for_every_service_and_its_exit_code_is_the_containers() {
    let mut w = World::boot(
        |t| service(t, "db", READY_PROBE),
        |o| {
            o.command = vec!["job".into()];
            o.wait_for_services = Some(Some(Duration::from_secs(5)));
        },
    );
    assert_eq!(w.started(), ["db", "probe"]);
    w.exit("probe", 0);
    assert_eq!(w.started(), ["db", "probe", "job"]);
    w.exit("job", 3);
    assert!(w.sup.phases.is_done());
    assert_eq!(
        w.sup.phases.outcome(&w.sup.units),
        Outcome::MainCommand(ExitStatus::Exited(3))
    );
}

#[tokio::test]
async fn services_not_ready_in_time_fail_the_boot_and_the_main_command_never_starts() {
    let mut w = World::boot(
        |t| service(t, "db", READY_PROBE),
        |o| {
            o.command = vec!["job".into()];
            o.wait_for_services = Some(Some(Duration::from_millis(250)));
        },
    );
    for _ in 0..3 {
        w.exit("probe", 1);
        w.wait(Duration::from_millis(100));
    }
    assert!(!w.started().contains(&"job"));
    assert!(w.sup.phases.is_done());
    assert_eq!(w.sup.phases.outcome(&w.sup.units), Outcome::BootFailed);
}

#[tokio::test]
async fn an_essential_service_that_ends_stops_the_container_with_its_code() {
    let mut w = World::boot(
        |t| {
            service(t, "core", "essential = true\nrestart = \"never\"");
            service(t, "other", "");
        },
        |_| {},
    );
    w.exit("core", 4);
    assert!(!w.running("other"));
    assert!(w.sup.phases.is_done());
    assert_eq!(
        w.sup.phases.outcome(&w.sup.units),
        Outcome::ServiceEnded(ExitStatus::Exited(4))
    );
}

#[tokio::test]
async fn a_logger_outlives_its_service_at_shutdown_and_reads_to_the_end() {
    let mut w = World::boot(
        |t| {
            service(t, "web", "");
            let log = t.join("service/web/log");
            fs::create_dir_all(&log).expect("mkdir");
            fs::write(log.join("service.toml"), "command = [\"logger\"]\n").expect("write");
        },
        |_| {},
    );
    assert_eq!(w.started(), ["logger", "web"], "the logger first");
    w.fake().stubborn.insert("logger".into());
    w.stop();
    assert!(!w.running("web"));
    assert!(w.running("logger"), "not signalled: it reads to end of file");
    let web = w.sup.units.by_name("web").expect("web");
    assert!(w.sup.units[web].log_pipe.is_none(), "its input closed");
    w.exit("logger", 0);
    assert!(w.sup.phases.is_done());
}

#[tokio::test]
async fn a_crash_loop_fails_the_service_and_the_rest_runs_on() {
    let mut w = World::boot(
        |t| {
            service(
                t,
                "bad",
                "max-restarts = 2\nrestart-window = \"1m\"\non-failure = \"stop\"",
            );
            service(t, "good", "");
        },
        |_| {},
    );
    for _ in 0..3 {
        w.exit("bad", 1);
        w.wait(Duration::from_secs(1));
    }
    assert_eq!(w.state("bad"), "failed");
    w.wait(Duration::from_secs(120));
    assert_eq!(w.started().iter().filter(|n| **n == "bad").count(), 3);
    assert!(w.running("good"));
    assert!(w.sup.phases.is_running());
}

#[tokio::test]
async fn a_main_command_that_cannot_start_ends_the_container_with_that_failure() {
    let fake = Fake {
        missing: HashSet::from(["nosuch".to_owned()]),
        ..Fake::default()
    };
    let w = World::boot_with(fake, |t| service(t, "web", ""), |o| o.command = vec!["nosuch".into()]);
    assert_eq!(w.started(), ["web"]);
    assert!(w.sup.phases.is_done());
    assert_eq!(
        w.sup.phases.outcome(&w.sup.units),
        Outcome::MainCommandFailed(crate::exit::SpawnFailure::NotFound)
    );
}

/// An executable `control/LETTER` for service `name`.
fn control(tree: &Path, name: &str, letter: char) {
    let dir = tree.join("service").join(name).join("control");
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(letter.to_string());
    fs::write(&path, "#!/bin/sh\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl World {
    /// The signals sent to `name`, in order.
    fn signals_to(&self, name: &str) -> Vec<Signal> {
        let sent = &self.sup.processes.signals;
        sent.iter().filter(|(n, _)| n == name).map(|(_, s)| *s).collect()
    }

    /// `sv COMMAND name`, as the byte runit's sv writes.
    fn sv(&mut self, name: &str, byte: u8) {
        let id = self.sup.units.by_name(name).expect("a service");
        self.sup.on_command(id, byte, self.now);
        self.settle();
    }
}

#[tokio::test]
async fn sv_down_runs_control_t_in_place_of_the_stop_signal_then_control_d() {
    let mut w = World::boot(
        |t| {
            service(t, "web", "stop-timeout = \"3s\"");
            control(t, "web", 't');
            control(t, "web", 'd');
        },
        |_| {},
    );
    w.sv("web", b'd');
    assert_eq!(w.started(), ["web", "t"], "control/t first");
    assert_eq!(w.signals_to("web"), [], "no signal while it runs");
    w.exit("t", 0);
    assert_eq!(w.signals_to("web"), [Signal::SIGCONT], "handled: runit's SIGCONT only");
    assert_eq!(w.started(), ["web", "t", "d"], "then control/d");
    assert!(w.running("web"));
    assert_eq!(w.state("web"), "stopping");
    w.exit("d", 1);
    w.wait(Duration::from_secs(3));
    assert_eq!(
        w.signals_to("web"),
        [Signal::SIGCONT, Signal::SIGKILL],
        "killed at the stop timeout"
    );
    assert_eq!(w.state("web"), "down");
    assert_eq!(w.started().iter().filter(|n| **n == "web").count(), 1, "stays down");
}

#[tokio::test]
async fn a_failing_control_t_lets_the_stop_signal_go_and_control_d_never_prevents_the_stop() {
    let mut w = World::boot(
        |t| {
            service(t, "web", "");
            control(t, "web", 't');
            control(t, "web", 'd');
            service(t, "api", "");
            control(t, "api", 'd');
        },
        |_| {},
    );
    w.sv("web", b'd');
    w.exit("t", 1);
    assert_eq!(w.started(), ["api", "web", "t", "d"]);
    assert!(!w.running("web"), "SIGTERM after control/t failed");
    assert_eq!(w.signals_to("web")[0], Signal::SIGTERM);
    // Without control/t: the stop signal at once, and control/d after it,
    // whose exit 0 changes nothing (it used to skip the stop).
    w.sv("api", b'd');
    assert!(!w.running("api"));
    assert_eq!(w.started().last(), Some(&"d"));
    w.exit("d", 0);
    assert_eq!(w.state("api"), "down");
}

#[tokio::test]
async fn sv_exit_and_the_shutdown_run_control_t_then_control_x() {
    let mut w = World::boot(
        |t| {
            service(t, "web", "");
            control(t, "web", 't');
            control(t, "web", 'd');
            control(t, "web", 'x');
            service(t, "plain", "");
        },
        |_| {},
    );
    w.stop();
    assert_eq!(w.started(), ["plain", "web", "t"], "plain is stopped by its signal");
    assert!(!w.running("plain"));
    w.exit("t", 1);
    assert!(!w.running("web"));
    assert_eq!(w.started(), ["plain", "web", "t", "x"], "control/x, not control/d");
    assert!(w.sup.phases.is_done(), "control/x does not hold the shutdown up");
    // sv exit is the same.
    let mut w = World::boot(
        |t| {
            service(t, "web", "");
            control(t, "web", 't');
            control(t, "web", 'x');
        },
        |_| {},
    );
    w.sv("web", b'x');
    w.exit("t", 0);
    assert_eq!(w.started(), ["web", "t", "x"]);
    assert_eq!(w.signals_to("web"), [Signal::SIGCONT]);
}

#[tokio::test]
async fn other_control_scripts_stand_in_for_their_command() {
    let mut w = World::boot(
        |t| {
            service(t, "web", "");
            control(t, "web", 'h');
            control(t, "web", 'u');
        },
        |_| {},
    );
    w.sv("web", b'h');
    w.exit("h", 0);
    assert_eq!(w.signals_to("web"), [], "handled");
    w.sv("web", b'h');
    w.exit("h", 1);
    assert_eq!(w.signals_to("web"), [Signal::SIGHUP], "the default after a failure");
    w.sv("web", b'd');
    assert_eq!(w.state("web"), "down");
    w.sv("web", b'u');
    w.exit("u", 0);
    assert_eq!(w.state("web"), "down", "control/u handled sv up");
}
