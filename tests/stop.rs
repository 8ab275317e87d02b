//! The stop's own settings against the real binary as PID 1:
//! `--shutdown-delay` (unhealthy at once, the services serving on, a second
//! SIGTERM cutting it short, its place in `baseinit check`'s budget),
//! `--main-stop-signal` and `--remap-exit`.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{BIN, Baseinit, Capability, Mode, Tree, require, wait_for, wait_lines, wait_text, write_file};

const LONG: Duration = Duration::from_secs(30);

/// A case's flags, and its variables.
type Flags = &'static [&'static str];
type Vars = &'static [(&'static str, &'static str)];

/// The wall clock in nanoseconds, as `date +%s%N` prints it in a service.
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// A service that notes each beat of its loop and the moment it got
/// SIGTERM, as wall-clock nanoseconds. `sleep & wait` so that the trap runs
/// at once rather than after the current sleep.
fn timed_service(tree: &Tree, name: &str) {
    tree.service(
        name,
        &format!(
            r#"trap 'date +%s%N > "$OUT/{name}.term"; exit 0' TERM
while :; do date +%s%N >> "$OUT/{name}.beats"; sleep 0.05 & wait $!; done"#
        ),
    );
}

/// A time a service wrote.
fn stamps(tree: &Tree, file: &str) -> Vec<u128> {
    tree.read(file).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Healthy, and web's trap is in place (its first beat comes after it).
fn healthy(tree: &Tree) {
    wait_lines(tree, "web.beats", 1, LONG);
    wait_for("baseinit health to say healthy", LONG, || {
        (tree.baseinit(&["health"]).code == 0).then_some(())
    });
}

#[test]
fn a_shutdown_delay_turns_health_unhealthy_at_once_while_the_services_serve_on() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    timed_service(&tree, "web");
    let delay = Duration::from_secs(1);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&["--shutdown-delay", "1s"]));
    healthy(&tree);
    let sent = now_ns();
    init.signal(nix::libc::SIGTERM);
    let (unhealthy_at, said) = wait_for("baseinit health to say unhealthy", LONG, || {
        let out = tree.baseinit(&["health"]);
        (out.code == 1).then(|| (now_ns(), out.stdout))
    });
    assert_eq!(said, "unhealthy: baseinit is stopping\n");
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("shutdown delay: the services keep running for 1000 ms");
    let term = stamps(&tree, "web.term");
    let [term] = term[..] else {
        panic!("web got no SIGTERM: {term:?}\n{}", run.stderr);
    };
    assert!(unhealthy_at < term, "health said unhealthy before web got its SIGTERM");
    assert!(
        term - sent >= delay.as_nanos(),
        "web got SIGTERM {} ms after the signal, within the 1 s delay",
        (term - sent) / 1_000_000
    );
    assert!(
        term - sent < Duration::from_secs(10).as_nanos(),
        "then the stop as ever, within its budget"
    );
    let served = stamps(&tree, "web.beats")
        .into_iter()
        .filter(|beat| *beat > unhealthy_at && *beat < term)
        .count();
    assert!(served > 0, "web ran on while unhealthy");
}

#[test]
fn a_second_sigterm_ends_the_shutdown_delay() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    timed_service(&tree, "web");
    let delay = Duration::from_secs(60);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&["--shutdown-delay", "60s"]));
    healthy(&tree);
    let sent = now_ns();
    init.signal(nix::libc::SIGTERM);
    // The first signal is taken (two pending SIGTERMs would be one) and
    // the delay has begun.
    wait_for("the delay to begin", LONG, || {
        init.stderr_so_far()
            .contains("shutdown delay: the services keep running")
            .then_some(())
    });
    assert!(stamps(&tree, "web.term").is_empty(), "web serves through the delay");
    init.signal(nix::libc::SIGTERM);
    // Half the delay: past it the watchdog fails the test.
    let run = init.wait(delay / 2);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("received SIGTERM again: ending the shutdown delay");
    let term = stamps(&tree, "web.term");
    assert_eq!(term.len(), 1, "web got its SIGTERM: {term:?}");
    assert!(term[0] - sent < (delay / 2).as_nanos());
}

