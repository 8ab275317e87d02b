//! The core behaviour, against the real binary as PID 1 of a PID namespace
//! (and once as a child subreaper): reaping, restarts, `down`, startup
//! scripts, graceful and forced stops, exit codes, clean children, bad trees.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, children_of, require, wait_for, wait_lines};
use nix::libc;

const SIGTERM: i32 = libc::SIGTERM;
const LONG: Duration = Duration::from_secs(30);

/// The "N orphans reaped" figure from baseinit's final log line.
fn orphans_reaped(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" orphans reaped")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no 'orphans reaped' line in:\n{stderr}"))
}

#[test]
fn two_thousand_double_forked_orphans_leave_no_zombie() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Each `(true &)` is a subshell that starts `true` and exits at once: the
    // `true` is orphaned to PID 1. Then, from inside the namespace, count
    // zombies in /proc until none is left (or 10 s pass).
    let probe = tree.script(
        r#"i=0
while [ $i -lt 2000 ]; do (true &); i=$((i+1)); done
start=$(date +%s%N)
t=0
while :; do
  n=$(awk '$3 == "Z"' /proc/[0-9]*/stat 2>/dev/null | wc -l)
  [ "$n" -eq 0 ] && break
  t=$((t+1)); [ $t -ge 1000 ] && break
  sleep 0.01
done
echo "$n $(( ($(date +%s%N) - start) / 1000000 ))" > "$OUT/zombies""#,
    );
    common::write_file(&tree.out("probe"), &probe, 0o755);
    let probe_path = tree.out("probe").display().to_string();
    let run = Baseinit::start(Mode::Pid1, &tree.args(&["--", &probe_path])).wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let zombies = tree.read("zombies");
    let mut fields = zombies.split_whitespace();
    let left: u32 = fields.next().and_then(|n| n.parse().ok()).expect("zombie count");
    let ms = fields.next().unwrap_or("?");
    eprintln!("2000 orphans: {left} zombies left; none left {ms} ms after the last fork");
    assert_eq!(left, 0, "zombies remained in /proc");
    let reaped = orphans_reaped(&run.stderr);
    assert!(
        reaped >= 2000,
        "baseinit reaped {reaped} orphans, expected at least 2000"
    );
}

