//! Failure policy against the real binary as PID 1: essential services,
//! the crash-loop limit and its actions, finish exiting 125, startup timeouts.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, require, wait_for, wait_lines, write_file};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn an_essential_service_that_ends_ends_the_container_with_its_code() {
    require!(Capability::Namespaces);
    for (body, code) in [("exit 4", 4), ("kill -KILL $$", 137)] {
        let tree = Tree::new();
        tree.service(
            "bystander",
            r#"trap 'echo stopped > "$OUT/bystander"; exit 0' TERM; while :; do sleep 0.05; done"#,
        );
        tree.service("core", &format!("sleep 0.3; {body}"));
        tree.service_file("core", "service.toml", "essential = true\nrestart = \"never\"\n", 0o644);
        let run = Baseinit::start(Mode::Pid1, &tree.args(&[])).wait(LONG);
        assert_eq!(run.code, code, "stderr:\n{}", run.stderr);
        run.assert_stderr_contains("service core: an essential service ended");
        assert_eq!(
            tree.read("bystander"),
            "stopped\n",
            "the others were stopped gracefully"
        );
    }
}

#[test]
fn a_crash_loop_past_the_limit_with_on_failure_exit_ends_the_container() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("crashy", r#"echo x >> "$OUT/starts"; exit 3"#);
    tree.service_file(
        "crashy",
        "service.toml",
        "max-restarts = 2\nrestart-window = \"60s\"\non-failure = \"exit\"\n[backoff]\ninitial = \"10ms\"\n",
        0o644,
    );
    let run = Baseinit::start(Mode::Pid1, &tree.args(&[])).wait(LONG);
    assert_eq!(run.code, 3, "the service's own code; stderr:\n{}", run.stderr);
    assert_eq!(tree.read("starts").lines().count(), 3, "the first run and 2 restarts");
    run.assert_stderr_contains("service crashy: failed: 2 restarts within 60 s; shutting down");
}

#[test]
fn on_failure_stop_leaves_it_failed_and_the_rest_running() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    tree.service("crashy", r#"echo x >> "$OUT/starts"; exit 3"#);
    tree.service_file(
        "crashy",
        "service.toml",
        "max-restarts = 2\non-failure = \"stop\"\n[backoff]\ninitial = \"10ms\"\n",
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "web", 1, LONG);
    let snap = tree.wait_status("crashy to be failed", LONG, |snap| {
        let crashy = common::service_in(snap, "crashy")?;
        (crashy["state"] == "failed").then(|| snap.clone())
    });
    let web = common::service_in(&snap, "web").unwrap();
    assert_eq!(web["state"], "run");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tree.read("starts").lines().count(), 3, "no restart once failed");
    init.stop(LONG);
}

#[test]
fn finish_exiting_125_keeps_the_service_down() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("once", r#"echo x >> "$OUT/starts"; exit 1"#);
    tree.service_file(
        "once",
        "finish",
        &tree.script(r#"echo "$1" > "$OUT/finish"; exit 125"#),
        0o755,
    );
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "finish", 1, LONG);
    wait_lines(&tree, "web", 1, LONG);
    std::thread::sleep(Duration::from_millis(400));
    let run = init.stop(LONG);
    assert_eq!(tree.read("starts"), "x\n", "never restarted");
    run.assert_stderr_contains("service once: finish exited 125: not restarting");
}

#[test]
fn a_startup_script_past_its_timeout_fails_the_boot() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.startup_script("10_slow", "exec sleep 30");
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    let run = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("STARTUP_TIMEOUT", "0.5");
    })
    .wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("10_slow: still running after 500 ms: stopping it");
    assert!(!tree.out("web").exists(), "no service started");
}

#[test]
fn a_startup_script_that_exits_0_when_stopped_for_its_timeout_still_fails_the_boot() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.startup_script("10_slow", "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done");
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    let run = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("STARTUP_TIMEOUT", "0.5");
    })
    .wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("10_slow ran past --startup-timeout: boot aborted");
    assert!(!tree.out("web").exists(), "no service started");
}

#[test]
fn a_bug_in_pid_1_ends_in_an_ordered_stop_not_a_silent_death() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    for name in ["a", "b"] {
        tree.service(
            name,
            &format!(
                r#"trap 'echo stopped > "$OUT/{name}.stopped"; exit 0' TERM
echo up > "$OUT/{name}.up"
while :; do sleep 0.05; done"#
            ),
        );
    }
    let run = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("BASEINIT_TEST_PANIC_AFTER_MS", "700");
    })
    .wait(LONG);
    assert_eq!(run.code, 70, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("baseinit failed (a bug)");
    for name in ["a", "b"] {
        assert_eq!(tree.read(&format!("{name}.up")), "up\n");
        assert_eq!(
            tree.read(&format!("{name}.stopped")),
            "stopped\n",
            "{name} got no SIGTERM"
        );
    }
}