/// `baseinit check` on `tree`, with `extra` arguments and variables.
fn check(tree: &Tree, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(BIN);
    command.arg("check").args(&tree.args(&[])[..8]).args(extra);
    for variable in [
        "BASEINIT_SHUTDOWN_DELAY",
        "BASEINIT_HOOK_TIMEOUT",
        "KILL_PROCESS_TIMEOUT",
        "BASEINIT_FINISH_TIMEOUT",
        "KILL_ALL_PROCESSES_TIMEOUT",
    ] {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    let out = common::run(command);
    assert_eq!(out.code, 0, "{}", out.text());
    out.stdout
}

#[test]
fn check_counts_the_shutdown_delay_in_the_stop_budget() {
    let tree = Tree::new();
    tree.service("web", "exec sleep 1");
    tree.service_file("web", "finish", "#!/bin/sh\n", 0o755);
    tree.service("db", "exec sleep 1");
    tree.service_file("web", "service.toml", "after = [\"db\"]\n", 0o644);
    let budget = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("baseinit check: stop budget "))
            .unwrap_or_else(|| panic!("no stop budget in:\n{out}"))
            .to_owned()
    };
    // 5 + 2 × (0.5 + 0.25) + 2 levels × (5 + 0.25 + 1 + 0.25) + 1 + 0.25
    let out = check(&tree, &["--shutdown-delay", "5s"], &[]);
    assert!(
        budget(&out).starts_with(
            "20.75 s = 5 s shutdown delay + 1.5 s hooks + 2 levels × 6.5 s (service web) + 1.25 s kill-all"
        ),
        "{out}"
    );
    // The variables, as the init reads them: 2.5 + 2 × (1 + 0.25) + 2 × (2 + 0.25 + 1 + 0.25).
    let env = [
        ("BASEINIT_SHUTDOWN_DELAY", "2.5"),
        ("BASEINIT_HOOK_TIMEOUT", "1"),
        ("KILL_PROCESS_TIMEOUT", "2"),
    ];
    let out = check(&tree, &["--no-kill-all-on-exit"], &env);
    assert!(
        budget(&out).starts_with("12 s = 2.5 s shutdown delay + 2.5 s hooks + 2 levels × 3.5 s (service web) ("),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&check(&tree, &["--format", "json"], &env)).expect("JSON");
    let budget = &json["stop_budget"];
    assert_eq!(budget["total_ms"], 2500 + 2500 + 7000 + 1250, "{budget}");
    assert_eq!(budget["shutdown_delay_ms"], 2500);
    assert_eq!(budget["levels"], 2);
    assert_eq!(budget["slowest"], "service web");
}

/// How a case ends the main command.
#[derive(Clone, Copy, Debug)]
enum End {
    /// It exits on its own.
    Exits,
    /// baseinit gets SIGTERM once it runs.
    Sigterm,
}