#[test]
fn crashing_service_restarts_with_backoff_and_finish_gets_runit_arguments() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("crash", r#"echo "start $(date +%s%N)" >> "$OUT/crash.log"; exit 3"#);
    tree.service_file(
        "crash",
        "finish",
        &tree.script(r#"echo "finish $1 $2" >> "$OUT/crash.log""#),
        0o755,
    );
    tree.service_file(
        "crash",
        "service.toml",
        "[backoff]\ninitial = \"300ms\"\nmax = \"1200ms\"\nreset-after = \"60s\"\n",
        0o644,
    );
    tree.service("selfkill", r#"echo start >> "$OUT/kill.log"; kill -KILL $$"#);
    tree.service_file(
        "selfkill",
        "finish",
        &tree.script(r#"echo "finish $1 $2" >> "$OUT/kill.log""#),
        0o755,
    );
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    // 4 starts, each followed by its finish: 8 lines.
    let log = wait_lines(&tree, "crash.log", 8, LONG);
    let killed = wait_lines(&tree, "kill.log", 2, LONG);
    init.mark();
    init.stop(LONG);

    let lines: Vec<&str> = log.lines().take(8).collect();
    for pair in lines.chunks(2) {
        assert!(pair[0].starts_with("start "), "{log}");
        assert_eq!(
            pair[1], "finish 3 0",
            "finish must get exit code 3 and signal 0:\n{log}"
        );
    }
    let starts: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
        .collect();
    let gaps_ms: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
    eprintln!("restart gaps (ms): {gaps_ms:?} (backoff 300, 600, 1200)");
    // Lower bounds only: a busy machine can make a gap longer, never shorter.
    for (gap, min) in gaps_ms.iter().zip([300, 600, 1200]) {
        assert!(
            *gap >= min,
            "gap {gap} ms is shorter than the backoff {min} ms: {gaps_ms:?}"
        );
    }
    assert_eq!(
        killed.lines().nth(1),
        Some("finish -1 9"),
        "a SIGKILLed run gives finish -1 9:\n{killed}"
    );
}

#[test]
fn a_down_file_keeps_a_service_down() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("up", r#"echo up > "$OUT/up.marker"; exec sleep 60"#);
    tree.service("idle", r#"echo ran > "$OUT/idle.marker"; exec sleep 60"#);
    common::write_file(&tree.service_dir().join("idle/down"), "", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "up.marker", 1, LONG);
    // Services start together, and a wrongly started `idle` could be too
    // late to write its marker before the stop: baseinit's own state, from
    // once `up` runs, says whether it started it.
    let idle = tree.wait_status("up to run", LONG, |s| {
        let up = common::service_in(s, "up")?["state"] == "run";
        up.then(|| common::service_in(s, "idle").cloned())?
    });
    assert_eq!(idle["state"], "down", "a service with a down file was started");
    assert_eq!(
        idle["pid"],
        serde_json::Value::Null,
        "a service with a down file was started"
    );
    let run = init.stop(LONG);
    assert!(
        !tree.out("idle.marker").exists(),
        "a service with a down file was started"
    );
    run.assert_stderr_contains("service idle: has a `down` file");
}

#[test]
fn startup_scripts_run_in_order_before_any_service() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.startup_script("20_second", r#"sleep 0.2; echo 20_second >> "$OUT/order""#);
    tree.startup_script("10_first", r#"sleep 0.2; echo 10_first >> "$OUT/order""#);
    common::write_file(&tree.startup_dir().join("README"), "not a script", 0o644);
    common::write_file(
        &tree.path().join("rc.local"),
        &tree.script(r#"echo rc.local >> "$OUT/order""#),
        0o755,
    );
    tree.service("svc", r#"echo svc >> "$OUT/order"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    let order = wait_lines(&tree, "order", 4, LONG);
    let run = init.stop(LONG);
    assert_eq!(order, "10_first\n20_second\nrc.local\nsvc\n");
    run.assert_stderr_contains("README: not executable, skipped");
}

#[test]
fn a_failing_startup_script_aborts_boot_with_exit_1_and_no_service_starts() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.startup_script("10_ok", r#"echo 10_ok >> "$OUT/order""#);
    tree.startup_script("20_fail", r#"echo 20_fail >> "$OUT/order"; exit 7"#);
    tree.startup_script("30_never", r#"echo 30_never >> "$OUT/order""#);
    tree.service("svc", r#"echo svc >> "$OUT/order"; exec sleep 60"#);
    let run = Baseinit::start(Mode::Pid1, &tree.args(&["--", "sleep", "60"])).wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert_eq!(tree.read("order"), "10_ok\n20_fail\n");
    run.assert_stderr_contains("20_fail failed with exit code 7: boot aborted");
    assert!(
        !run.stderr.contains("main command"),
        "the main command must not start:\n{}",
        run.stderr
    );
}

#[test]
fn sigterm_stops_every_service_gracefully_and_promptly() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        tree.service(
            name,
            &format!(
                r#"trap 'echo TERM > "$OUT/{name}.term"; exit 0' TERM
echo up > "$OUT/{name}.up"
while :; do sleep 1 & wait $!; done"#
            ),
        );
    }
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    for name in names {
        wait_lines(&tree, &format!("{name}.up"), 1, LONG);
    }
    init.mark();
    let run = init.stop(LONG);
    eprintln!("graceful stop of 3 services: {:?} from SIGTERM to exit", run.elapsed);
    for name in names {
        assert_eq!(
            tree.read(&format!("{name}.term")),
            "TERM\n",
            "{name} did not get SIGTERM"
        );
    }
    assert!(
        !run.stderr.contains("SIGKILL"),
        "nothing needed SIGKILL:\n{}",
        run.stderr
    );
}

/// A service `stubborn` that ignores SIGTERM, writes `up` once running, and
/// has `stop_timeout` as its stop timeout.
fn stubborn_service(tree: &Tree, stop_timeout: &str) {
    tree.service(
        "stubborn",
        r#"trap '' TERM; echo up > "$OUT/up"; while :; do sleep 0.2; done"#,
    );
    tree.service_file(
        "stubborn",
        "service.toml",
        &format!("stop-timeout = \"{stop_timeout}\"\n"),
        0o644,
    );
}

#[test]
fn a_service_ignoring_sigterm_is_killed_at_its_timeout_and_the_stop_ends_then() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    stubborn_service(&tree, "1s");
    tree.service("polite", r#"echo up > "$OUT/polite"; exec sleep 60"#);
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "up", 1, LONG);
    wait_lines(&tree, "polite", 1, LONG);
    init.mark();
    let run = init.stop(LONG);
    eprintln!(
        "stop with a service ignoring SIGTERM (stop-timeout 1 s): {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed >= Duration::from_secs(1),
        "killed before its timeout: {:?}",
        run.elapsed
    );
    run.assert_stderr_contains("service stubborn: still running 1000 ms after the stop signal: SIGKILL");
    assert!(
        !run.stderr.contains("service polite: still running"),
        "stderr:\n{}",
        run.stderr
    );
}

#[test]
fn main_command_exit_codes_propagate() {
    require!(Capability::Namespaces);
    let table: [(&[&str], i32); 5] = [
        (&["sh", "-c", "exit 0"], 0),
        (&["sh", "-c", "exit 3"], 3),
        (&["sh", "-c", "kill -KILL $$"], 137),
        (&["sh", "-c", "kill -TERM $$"], 143),
        (&["/nonexistent/command"], 127),
    ];
    for (command, code) in table {
        let tree = Tree::new();
        tree.service("bystander", "exec sleep 60");
        let mut args = vec!["--"];
        args.extend_from_slice(command);
        let run = Baseinit::start(Mode::Pid1, &tree.args(&args)).wait(LONG);
        assert_eq!(run.code, code, "{command:?}; stderr:\n{}", run.stderr);
    }
}

#[test]
fn main_command_arguments_are_passed_exactly() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let out = tree.out("args").display().to_string();
    let args = ["a  b", "", "--quiet", "$HOME", "*"];
    let mut cli = vec![
        "--skip-runit",
        "--",
        "sh",
        "-c",
        r#"for a in "$@"; do printf '[%s]\n' "$a"; done > "$0""#,
        &out,
    ];
    cli.extend_from_slice(&args);
    let run = Baseinit::start(Mode::Pid1, &tree.args(&cli)).wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(tree.read("args"), "[a  b]\n[]\n[--quiet]\n[$HOME]\n[*]\n");
}

#[test]
fn children_start_clean_whatever_baseinit_inherited() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // `sleep` opens nothing of its own, so what /proc shows of it is exactly
    // what baseinit gave it (a shell would add fds of its own).
    tree.service_file("probe", "service.toml", "command = [\"sleep\", \"60\"]\n", 0o644);
    let init = Baseinit::start_with(
        Mode::Pid1,
        &tree.args(&["--", "sleep", "61"]),
        common::dirty_inheritance,
    );
    let me = init.pid();
    let cmdline = |pid: i32| fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let (service, main) = wait_for("the service and the main command to run", LONG, || {
        let children = children_of(me);
        let find = |want: &str| children.iter().map(|(p, _)| *p).find(|p| cmdline(*p) == want);
        Some((find("sleep\u{0}60\u{0}")?, find("sleep\u{0}61\u{0}")?))
    });
    // `sleep` opens locale data for a moment as it starts: judge each once
    // it sleeps, in the system call it ends in.
    for pid in [service, main] {
        wait_for(&format!("{pid} to sleep"), LONG, || {
            common::in_nanosleep(pid).then_some(())
        });
    }
    for (who, pid) in [("service", service), ("main command", main)] {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let sig: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("SigBlk:") || l.starts_with("SigIgn:"))
            .collect();
        assert_eq!(
            sig,
            ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"],
            "{who}: signal mask and ignored set must be empty"
        );
        let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort();
        assert_eq!(fds, [0, 1, 2], "{who}: only fds 0-2");
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let pgrp: i32 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pgrp, pid, "{who}: must lead its own process group");
    }
    let cwd = fs::read_link(format!("/proc/{service}/cwd")).expect("cwd link");
    assert_eq!(
        cwd,
        tree.service_dir().join("probe"),
        "run starts in its service directory"
    );
    let stdin = fs::read_link(format!("/proc/{service}/fd/0")).expect("stdin link");
    assert_eq!(
        stdin,
        std::path::Path::new("/dev/null"),
        "a service's stdin is /dev/null"
    );
    init.signal(SIGTERM);
    let run = init.wait(LONG);
    // The main command, `sleep`, dies of the SIGTERM passed on to it: 128+15.
    assert_eq!(run.code, 143, "stderr:\n{}", run.stderr);
}

#[test]
fn sigterm_reaches_baseinit_even_when_it_was_started_with_sigterm_blocked() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("svc", r#"echo up > "$OUT/up"; exec sleep 60"#);
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |command| {
        // SAFETY: in the forked child before exec: only async-signal-safe calls.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::sigaddset(&mut set, libc::SIGCHLD);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
    });
    wait_lines(&tree, "up", 1, LONG);
    init.stop(LONG);
}

#[test]
fn as_a_subreaper_it_reaps_orphans_and_stops_only_its_descendants() {
    // Not PID 1: no namespace needed.
    let tree = Tree::new();
    tree.service(
        "leaker",
        r#"i=0; while [ $i -lt 500 ]; do (true &); i=$((i+1)); done
(setsid sleep 60 &)
echo done > "$OUT/leaked"
exec sleep 60"#,
    );
    let init = Baseinit::start(Mode::Subreaper, &tree.args(&[]));
    wait_lines(&tree, "leaked", 1, LONG);
    let me = init.pid();
    // The escaped `sleep` (own session) was re-parented to baseinit, not to
    // the real init; no zombie stays among baseinit's children.
    let escaped = wait_for("the escaped sleep to be re-parented to baseinit", LONG, || {
        let children = children_of(me);
        let zombies = children.iter().filter(|(_, s)| *s == 'Z').count();
        let sleeps: Vec<i32> = children
            .iter()
            .filter(|(pid, _)| {
                fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with("sleep\0"))
            })
            .map(|(pid, _)| *pid)
            .collect();
        (zombies == 0 && sleeps.len() == 2).then_some(sleeps)
    });
    let run = init.stop(LONG);
    for pid in escaped {
        assert!(
            fs::read_to_string(format!("/proc/{pid}/cmdline")).map_or(true, |c| !c.starts_with("sleep\0")),
            "descendant {pid} survived the shutdown"
        );
    }
    let reaped = orphans_reaped(&run.stderr);
    assert!(reaped >= 500, "reaped {reaped} orphans, expected at least 500");
}

#[test]
fn broken_definitions_keep_only_their_services_down_and_say_why() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("a_good", r#"echo ran > "$OUT/good"; exec sleep 60"#);
    tree.service("b_syntax", "exec sleep 60");
    tree.service_file("b_syntax", "service.toml", "restart = \"always\"\ncommand = [\n", 0o644);
    tree.service("c_unknown", "exec sleep 60");
    tree.service_file("c_unknown", "service.toml", "restart = \"always\"\nbogus = 1\n", 0o644);
    tree.service("d_type", "exec sleep 60");
    tree.service_file("d_type", "service.toml", "stop-timeout = true\n", 0o644);
    tree.service_file("e_norun", "finish", "", 0o755);
    tree.service_file("f_noexec", "run", "#!/bin/sh\n", 0o644);
    tree.service("g_signal", "exec sleep 60");
    tree.service_file("g_signal", "service.toml", "\nstop-signal = \"SIGNOPE\"\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "good", 1, LONG);
    let dir = tree.service_dir().display().to_string();
    let expected = [
        ("b_syntax", format!("{dir}/b_syntax/service.toml:2:12: unclosed array")),
        (
            "c_unknown",
            format!("{dir}/c_unknown/service.toml:2:1: unknown field `bogus`"),
        ),
        ("d_type", format!("{dir}/d_type/service.toml:1:16:")),
        ("e_norun", format!("{dir}/e_norun/run: missing")),
        ("f_noexec", format!("{dir}/f_noexec/run: not executable")),
        ("g_signal", format!("{dir}/g_signal/service.toml:2:15: unknown signal")),
    ];
    // Each broken service is in the status, with its reason; the good one runs.
    let status = tree.wait_status("the status", LONG, |s| Some(s.clone()));
    let services = status["services"].as_array().expect("services");
    let good = services
        .iter()
        .find(|s| s["name"] == "a_good")
        .expect("a_good in status");
    assert_eq!(good["state"], "run", "{status:#}");
    for (name, reason) in &expected {
        let s = services
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("{name} missing from the status: {status:#}"));
        assert_eq!(s["state"], "broken", "{status:#}");
        let why = s["reason"].as_str().unwrap_or_default();
        assert!(why.contains(reason.as_str()), "{name}: {why:?} lacks {reason:?}");
    }
    let health = tree.baseinit(&["health"]);
    assert_eq!(health.code, 1, "{}", health.text());
    assert!(health.stdout.contains("b_syntax: broken ("), "{}", health.text());
    // Fixed, and a rescan (SIGHUP) starts it; the rest are still broken.
    tree.service_file("c_unknown", "service.toml", "restart = \"always\"\n", 0o644);
    tree.service("c_unknown", r#"echo ran > "$OUT/fixed"; exec sleep 60"#);
    init.signal(libc::SIGHUP);
    wait_lines(&tree, "fixed", 1, LONG);
    tree.wait_status("c_unknown to leave the broken list", LONG, |s| {
        s["services"]
            .as_array()?
            .iter()
            .any(|s| s["name"] == "c_unknown" && s["state"] == "run")
            .then_some(())
    });
    let run = init.stop(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    for (_, reason) in &expected {
        run.assert_stderr_contains(reason);
    }
    run.assert_stderr_contains(
        "6 service(s) not started, for problems in their definitions: b_syntax, c_unknown, d_type, e_norun, f_noexec, g_signal; the others start",
    );
}

#[test]
fn an_unreadable_service_directory_fails_the_boot() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // A file where the service directory should be.
    let _ = fs::remove_dir_all(tree.service_dir());
    common::write_file(&tree.service_dir(), "", 0o644);
    let run = Baseinit::start(Mode::Pid1, &tree.args(&[])).wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("nothing started");
}

#[test]
fn hup_usr1_usr2_quit_winch_are_forwarded_to_the_main_command() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let main = tree.script(
        r#"for s in HUP USR1 USR2 QUIT WINCH; do trap "echo $s >> \"\$OUT/got\"" $s; done
echo ready > "$OUT/ready"
while [ "$(wc -l < "$OUT/got" 2>/dev/null || echo 0)" -lt 5 ]; do sleep 0.05; done"#,
    );
    common::write_file(&tree.out("main"), &main, 0o755);
    let main_path = tree.out("main").display().to_string();
    let init = Baseinit::start(Mode::Pid1, &tree.args(&["--", &main_path]));
    wait_lines(&tree, "ready", 1, LONG);
    for signal in [
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGQUIT,
        libc::SIGWINCH,
    ] {
        init.signal(signal);
        // One at a time: the shell runs traps between commands, in any order.
        let n = tree.read("got").lines().count() + 1;
        wait_lines(&tree, "got", n, LONG);
    }
    let run = init.wait(LONG);
    assert_eq!(
        run.code, 0,
        "baseinit must survive every one of them; stderr:\n{}",
        run.stderr
    );
    let mut got: Vec<String> = tree.read("got").lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, ["HUP", "QUIT", "USR1", "USR2", "WINCH"]);
}

