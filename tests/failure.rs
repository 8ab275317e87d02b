//! Failure policy against the real binary as PID 1: essential services,
//! the crash-loop limit and its actions, finish exiting 125, startup timeouts.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{BIN, Baseinit, Mode, Tree, require_namespaces, wait_for, wait_lines};
use nix::libc;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn an_essential_service_that_ends_ends_the_container_with_its_code() {
    require_namespaces!("an_essential_service_that_ends_ends_the_container_with_its_code");
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
        assert!(
            run.stderr.contains("service core: an essential service ended"),
            "{}",
            run.stderr
        );
        assert_eq!(
            tree.read("bystander"),
            "stopped\n",
            "the others were stopped gracefully"
        );
    }
}

#[test]
fn a_crash_loop_past_the_limit_with_on_failure_exit_ends_the_container() {
    require_namespaces!("a_crash_loop_past_the_limit_with_on_failure_exit_ends_the_container");
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
    assert!(
        run.stderr
            .contains("service crashy: failed: 2 restarts within 60 s; shutting down"),
        "{}",
        run.stderr
    );
}

#[test]
fn on_failure_stop_leaves_it_failed_and_the_rest_running() {
    require_namespaces!("on_failure_stop_leaves_it_failed_and_the_rest_running");
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
    let runtime = tree.path().join("run");
    let status = || {
        let out = std::process::Command::new(BIN)
            .args(["status", "--json", "--runtime-dir"])
            .arg(&runtime)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let snap = wait_for("crashy to be failed", LONG, || {
        let snap = status();
        let crashy = common::service_in(&snap, "crashy")?.clone();
        (crashy["state"] == "failed").then_some(snap)
    });
    let web = common::service_in(&snap, "web").unwrap();
    assert_eq!(web["state"], "run");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tree.read("starts").lines().count(), 3, "no restart once failed");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait(LONG).code, 0);
}

#[test]
fn finish_exiting_125_keeps_the_service_down() {
    require_namespaces!("finish_exiting_125_keeps_the_service_down");
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
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(tree.read("starts"), "x\n", "never restarted");
    assert!(
        run.stderr.contains("service once: finish exited 125: not restarting"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_startup_script_past_its_timeout_fails_the_boot() {
    require_namespaces!("a_startup_script_past_its_timeout_fails_the_boot");
    let tree = Tree::new();
    tree.startup_script("10_slow", "exec sleep 30");
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    let run = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("STARTUP_TIMEOUT", "0.5");
    })
    .wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("10_slow: still running after 500 ms: stopping it"),
        "{}",
        run.stderr
    );
    assert!(!tree.out("web").exists(), "no service started");
}

#[test]
fn a_bug_in_pid_1_ends_in_an_ordered_stop_not_a_silent_death() {
    require_namespaces!("a_bug_in_pid_1_ends_in_an_ordered_stop_not_a_silent_death");
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
    assert!(run.stderr.contains("baseinit failed (a bug)"), "{}", run.stderr);
    for name in ["a", "b"] {
        assert_eq!(tree.read(&format!("{name}.up")), "up\n");
        assert_eq!(
            tree.read(&format!("{name}.stopped")),
            "stopped\n",
            "{name} got no SIGTERM"
        );
    }
}
