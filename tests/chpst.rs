//! baseinit's `chpst`, and its daemontools names (`envdir`, `setuidgid`,
//! `envuidgid`, `softlimit`, `pgrphack`, `setlock`), side by side with
//! Debian's runit `chpst` called by the same names (symlinks in a temporary
//! directory): the same arguments must give the same output, environment,
//! ids, limits, nice value, descriptors, session and exit status.
//!
//! Every process a test starts has a deadline and is killed by its pid.
// Tests are not PID 1: they wait for the children they start themselves, so
// the supervisor's waitpid rule (clippy.toml) does not apply here.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Capability, Output as Out, require, run, try_run};

/// The two implementations compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Debian,
    Baseinit,
}

/// A directory with `debian/NAME` → Debian's chpst and `baseinit/NAME` →
/// baseinit for every name, and room for envdirs and lock files.
struct Pair {
    dir: tempfile::TempDir,
}

const NAMES: [&str; 7] = [
    "chpst",
    "envdir",
    "envuidgid",
    "pgrphack",
    "setlock",
    "setuidgid",
    "softlimit",
];

impl Pair {
    fn new() -> Pair {
        let debian = common::which("chpst").expect("runit's chpst in PATH (Debian package runit)");
        let dir = tempfile::tempdir().expect("tempdir");
        // Searchable by nobody, for the tests that switch to it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        for (which, target) in [("debian", debian.as_path()), ("baseinit", Path::new(BIN))] {
            fs::create_dir(dir.path().join(which)).expect("mkdir");
            for name in NAMES {
                std::os::unix::fs::symlink(target, dir.path().join(which).join(name)).expect("symlink");
            }
        }
        Pair { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `NAME ARGS…` by one of the two, in the pair's directory, with a small
    /// fixed environment.
    fn command(&self, which: Which, name: &str, args: &[&str]) -> Command {
        let side = if which == Which::Debian { "debian" } else { "baseinit" };
        let mut command = Command::new(self.path().join(side).join(name));
        command
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("SET", "old")
            .env("EMPTY", "was here")
            .env("KEEP", "kept");
        command
    }

    /// Runs `NAME ARGS…` by both.
    fn both(&self, name: &str, args: &[&str]) -> (Out, Out) {
        (
            run(self.command(Which::Debian, name, args)),
            run(self.command(Which::Baseinit, name, args)),
        )
    }

    /// Asserts that both give the same status and output; returns it.
    fn same(&self, name: &str, args: &[&str]) -> Out {
        let (debian, ours) = self.both(name, args);
        assert_eq!(ours, debian, "{name} {args:?}: baseinit (left) vs Debian (right)");
        ours
    }

    /// An envdir under the pair's directory, from (file, content) pairs.
    fn envdir(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir(&dir).expect("mkdir");
        for (file, content) in files {
            fs::write(dir.join(file), content).expect("write");
        }
        dir
    }
}

fn needs_runit() -> bool {
    common::require(Capability::Runit, "chpst tests (Debian's chpst)")
}

#[test]
fn the_environment_after_an_envdir_is_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    let files: &[(&str, &[u8])] = &[
        ("SET", b"new value \t \nsecond line\n"),
        ("EMPTY", b""),
        ("BLANK", b"\n"),
        ("NUL", b"a\0b"),
        ("LEADING", b"  x"),
        ("CR", b"dos\r\n"),
        ("E=Q", b"v"),
        (".hidden", b"no"),
        // The program is found by the PATH chpst started with, as runit's.
        ("PATH", b"/nonexistent"),
    ];
    pair.envdir("env", files);
    let out = pair.same("chpst", &["-e", "env", "env"]);
    assert!(
        out.stdout.contains("SET=new value\n") && !out.stdout.contains("EMPTY="),
        "{out:?}"
    );
    pair.same("envdir", &["env", "env"]);
    pair.same("envdir", &["env/", "env"]);
    pair.same("envdir", &[&pair.path().join("env").to_string_lossy(), "env"]);