#[test]
fn a_second_sigterm_during_the_shutdown_changes_nothing() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service(
        "stubborn",
        r#"trap 'echo TERM >> "$OUT/terms"' TERM; echo up > "$OUT/up"; while :; do sleep 0.1; done"#,
    );
    tree.service_file("stubborn", "service.toml", "stop-timeout = \"1s\"\n", 0o644);
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "up", 1, LONG);
    init.mark();
    init.signal(SIGTERM);
    wait_lines(&tree, "terms", 1, LONG);
    init.signal(SIGTERM);
    init.signal(libc::SIGINT);
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.elapsed >= Duration::from_secs(1),
        "the stop was cut short: {:?}",
        run.elapsed
    );
    assert_eq!(tree.read("terms"), "TERM\n", "the service got a second stop signal");
    run.assert_stderr_contains("received SIGTERM again: already shutting down");
    run.assert_stderr_contains("received SIGINT again: already shutting down");
    run.assert_stderr_contains("service stubborn: still running 1000 ms after the stop signal");
}

#[test]
fn quiet_shows_only_warnings_and_errors() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("crash", "exit 1");
    tree.service_file("crash", "service.toml", "restart = \"never\"\n", 0o644);
    let run = Baseinit::start(Mode::Pid1, &tree.args(&["--quiet", "--", "sleep", "0.3"])).wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains(" INFO "), "stderr:\n{}", run.stderr);
    run.assert_stderr_contains(" WARN service crash: exited with exit code 1");
}