/// Spawning does not wait for the exec: a failed exec comes back through the
/// report pipe when the child is reaped, and must look exactly like the
/// synchronous failure it used to be (message, backoff, exit codes).
#[test]
fn exec_failures_found_at_reap_time_are_start_failures() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Not executable: reported with its cause, and retried with backoff.
    common::write_file(&tree.service_dir().join("denied/tool"), "#!/bin/sh\nexit 0\n", 0o644);
    tree.service_file(
        "denied",
        "service.toml",
        "command = [\"./tool\"]\n[backoff]\ninitial = \"50ms\"\nmax = \"100ms\"\n",
        0o644,
    );
    // A bare name found only through the service's own PATH.
    let bin = tree.path().join("bin");
    common::write_file(
        &bin.join("only-in-my-path"),
        &tree.script(r#"echo "$0 $1" > "$OUT/found"; exec sleep 60"#),
        0o755,
    );
    tree.service_file(
        "pathed",
        "service.toml",
        &format!(
            "command = [\"only-in-my-path\", \"arg\"]\n[environment]\nPATH = \"/nowhere:{}:/usr/bin:/bin\"\n",
            bin.display()
        ),
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "found", 1, LONG);
    wait_for("three failed starts", LONG, || {
        (init.stderr_so_far().matches("service denied: cannot start").count() >= 3).then_some(())
    });
    let run = init.stop(LONG);
    assert_eq!(tree.read("found"), format!("{}/only-in-my-path arg\n", bin.display()));
    let tool = tree.service_dir().join("denied/./tool");
    run.assert_stderr_contains(&format!(
        "service denied: cannot start {}: Permission denied (os error 13)",
        tool.display()
    ));
    run.assert_stderr_contains("service denied: restarting in 50 ms (it could not start)");
    assert!(
        !run.stderr.contains("service denied: exited with"),
        "a failed exec is not an exit: {}",
        run.stderr
    );
}

#[test]
fn a_startup_script_that_cannot_exec_aborts_the_boot() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.startup_script("05_first", r#"echo ran > "$OUT/first""#);
    write_file(
        &tree.startup_dir().join("10_broken"),
        "#!/nonexistent/interpreter\n",
        0o755,
    );
    tree.startup_script("20_after", r#"echo ran > "$OUT/after""#);
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    let run = Baseinit::start(Mode::Pid1, &tree.args(&[])).wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let script = tree.startup_dir().join("10_broken");
    run.assert_stderr_contains(&format!(
        "startup script {0}: cannot start {0}: No such file or directory (os error 2)",
        script.display()
    ));
    run.assert_stderr_contains(&format!(
        "startup script {} could not be started: boot aborted",
        script.display()
    ));
    assert_eq!(tree.read("first"), "ran\n");
    assert!(!tree.out("after").exists(), "no later script ran");
    assert!(!tree.out("web").exists(), "no service started");
}

#[test]
fn a_main_command_or_essential_service_that_cannot_exec_sets_the_exit_code() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let denied = tree.path().join("not-executable");
    write_file(&denied, "#!/bin/sh\nexit 0\n", 0o644);
    let denied = denied.display().to_string();
    // The manual's exit-code table: not found 127, found but not executable 126.
    for (command, code, why) in [
        ("no-such-command-in-path", 127, "No such file or directory (os error 2)"),
        (denied.as_str(), 126, "Permission denied (os error 13)"),
    ] {
        let run = Baseinit::start(Mode::Pid1, &tree.args(&["--skip-runit", "--", command])).wait(LONG);
        assert_eq!(run.code, code, "{command}: stderr:\n{}", run.stderr);
        run.assert_stderr_contains(&format!("main command {command}: cannot start {command}: {why}"));
    }
    // An essential service that never starts ends the container the same way.
    tree.service_file(
        "core",
        "service.toml",
        "command = [\"no-such-command-in-path\"]\nessential = true\nrestart = \"never\"\n",
        0o644,
    );
    let run = Baseinit::start(Mode::Pid1, &tree.args(&[])).wait(LONG);
    assert_eq!(run.code, 127, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("service core: an essential service ended");
}