    // A subdirectory: skipped by -e (a warning with -v), an error for envdir.
    fs::create_dir(pair.path().join("env/SUB")).expect("mkdir");
    pair.same("chpst", &["-e", "env", "env"]);
    let out = pair.same("chpst", &["-v", "-e", "env", "true"]);
    assert_eq!(out.stderr, "chpst: warning: unable to read env/SUB: is a directory\n");
    let out = pair.same("envdir", &["env", "true"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (111, "chpst: fatal: unable to read env/SUB: is a directory\n")
    );
    // -U's UID and GID come after the envdir's.
    pair.envdir("ids", &[("UID", b"1"), ("GID", b"2"), ("OTHER", b"3")]);
    pair.same("chpst", &["-e", "ids", "-U", "root", "env"]);
    pair.same("chpst", &["-U", "nobody:root", "env"]);
    pair.same("chpst", &["-U", ":5:6:7", "env"]);
    pair.same("envuidgid", &["nobody", "env"]);
    pair.same("chpst", &["-b", "renamed", "sh", "-c", "echo $0"]);
}

#[test]
fn the_ids_are_the_same() {
    if !needs_runit() {
        return;
    }
    require!(Capability::Root);
    let pair = Pair::new();
    let script = "id; grep -E '^(Uid|Gid|Groups):' /proc/self/status";
    for user in [
        "nobody",
        "nobody:nogroup",
        "nobody:nogroup:root",
        ":65534:65534:0",
        ":1000:",
        "root",
    ] {
        let out = pair.same("chpst", &["-u", user, "sh", "-c", script]);
        assert_eq!(out.code, 0, "{user}: {out:?}");
    }
    let out = pair.same("setuidgid", &["nobody", "sh", "-c", script]);
    assert!(
        out.stdout.contains("Groups:\t65534 \n"),
        "no group but nobody's own: {out:?}"
    );
    // -U and -u together, -u after the envdir was read as root.
    pair.same("chpst", &["-U", "root", "-u", "nobody", "sh", "-c", "id; env"]);

    // Already nobody, without CAP_SETGID: runit's chpst fails to set the
    // groups it has; baseinit's changes nothing (a deliberate difference).
    for (which, want) in [("debian", 111), ("baseinit", 0)] {
        let inner = pair.path().join(which).join("chpst");
        let inner = inner.to_string_lossy();
        let out = run(pair.command(
            Which::Debian,
            "chpst",
            &["-u", "nobody", &inner, "-u", "nobody", "id", "-u"],
        ));
        assert_eq!(out.code, want, "{which}: {out:?}");
    }
    let ours = pair.path().join("baseinit/chpst");
    let out = run(pair.command(
        Which::Debian,
        "chpst",
        &["-u", "nobody", &ours.to_string_lossy(), "-u", "root", "true"],
    ));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (111, "chpst: fatal: unable to setgroups: permission denied\n")
    );
}

#[test]
fn the_limits_are_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    let limits = ["sh", "-c", "cat /proc/self/limits"];
    let with = |options: &[&'static str]| [options, &limits[..]].concat();
    for options in [
        &["-o", "77"][..],
        &["-m", "500000000"],
        &[
            "-d",
            "400000000",
            "-p",
            "500",
            "-f",
            "100000",
            "-c",
            "0",
            "-r",
            "1000000",
            "-t",
            "100",
        ],
        // Above the hard limit: the hard limit, silently.
        &["-o", "999999999999"],
        &["-o", "18446744073709551615"],
        &["-o", "9223372036854775808"],
    ] {
        let out = pair.same("chpst", &with(options));
        assert_eq!(out.code, 0, "{options:?}: {out:?}");
    }
    for options in [
        &["-o", "10"][..],
        &["-m", "="],
        &["-a", "600000000", "-s", "1000000", "-l", "65536"],
        &["-o", "="],
    ] {
        let out = pair.same("softlimit", &with(options));
        assert_eq!(out.code, 0, "{options:?}: {out:?}");
    }
    let out = pair.same("softlimit", &["-o", "10", "sh", "-c", "ulimit -n"]);
    assert_eq!(out.stdout, "10\n");
}

#[test]
fn the_nice_value_is_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    let field19 = ["sh", "-c", "cut -d' ' -f19 /proc/self/stat"];
    let before = pair.same("chpst", &field19).stdout;
    let mut increments = vec!["3", "+2", "0", ""];
    if nix::unistd::Uid::effective().is_root() {
        increments.push("-4");
    }
    for increment in increments {
        let out = pair.same("chpst", &[&["-n", increment][..], &field19].concat());
        let (was, now): (i32, i32) = (
            before.trim().parse().expect("nice"),
            out.stdout.trim().parse().expect("nice"),
        );
        let want: i32 = increment.trim_start_matches('+').parse().unwrap_or(0);
        assert_eq!(now, (was + want).clamp(-20, 19), "-n {increment}");
    }
}