#[test]
fn a_main_command_killed_by_a_real_time_signal_gives_128_plus_it() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let sig = libc::SIGRTMIN() + 3;
    let kill = format!("kill -{sig} $$");
    let run = Baseinit::start(Mode::Pid1, &tree.args(&["--", "sh", "-c", &kill])).wait(LONG);
    assert_eq!(run.code, 128 + sig, "stderr:\n{}", run.stderr);
}

#[test]
fn a_service_that_cannot_start_is_retried_with_backoff_and_harms_nothing() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service_file(
        "ghost",
        "service.toml",
        "command = [\"no-such-binary-anywhere\"]\n[backoff]\ninitial = \"50ms\"\nmax = \"100ms\"\nreset-after = \"1ns\"\n",
        0o644,
    );
    tree.service("fine", r#"echo up > "$OUT/fine"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "fine", 1, LONG);
    wait_for("three failed starts", LONG, || {
        (init.stderr_so_far().matches("service ghost: cannot start").count() >= 3).then_some(())
    });
    let run = init.stop(LONG);
    run.assert_stderr_contains("service ghost: restarting in 50 ms");
}

#[test]
fn absurd_timeouts_are_usage_errors_not_crashes() {
    let tree = Tree::new();
    for value in ["1e19", "-1", "soon", "NaN"] {
        let run = Baseinit::start_with(Mode::Subreaper, &tree.args(&["--", "true"]), |c| {
            c.env("KILL_PROCESS_TIMEOUT", value);
        })
        .wait(LONG);
        assert_eq!(run.code, 2, "KILL_PROCESS_TIMEOUT={value}: stderr:\n{}", run.stderr);
        run.assert_stderr_contains("KILL_PROCESS_TIMEOUT");
    }
}

