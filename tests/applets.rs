//! The applets against the real thing: `sv`, run as `baseinit sv` and through
//! a symlink named `sv`, driving Debian's runsv and compared with Debian's sv;
//! and `setuser`, checked from inside the command it runs.
//!
//! Every runsv is a child of the test, stopped by its pid when the test ends;
//! every command and every wait has a deadline.
// Tests are not PID 1: they wait for the children they start themselves, so
// the supervisor's waitpid rule (clippy.toml) does not apply here.
#![allow(clippy::disallowed_methods)]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Capability, Output as Out, Sv, require, run, wait_for, write_file};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The longest a service may take to reach a state.
const SETTLE: Duration = Duration::from_secs(15);

/// The output with every seconds count (`45s`) replaced by `Ns`, so runs a
/// second apart compare equal.
fn normalized(out: &Out) -> Out {
    Out {
        code: out.code,
        stdout: strip_seconds(&out.stdout),
        stderr: strip_seconds(&out.stderr),
    }
}

fn strip_seconds(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
                    let rest = &word[digits..];
                    if digits > 0 && (rest == "s" || rest == "s," || rest == "s;") {
                        format!("N{rest}")
                    } else {
                        word.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A temporary service directory with runsv processes on some of its
/// services, and a `sv` symlink to baseinit.
struct Runit {
    dir: tempfile::TempDir,
    runsvs: Vec<(Child, PathBuf)>,
}

impl Runit {
    fn new() -> Runit {
        let dir = tempfile::Builder::new()
            .prefix("baseinit-sv-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("service")).expect("mkdir service");
        Runit {
            dir,
            runsvs: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn svdir(&self) -> PathBuf {
        self.path().join("service")
    }

    /// A service whose `run` is `body` (sh). Services never outlive 60 s, so
    /// nothing lingers whatever happens to the test.
    fn service(&self, name: &str, body: &str) {
        self.file(name, "run", body, 0o755);
    }

    fn file(&self, service: &str, file: &str, body: &str, mode: u32) {
        let text = format!("#!/bin/sh\nOUT='{}'\n{body}\n", self.path().display());
        write_file(&self.svdir().join(service).join(file), &text, mode);
    }

    /// Starts runsv on a service and waits until it reports a status.
    fn start(&mut self, name: &str) {
        let dir = self.svdir().join(name);
        let child = Command::new("runsv")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn runsv");
        self.runsvs.push((child, dir));
        let has_log = self.svdir().join(name).join("log").is_dir();
        self.settle(name, |line| {
            let up = line.starts_with("run: ") || line.starts_with("down: ");
            up && (!has_log || line.contains("; run: log: (pid"))
        });
    }

    /// `sv ARGS` (`which` one), in the temporary directory, with `env` too.
    fn sv(&self, which: Sv, args: &[&str], env: &[(&str, &OsStr)]) -> Out {
        let mut command = which.command(&self.svdir(), &self.path().join("bin/sv"));
        command.args(args).current_dir(self.path());
        for (key, value) in env {
            command.env(key, value);
        }
        run(command)
    }

    /// `baseinit sv ARGS`.
    fn ours(&self, args: &[&str]) -> Out {
        self.sv(Sv::Baseinit, args, &[])
    }

    fn ours_with(&self, args: &[&str], env: &[(&str, &OsStr)]) -> Out {
        self.sv(Sv::Baseinit, args, env)
    }

    /// `sv ARGS` through the symlink to baseinit.
    fn link(&self, args: &[&str]) -> Out {
        self.sv(Sv::Link, args, &[])
    }

    /// Debian's sv.
    fn stock(&self, args: &[&str]) -> Out {
        self.sv(Sv::Stock, args, &[])
    }

    /// Runs ours (both ways) and stock sv with `args` until they agree (but
    /// for the seconds), at most 20 tries: services may change state between
    /// two runs. Returns our output.
    fn same(&self, args: &[&str]) -> Out {
        let mut last = None;
        for _ in 0..20 {
            let ours = self.ours(args);
            let link = self.link(args);
            let stock = self.stock(args);
            if normalized(&ours) == normalized(&stock) && normalized(&link) == normalized(&stock) {
                return ours;
            }
            last = Some((ours, link, stock));
            std::thread::sleep(Duration::from_millis(100));
        }
        let (ours, link, stock) = last.unwrap_or_else(|| unreachable!());
        panic!("sv {args:?} differs from stock sv:\nours:  {ours:?}\nlink:  {link:?}\nstock: {stock:?}");
    }

    /// Polls our `sv status NAME` until its line satisfies `ok`.
    fn settle(&self, name: &str, ok: impl Fn(&str) -> bool) -> String {
        wait_for(&format!("service {name} to settle"), SETTLE, || {
            let out = self.ours(&["status", name]);
            ok(out.stdout.trim_end()).then_some(out.stdout)
        })
    }

    /// Waits until NAME runs with a pid other than `old`.
    fn restarted(&self, name: &str, old: u32) {
        self.settle(name, |l| {
            l.starts_with(&format!("run: {name}: (pid ")) && !l.contains(&format!("(pid {old})"))
        });
    }

    /// The pid NAME runs with, once it runs (runsv may not have started it yet).
    fn pid_of(&self, name: &str) -> u32 {
        let status = self.settle(name, |l| l.starts_with(&format!("run: {name}: (pid ")));
        let rest = status
            .split("(pid ")
            .nth(1)
            .unwrap_or_else(|| panic!("no pid in {status:?}"));
        rest.split(')').next().and_then(|p| p.parse().ok()).expect("pid")
    }
}

impl Drop for Runit {
    /// Stops every runsv by its pid: TERM (runsv's `exit`), then KILL after
    /// 3 s, and then the services it left, by the pids it recorded.
    fn drop(&mut self) {
        for (child, dir) in &mut self.runsvs {
            let pids: Vec<i32> = [dir.join("supervise/pid"), dir.join("log/supervise/pid")]
                .iter()
                .filter_map(|f| fs::read_to_string(f).ok()?.trim().parse().ok())
                .collect();
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

const SLEEPER: &str = "exec sleep 60";

#[test]
fn normalizing_strips_only_seconds() {
    assert_eq!(
        strip_seconds("run: a: (pid 12) 45s; run: log: (pid 13) 7s\ndown: b: 3s, normally up"),
        "run: a: (pid 12) Ns; run: log: (pid 13) Ns\ndown: b: Ns, normally up"
    );
    assert_eq!(strip_seconds("fail: 12s: x"), "fail: 12s: x");
}

#[test]
fn sv_status_matches_stock_sv() {
    require!(Capability::Runit);
    let mut runit = Runit::new();
    runit.service("up", SLEEPER);
    runit.service("off", SLEEPER);
    runit.file("off", "down", "", 0o644);
    runit.service("logged", SLEEPER);
    runit.service("logged/log", "exec cat >/dev/null");
    runit.service("crash", "exit 1");
    runit.service("idle", SLEEPER);
    write_file(&runit.svdir().join("plain"), "", 0o644);
    for name in ["up", "off", "logged", "crash"] {
        runit.start(name);
    }

    let out = runit.same(&["status", "up"]);
    assert!(out.stdout.starts_with("run: up: (pid "), "{out:?}");
    assert_eq!(out.code, 0);
    let out = runit.same(&["status", "off"]);
    assert_eq!(strip_seconds(&out.stdout), "down: off: Ns\n");
    let out = runit.same(&["status", "logged"]);
    assert!(out.stdout.contains("s; run: log: (pid "), "{out:?}");
    runit.same(&["status", "logged/log"]);
    let out = runit.same(&["status", "crash"]);
    assert!(
        out.stdout.contains(", normally up, want up") || out.stdout.starts_with("run: "),
        "{out:?}"
    );

    // Failures of every kind, several services at once, paths.
    let svdir = runit.svdir();
    let by_path = svdir.join("up");
    let by_path = by_path.to_str().expect("utf-8");
    let out = runit.same(&[
        "s",
        "up",
        "missing",
        "plain",
        "idle",
        by_path,
        "./service/off",
        "off",
        "",
    ]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stdout
            .contains("fail: missing: unable to change to service directory: file does not exist\n")
    );
    assert!(
        out.stdout
            .contains("fail: plain: unable to change to service directory: not a directory\n")
    );
    assert!(
        out.stdout
            .contains("warning: idle: unable to open supervise/ok: file does not exist\n")
    );

    // check: everything already as wanted, or not supervised.
    runit.same(&["check", "up", "off", "logged"]);
    runit.same(&["check", "idle", "missing"]);
}

#[test]
fn sv_usage_errors_are_runits() {
    let usage = "usage: sv [-v] [-w sec] command service ...\n\n";
    let runit = Runit::new();
    for args in [
        &[][..],
        &["status"],
        &["bogus", "x"],
        &["restore", "x"],
        &["force-bogus", "x"],
        &["-v"],
        &["--", "-v", "up", "x"],
    ] {
        for out in [runit.ours(args), runit.link(args)] {
            assert_eq!(
                (out.code, out.stdout.as_str(), out.stderr.as_str()),
                (100, "", usage),
                "{args:?}"
            );
        }
    }
    let out = runit.ours(&["-z", "status", "x"]);
    assert_eq!(
        (out.code, out.stderr),
        (100, format!("sv: illegal option -- z\n{usage}"))
    );
    let out = runit.ours(&["-w"]);
    assert_eq!(
        (out.code, out.stderr),
        (100, format!("sv: option requires an argument -- w\n{usage}"))
    );
    if !common::require(
        Capability::Runit,
        "sv_usage_errors_are_runits (comparison with stock sv)",
    ) {
        return;
    }
    for args in [
        &[][..],
        &["status"],
        &["bogus", "x"],
        &["-z", "status", "x"],
        &["-w"],
        &["-V", "x"],
    ] {
        let (ours, stock) = (runit.ours(args), runit.stock(args));
        assert_eq!((ours.code, &ours.stdout), (stock.code, &stock.stdout), "{args:?}");
        // -V prints the version first, which differs by design.
        let last = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with("$Id"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(last(&ours.stderr), last(&stock.stderr), "{args:?}");
    }
}

#[test]
fn sv_counts_failures_in_its_exit_status_up_to_99() {
    let runit = Runit::new();
    let names: Vec<String> = (0..120).map(|i| format!("missing{i}")).collect();
    let mut args = vec!["status"];
    args.extend(names.iter().take(3).map(String::as_str));
    assert_eq!(runit.ours(&args).code, 3);
    let mut args = vec!["up"];
    args.extend(names.iter().map(String::as_str));
    let out = runit.ours(&args);
    assert_eq!(out.code, 99);
    assert_eq!(out.stdout.lines().count(), 120);
    if common::require(
        Capability::Runit,
        "sv_counts_failures_in_its_exit_status_up_to_99 (comparison)",
    ) {
        assert_eq!(runit.stock(&args), out);
    }
}

#[test]
fn sv_control_commands_drive_runsv_as_stock_sv_does() {
    require!(Capability::Runit);
    let mut runit = Runit::new();
    runit.service(
        "web",
        concat!(
            "echo started >> \"$OUT/starts\"\n",
            "trap 'echo hup >> \"$OUT/signals\"' HUP\n",
            // A loop, so the trap runs promptly; bounded like every service here.
            "i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done",
        ),
    );
    runit.start("web");
    let signals = || fs::read_to_string(runit.path().join("signals")).unwrap_or_default();

    assert_eq!(
        runit.ours(&["down", "web"]),
        Out {
            code: 0,
            stdout: String::new(),
            stderr: String::new()
        }
    );
    runit.settle("web", |l| l.starts_with("down: web: ") && l.ends_with("s, normally up"));
    runit.same(&["status", "web"]);

    assert_eq!(runit.link(&["up", "web"]).code, 0);
    runit.settle("web", |l| l.starts_with("run: web: (pid "));
    runit.same(&["status", "web"]);

    runit.ours(&["hup", "web"]);
    wait_for("the HUP to arrive", SETTLE, || signals().contains("hup").then_some(()));

    runit.ours(&["pause", "web"]);
    let line = runit.settle("web", |l| l.ends_with(", paused"));
    assert!(line.starts_with("run: web: (pid "), "{line}");
    runit.same(&["status", "web"]);
    runit.ours(&["cont", "web"]);
    runit.settle("web", |l| l.starts_with("run: ") && !l.contains("paused"));

    // once: stays up now, but will not be restarted.
    runit.ours(&["once", "web"]);
    runit.settle("web", |l| l.ends_with(", want down"));
    runit.same(&["status", "web"]);
    let before = runit.pid_of("web");
    runit.ours(&["term", "web"]);
    runit.settle("web", |l| l.starts_with("down: web: ") && l.ends_with(", normally up"));
    runit.ours(&["up", "web"]);
    runit.settle("web", |l| l.starts_with("run: "));
    assert_ne!(runit.pid_of("web"), before);

    // kill: runsv restarts it (after its one-second pause).
    let before = runit.pid_of("web");
    runit.ours(&["kill", "web"]);
    runit.restarted("web", before);
    let starts = fs::read_to_string(runit.path().join("starts")).unwrap_or_default();
    assert!(starts.lines().count() >= 3, "{starts}");
}

#[test]
fn sv_waiting_commands_report_ok_timeout_and_kill_as_stock_sv() {
    require!(Capability::Runit);
    let mut runit = Runit::new();
    runit.service("web", SLEEPER);
    runit.service("crash", "exit 1");
    runit.service("stubborn", &format!("trap '' TERM\n{SLEEPER}"));
    runit.service("ready", SLEEPER);
    runit.file("ready", "check", "test -e \"$OUT/ready-now\"", 0o755);
    for name in ["web", "crash", "stubborn", "ready"] {
        runit.start(name);
    }

    let out = runit.ours(&["stop", "web"]);
    assert_eq!(
        (out.code, strip_seconds(&out.stdout)),
        (0, "ok: down: web: Ns, normally up\n".into())
    );
    runit.same(&["stop", "web"]);
    runit.same(&["-v", "down", "web"]);
    let out = runit.link(&["start", "web"]);
    assert!(out.stdout.starts_with("ok: run: web: (pid "), "{out:?}");
    runit.same(&["start", "web"]);
    let before = runit.pid_of("web");
    let out = runit.ours(&["restart", "web"]);
    assert!(out.stdout.starts_with("ok: run: web: (pid "), "{out:?}");
    // runit compares whole seconds: right after a start, `restart` may
    // report the old pid before runsv acts. Stock sv does the same.
    runit.restarted("web", before);
    let out = runit.ours(&["-v", "term", "web"]);
    assert!(out.stdout.starts_with("ok: run: web: (pid "), "{out:?}");

    // Timeouts: -w, and $SVWAIT.
    let started = Instant::now();
    let out = runit.ours(&["-w", "1", "start", "crash"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("timeout: "), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    runit.same(&["-w1", "start", "crash"]);
    let out = runit.ours_with(&["start", "crash"], &[("SVWAIT", OsStr::new("1"))]);
    assert!(out.stdout.starts_with("timeout: "), "{out:?}");

    // A check script decides readiness.
    let pid = runit.pid_of("ready");
    let out = runit.ours(&["-w", "1", "start", "ready"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        strip_seconds(&out.stdout),
        format!("timeout: run: ready: (pid {pid}) Ns\n")
    );
    runit.same(&["-w", "1", "check", "ready"]);
    fs::write(runit.path().join("ready-now"), "").expect("ready");
    let out = runit.ours(&["check", "ready"]);
    assert!(out.stdout.starts_with("ok: run: ready: (pid "), "{out:?}");
    runit.same(&["start", "ready"]);

    // force-stop: a service ignoring TERM is reported with kill: and killed.
    let pid = runit.pid_of("stubborn");
    let out = runit.ours(&["-w", "1", "force-stop", "stubborn"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        strip_seconds(&out.stdout),
        format!("kill: run: stubborn: (pid {pid}) Ns, want down, got TERM\n")
    );
    runit.settle("stubborn", |l| {
        l.starts_with("down: stubborn: ") && l.ends_with(", normally up")
    });
    runit.same(&["force-stop", "stubborn"]);
}

#[test]
fn sv_exit_and_shutdown_stop_runsv_and_then_report_it_gone() {
    require!(Capability::Runit);
    let mut runit = Runit::new();
    runit.service("web", SLEEPER);
    runit.service("web/log", "exec cat >/dev/null");
    runit.service("other", SLEEPER);
    runit.start("web");
    runit.start("other");

    let out = runit.ours(&["shutdown", "web"]);
    assert_eq!(
        out,
        Out {
            code: 0,
            stdout: "ok: web: runsv not running\n".into(),
            stderr: String::new()
        }
    );
    let out = runit.same(&["status", "web"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, "fail: web: runsv not running\n"));
    runit.same(&["exit", "web"]);
    runit.same(&["force-shutdown", "web"]);
    runit.same(&["up", "web"]);
    runit.same(&["start", "web"]);
    runit.same(&["check", "web"]);

    assert_eq!(runit.link(&["exit", "other"]).code, 0);
    wait_for("runsv of other to exit", SETTLE, || {
        runit
            .ours(&["status", "other"])
            .stdout
            .contains("runsv not running")
            .then_some(())
    });
}

#[test]
fn sv_finds_the_state_in_baseinits_runtime_dir_when_the_service_has_no_supervise() {
    require!(Capability::Runit);
    let mut runit = Runit::new();
    runit.service("real", SLEEPER);
    runit.start("real");
    // A read-only-style copy without supervise/, whose state lives in the
    // runtime dir (here: runsv's own files, linked in).
    let readonly = runit.path().join("readonly");
    write_file(&readonly.join("web/run"), "#!/bin/sh\nexec sleep 60\n", 0o755);
    let runtime = runit.path().join("runtime");
    fs::create_dir_all(runtime.join("supervise")).expect("mkdir runtime");
    std::os::unix::fs::symlink(runit.svdir().join("real/supervise"), runtime.join("supervise/web")).expect("link");
    let env = [
        ("SVDIR", readonly.as_os_str()),
        ("BASEINIT_RUNTIME_DIR", runtime.as_os_str()),
    ];

    let pid = runit.pid_of("real");
    let out = runit.ours_with(&["status", "web"], &env);
    assert_eq!(
        strip_seconds(&out.stdout),
        format!("run: web: (pid {pid}) Ns\n"),
        "{out:?}"
    );
    let out = runit.ours_with(&["restart", "web"], &env);
    assert!(out.stdout.starts_with("ok: run: web: (pid "), "{out:?}");
    runit.restarted("real", pid);
    // Without the variable, the default (/run/baseinit) has no such state.
    let out = runit.ours_with(&["status", "web"], &env[..1]);
    assert_eq!(
        out.stdout,
        "warning: web: unable to open supervise/ok: file does not exist\n"
    );
    // A supervise/ in the service directory wins.
    let out = runit.ours_with(&["status", "real"], &env[1..]);
    assert!(out.stdout.starts_with("run: real: "), "{out:?}");
}

fn setuser(args: &[&str]) -> Out {
    let mut command = Command::new(BIN);
    command.arg("setuser").args(args);
    run(command)
}

#[test]
fn setuser_drops_to_nobody_completely() {
    require!(Capability::Root);
    let script =
        r#"grep -E "^(Uid|Gid|Groups):" /proc/self/status; echo HOME=$HOME USER=$USER LOGNAME=$LOGNAME UID=$UID"#;
    let out = setuser(&["nobody", "sh", "-c", script]);
    assert_eq!(out.code, 0, "{out:?}");
    let field = |name: &str| -> Vec<String> {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {out:?}"));
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(field("Uid:"), ["65534"; 4]);
    assert_eq!(field("Gid:"), ["65534"; 4]);
    assert_eq!(field("Groups:"), ["65534"], "no supplementary group but nobody's own");
    let env = out.stdout.lines().last().unwrap_or_default();
    assert!(
        env.starts_with("HOME=/") && env.contains(" USER=nobody LOGNAME=nobody UID=65534"),
        "{env}"
    );

    // By uid too, and through a symlink named setuser.
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(BIN, dir.path().join("setuser")).expect("symlink");
    let out = run({
        let mut c = Command::new(dir.path().join("setuser"));
        c.args(["65534", "id", "-u"]);
        c
    });
    assert_eq!((out.code, out.stdout.as_str()), (0, "65534\n"), "{out:?}");
}

#[test]
fn setuser_exit_statuses() {
    let out = setuser(&[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("Usage: setuser USERNAME COMMAND"), "{out:?}");
    assert_eq!(setuser(&["nobody"]).code, 1);
    let out = setuser(&["no-such-user-here", "true"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "setuser: user no-such-user-here not found\n")
    );
    if !common::require(Capability::Root, "setuser_exit_statuses (exec errors)") {
        return;
    }
    let out = setuser(&["nobody", "no-such-command-here"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (127, "setuser: no-such-command-here: command not found\n")
    );
    let out = setuser(&["nobody", "/no/such/file"]);
    assert_eq!(out.code, 127, "{out:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    // Searchable by nobody, so the file's own mode is what fails.
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let script = dir.path().join("script");
    write_file(&script, "#!/bin/sh\necho hi\n", 0o644);
    let out = setuser(&["nobody", script.to_str().expect("utf-8")]);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(out.stderr.contains("cannot execute: Permission denied"), "{out:?}");
    let out = setuser(&["nobody", "true"]);
    assert_eq!(
        out,
        Out {
            code: 0,
            stdout: String::new(),
            stderr: String::new()
        }
    );
}