#[test]
fn usage_errors_are_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    let cases: &[(&str, &[&str])] = &[
        ("chpst", &[]),
        ("chpst", &["-v"]),
        ("chpst", &["--"]),
        ("chpst", &["-C", "/", "true"]),
        ("chpst", &["-vx", "true"]),
        ("chpst", &["-u"]),
        ("chpst", &["-v", "-e"]),
        ("chpst", &["-n", "x", "true"]),
        ("chpst", &["-n", "--1", "true"]),
        ("chpst", &["-o", "1k", "true"]),
        ("chpst", &["-m", "-1", "true"]),
        ("chpst", &["-l", "a", "-L", "b", "true"]),
        ("envdir", &[]),
        ("envdir", &["dir"]),
        ("setuidgid", &["nobody"]),
        ("envuidgid", &[]),
        ("pgrphack", &[]),
        ("softlimit", &["-x", "true"]),
        ("softlimit", &["-o", "z", "true"]),
        ("softlimit", &["-o"]),
        ("softlimit", &["-o", "1"]),
        ("setlock", &["f"]),
        ("setlock", &["-q", "f", "true"]),
    ];
    for (name, args) in cases {
        let out = pair.same(name, args);
        assert_eq!(out.code, 100, "{name} {args:?}");
    }
    // -V: the version line differs, the rest does not.
    let (debian, ours) = pair.both("chpst", &["-V", "true"]);
    assert_eq!((ours.code, debian.code), (100, 100));
    let usage = |out: &Out| out.stderr.split_once('\n').map(|(_, rest)| rest.to_owned());
    assert_eq!(usage(&ours), usage(&debian));
    assert!(ours.stderr.starts_with("$Id: baseinit chpst "), "{ours:?}");
}

#[test]
fn failures_are_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    fs::write(pair.path().join("plain-file"), "x").expect("write");
    let cases: &[(&str, &[&str])] = &[
        ("chpst", &["no-such-program-baseinit"]),
        ("chpst", &["./no-such-program"]),
        ("chpst", &["-b", "name", "no-such-program-baseinit"]),
        ("chpst", &["/etc"]),
        ("chpst", &["plain-file"]),
        ("chpst", &["./plain-file"]),
        ("chpst", &["-"]),
        ("chpst", &["-u", "no-such-user-baseinit", "true"]),
        ("chpst", &["-u", "nobody:no-such-group", "true"]),
        ("chpst", &["-u", "nobody:", "true"]),
        ("chpst", &["-u", ":65534", "true"]),
        ("chpst", &["-U", "no-such-user-baseinit", "true"]),
        ("chpst", &["-e", "no-such-dir", "true"]),
        ("chpst", &["-e", "plain-file", "true"]),
        ("chpst", &["-/", "no-such-root", "true"]),
        ("chpst", &["-l", "no-such-dir/lock", "true"]),
        ("envdir", &["no-such-dir", "true"]),
        ("envdir", &["plain-file", "true"]),
        ("setuidgid", &["no-such-user-baseinit", "true"]),
        ("setuidgid", &["nobody:nogroup", "true"]),
        ("envuidgid", &["no-such-user-baseinit", "true"]),
        ("pgrphack", &["no-such-program-baseinit"]),
        ("softlimit", &["-o", "10", "no-such-program-baseinit"]),
        ("setlock", &["no-such-dir/lock", "true"]),
        ("setlock", &["lock", "no-such-program-baseinit"]),
    ];
    for (name, args) in cases {
        let out = pair.same(name, args);
        assert_eq!(out.code, 111, "{name} {args:?}: {out:?}");
    }
    // -x: silent, exit 0, for a lock it cannot take or a program it cannot run.
    for args in [
        &["-x", "no-such-dir/lock", "true"][..],
        &["-x", "lock", "no-such-program"],
    ] {
        let out = pair.same("setlock", args);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{args:?}");
    }
    if nix::unistd::Uid::effective().is_root() {
        let out = pair.same("chpst", &["-/", "/", "sh", "-c", "echo in"]);
        assert_eq!(out.stdout, "in\n");
        let out = pair.same("chpst", &["-/", ".", "/no-such-program"]);
        assert_eq!(out.code, 111);
    }
}

#[test]
fn closed_descriptors_are_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    for args in [
        &["-0", "sh", "-c", "ls /proc/$$/fd"][..],
        &["-0", "-1", "sh", "-c", "ls /proc/$$/fd >&2"],
        &["-2", "sh", "-c", "ls /proc/$$/fd"],
        &["-012", "sh", "-c", "ls /proc/$$/fd"],
        // An error after stderr is closed is not seen.
        &["-2", "no-such-program-baseinit"],
    ] {
        pair.same("chpst", args);
    }
}