#[test]
fn exit_remapping_and_the_main_stop_signal_as_pid_1() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service(
        "web",
        r#"trap 'echo TERM > "$OUT/web.got"; exit 0' TERM; echo up > "$OUT/web.up"; while :; do sleep 0.05 & wait $!; done"#,
    );
    // Each main command starts once web's trap is in place, so that web
    // records the SIGTERM the stop sends it.
    let script = |name: &str, body: &str| {
        let path = tree.path().join(name);
        let body = format!("while [ ! -e \"$OUT/web.up\" ]; do sleep 0.01; done\n{body}");
        write_file(&path, &tree.script(&body), 0o755);
        path.display().to_string()
    };
    let exit_143 = script("exit-143", r#"echo up > "$OUT/main.up"; exit 143"#);
    let exit_3 = script("exit-3", r#"echo up > "$OUT/main.up"; exit 3"#);
    let sleeps = script("sleeps", r#"echo up > "$OUT/main.up"; exec sleep 60"#);
    let traps = script(
        "traps",
        r#"trap 'echo QUIT > "$OUT/main.got"; exit 0' QUIT
trap 'echo TERM > "$OUT/main.got"; exit 0' TERM
echo up > "$OUT/main.up"
while :; do sleep 0.05 & wait $!; done"#,
    );
    // (flags, variables, main command, how it ends, exit code, what it got)
    let table: [(Flags, Vars, &str, End, i32, &str); 8] = [
        (&["--remap-exit", "143=0"], &[], &exit_143, End::Exits, 0, ""),
        (&[], &[], &exit_143, End::Exits, 143, ""),
        (&["--remap-exit", "143=0"], &[], &exit_3, End::Exits, 3, ""),
        (
            &[],
            &[("BASEINIT_REMAP_EXIT", "3=0, 143=0")],
            &exit_3,
            End::Exits,
            0,
            "",
        ),
        (&["--remap-exit", "143=0"], &[], &sleeps, End::Sigterm, 0, ""),
        (&[], &[], &sleeps, End::Sigterm, 143, ""),
        (
            &["--main-stop-signal", "SIGQUIT"],
            &[],
            &traps,
            End::Sigterm,
            0,
            "QUIT\n",
        ),
        (
            &["--remap-exit", "131=7"],
            &[("BASEINIT_MAIN_STOP_SIGNAL", "3")],
            &sleeps,
            End::Sigterm,
            7,
            "",
        ),
    ];
    for (flags, env, main, end, code, got) in table {
        let case = format!("{flags:?} {env:?} {main} {end:?}");
        for file in ["main.up", "main.got", "web.up", "web.got"] {
            let _ = std::fs::remove_file(tree.out(file));
        }
        let mut args = tree.args(flags);
        args.extend(["--".to_owned(), main.to_owned()]);
        let init = Baseinit::start_with(Mode::Pid1, &args, |c| {
            c.env_remove("BASEINIT_REMAP_EXIT")
                .env_remove("BASEINIT_MAIN_STOP_SIGNAL");
            c.envs(env.iter().copied());
        });
        wait_text(&tree, "main.up", "up", LONG);
        if let End::Sigterm = end {
            init.signal(nix::libc::SIGTERM);
        }
        let run = init.wait(LONG);
        assert_eq!(run.code, code, "{case}: stderr:\n{}", run.stderr);
        assert_eq!(tree.read("main.got"), got, "{case}");
        assert_eq!(tree.read("web.got"), "TERM\n", "{case}: services keep SIGTERM");
        if let [_, "143=0"] = flags
            && code == 0
        {
            run.assert_stderr_contains("exiting with code 0, 143 remapped by --remap-exit");
        }
    }
}

#[test]
fn bad_stop_settings_are_usage_errors() {
    let tree = Tree::new();
    // (flags, variables, what the message says)
    let table: [(Flags, Vars, &str); 7] = [
        (
            &["--remap-exit", "143"],
            &[],
            r#""143" is not FROM=TO (write e.g. 143=0)"#,
        ),
        (
            &["--remap-exit", "256=0"],
            &[],
            r#""256" is not an exit code (a number from 0 to 255)"#,
        ),
        (
            &["--remap-exit", "143=0", "--remap-exit", "143=1"],
            &[],
            "exit code 143 is remapped twice (143=0 and 143=1)",
        ),
        (
            &[],
            &[("BASEINIT_REMAP_EXIT", "143=0,143=1")],
            "exit code 143 is remapped twice (143=0 and 143=1); set by the flag or by $BASEINIT_REMAP_EXIT",
        ),
        (&["--main-stop-signal", "SIGFOO"], &[], r#"unknown signal "SIGFOO""#),
        (
            &[],
            &[("BASEINIT_MAIN_STOP_SIGNAL", "99")],
            "unknown signal number 99; set by the flag or by $BASEINIT_MAIN_STOP_SIGNAL",
        ),
        (&[], &[("BASEINIT_SHUTDOWN_DELAY", "soon")], "invalid duration \"soon\""),
    ];
    for (flags, env, message) in table {
        let mut command = Command::new(BIN);
        // Were it accepted, it would end at once: no services, `true`.
        command.args(tree.args(flags)).args(["--skip-runit", "--", "true"]);
        command.envs(env.iter().copied());
        let out = common::run(command);
        assert_eq!(out.code, 2, "{flags:?} {env:?}: {}", out.text());
        assert!(out.stderr.contains(message), "{flags:?} {env:?}: {}", out.stderr);
    }
}