#[test]
fn as_a_subreaper_stray_signals_neither_kill_nor_stop_it() {
    let tree = Tree::new();
    tree.service("svc", r#"echo up > "$OUT/up"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Subreaper, &tree.args(&[]));
    wait_lines(&tree, "up", 1, LONG);
    // The socket is bound once the first services have started: the
    // service's line can come first.
    common::wait_control_socket(&tree, LONG);
    let stray = [
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGRTMIN(),
        libc::SIGRTMAX(),
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGQUIT,
        libc::SIGWINCH,
    ];
    for signal in stray {
        init.signal(signal);
    }
    // Still running and not stopped ('T'): it answers a status request (it
    // ran, so every signal above was delivered), then SIGTERM with a clean
    // stop.
    let answer = tree.baseinit(&["status"]);
    assert_eq!(answer.code, 0, "baseinit stopped answering: {answer:?}");
    let stat = fs::read_to_string(format!("/proc/{}/stat", init.pid())).expect("baseinit is gone");
    let state = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(state, "T", "baseinit was stopped by a signal");
    init.stop(LONG);
}

#[test]
fn code_pages_are_released_after_boot_and_again_after_a_restart() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Up 1 s, then exits: each restart is a spell of work after a quiet one.
    tree.service("brief", r#"echo start >> "$OUT/brief.log"; sleep 1; exit 1"#);
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("BASEINIT_LOG", "debug");
    });
    let released = |stderr: &str| stderr.lines().filter(|l| l.contains("released ")).count();
    wait_lines(&tree, "brief.log", 1, LONG);
    wait_for("the release after boot", LONG, || {
        (released(&init.stderr_so_far()) >= 1).then_some(())
    });
    wait_lines(&tree, "brief.log", 2, LONG);
    let stderr = wait_for("a release after the restart", LONG, || {
        let stderr = init.stderr_so_far();
        let restart = stderr.find("service brief: started")?;
        let restart = restart + 1 + stderr[restart + 1..].find("service brief: started")?;
        (released(&stderr[restart..]) >= 1).then_some(stderr)
    });
    // The code it gave back comes back when needed: the next restart works.
    wait_lines(&tree, "brief.log", 3, LONG);
    init.stop(LONG);
    assert!(!stderr.contains("cannot release"), "the release failed:\n{stderr}");
}

#[test]
fn waiting_out_a_stop_timeout_right_after_boot_does_not_spin() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    stubborn_service(&tree, "2s");
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "up", 1, LONG);
    // Within the quiet spell baseinit waits for before it lets its boot
    // pages go: a wake-up due then must not stay due through the stop.
    let pid = init.pid();
    let cpu_ms = || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("baseinit's stat");
        // After the command's closing parenthesis: state, ppid, …, utime
        // and stime are the 12th and 13th, in clock ticks (100 per second).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| fields[i].parse::<u64>().expect("a tick count");
        (ticks(11) + ticks(12)) * 10
    };
    let before = cpu_ms();
    init.signal(SIGTERM);
    // A fixed span on purpose: the CPU counter over it is the measure, and
    // no event marks it (a spinning loop shows nothing else); it ends well
    // before the stop timeout, so baseinit is still there to be read.
    std::thread::sleep(Duration::from_millis(1500));
    let spent = cpu_ms() - before;
    eprintln!("CPU while waiting out the stop timeout: {spent} ms");
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    // Waiting costs next to nothing; a loop woken again and again by a
    // deadline in the past burns the whole 1.5 s.
    assert!(spent < 500, "baseinit used {spent} ms of CPU in 1.5 s of waiting");
}