/// Runs `command` without a process group of its own (as a service's `run`
/// is), killed by its pid past the deadline.
fn run_in_our_group(mut command: Command) -> Out {
    let logs = tempfile::tempdir().expect("tempdir");
    let out_path = logs.path().join("out");
    let file = fs::File::create(&out_path).expect("out file");
    command.stdin(Stdio::null()).stdout(file).stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn");
    let until = Instant::now() + common::COMMAND_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Out {
                code: status.code().unwrap_or(-1),
                stdout: fs::read_to_string(&out_path).unwrap_or_default(),
                stderr: String::new(),
            };
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {:?}; killed", common::COMMAND_DEADLINE);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_new_session_is_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    // pid, pgrp and session: the three must be equal after setsid.
    let stat = ["sh", "-c", "cut -d' ' -f1,5,6 /proc/$$/stat"];
    for which in [Which::Debian, Which::Baseinit] {
        for (name, options) in [("chpst", &["-P"][..]), ("pgrphack", &[])] {
            let out = run_in_our_group(pair.command(which, name, &[options, &stat].concat()));
            let ids: Vec<&str> = out.stdout.split_whitespace().collect();
            assert_eq!(out.code, 0, "{which:?} {name}");
            assert!(
                ids.len() == 3 && ids.iter().all(|id| *id == ids[0]),
                "{which:?} {name}: {out:?}"
            );
        }
    }
    // A process group leader cannot make a session: ignored, as runit does.
    pair.same("chpst", &["-P", "true"]);
    pair.same("pgrphack", &["true"]);
}

/// Holds an exclusive lock on `path` for as long as it lives.
fn hold(path: &Path) -> nix::fcntl::Flock<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("lock file");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).expect("lock")
}

/// Starts `command`, checks that it is still waiting after a while, runs
/// `release`, and returns how it ended.
fn waits_until(command: Command, release: impl FnOnce()) -> Out {
    let mut command = command;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let waiting = child.try_wait().expect("try_wait").is_none();
    release();
    let until = Instant::now() + common::COMMAND_DEADLINE;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still waiting after the lock was released; killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("output");
    assert!(waiting, "{command:?} did not wait for the lock: {output:?}");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn locks_are_the_same() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    let lock = pair.path().join("lock");
    let lock_arg = lock.to_string_lossy().into_owned();
    // The program holds the lock: another taker fails while it runs.
    let check = format!("flock -n {lock_arg} true; echo $?");
    let out = pair.same("chpst", &["-l", "lock", "sh", "-c", &check]);
    assert_eq!(out.stdout, "1\n");
    pair.same("chpst", &["-L", "lock", "sh", "-c", &check]);
    let out = pair.same("setlock", &["lock", "sh", "-c", &check]);
    assert_eq!(out.stdout, "1\n");
    // Created 0600 when missing.
    assert_eq!(fs::metadata(&lock).expect("lock").permissions().mode() & 0o777, 0o600);

    let held = hold(&lock);
    let out = pair.same("chpst", &["-L", "lock", "true"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (111, "chpst: fatal: unable to lock: lock: temporary failure\n")
    );
    // setlock: baseinit's -n gives up at once and its default waits, as
    // daemontools' setlock; runit's chpst has the two swapped.
    let (debian, ours) = (
        run(pair.command(Which::Debian, "setlock", &["lock", "true"])),
        run(pair.command(Which::Baseinit, "setlock", &["-n", "lock", "true"])),
    );
    assert_eq!((ours.code, &ours), (111, &debian));
    let (debian, ours) = (
        run(pair.command(Which::Debian, "setlock", &["-x", "lock", "true"])),
        run(pair.command(Which::Baseinit, "setlock", &["-nx", "lock", "true"])),
    );
    assert_eq!((ours.code, &ours), (0, &debian));
    drop(held);

    for (which, name, args) in [
        (Which::Debian, "chpst", &["-l", "lock", "echo", "got it"][..]),
        (Which::Baseinit, "chpst", &["-l", "lock", "echo", "got it"]),
        (Which::Debian, "setlock", &["-n", "lock", "echo", "got it"]),
        (Which::Baseinit, "setlock", &["lock", "echo", "got it"]),
        (Which::Baseinit, "setlock", &["-N", "lock", "echo", "got it"]),
    ] {
        let held = hold(&lock);
        let out = waits_until(pair.command(which, name, args), || drop(held));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "got it\n"),
            "{which:?} {name} {args:?}"
        );
    }
}

#[test]
fn baseinit_chpst_is_chpst() {
    if !needs_runit() {
        return;
    }
    let pair = Pair::new();
    let mut command = Command::new(BIN);
    command
        .args(["chpst", "-o", "33", "sh", "-c", "ulimit -n"])
        .current_dir(pair.path());
    let out = try_run(command, common::COMMAND_DEADLINE).expect("baseinit chpst");
    assert_eq!((out.code, out.stdout.as_str()), (0, "33\n"), "{out:?}");
    let (debian, _) = pair.both("chpst", &[]);
    let mut command = Command::new(BIN);
    command.arg("chpst");
    assert_eq!(run(command), debian, "the usage names chpst");
}
