//! `baseinit status` and `baseinit health` against a running instance as PID 1.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{BIN, Baseinit, Capability, Mode, Tree, require, wait_for, wait_lines};

const LONG: Duration = Duration::from_secs(30);

/// Runs `baseinit ARGS` against the tree's runtime directory: (code, stdout, stderr).
fn baseinit(tree: &Tree, args: &[&str]) -> (i32, String, String) {
    let out = tree.baseinit(args);
    (out.code, out.stdout, out.stderr)
}

#[test]
fn status_and_health_report_a_crash_loop_and_recover_when_it_is_stopped() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    tree.service("crashy", r#"echo x >> "$OUT/crashy"; exit 3"#);
    tree.service_file("crashy", "service.toml", "[backoff]\ninitial = \"300ms\"\n", 0o644);
    tree.service("oneshot", r#"echo done > "$OUT/oneshot""#);
    tree.service_file("oneshot", "service.toml", "restart = \"never\"\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "web", 1, LONG);
    wait_lines(&tree, "oneshot", 1, LONG);
    wait_lines(&tree, "crashy", 3, LONG);

    let (code, table, _) = baseinit(&tree, &["status"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("baseinit "), "{table}");
    assert!(table.contains("(PID 1, running)"), "{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("web").contains(" run "), "{table}");
    assert!(row("oneshot").contains(" down "), "{table}");
    assert!(row("crashy").contains("code 3"), "{table}");

    let (code, json, _) = baseinit(&tree, &["status", "--json"]);
    assert_eq!(code, 0);
    let snap: serde_json::Value = serde_json::from_str(&json).unwrap();
    let web = common::service_in(&snap, "web").unwrap();
    assert_eq!(web["state"], "run");
    assert!(web["pid"].as_i64().unwrap() > 0);
    let crashy = common::service_in(&snap, "crashy").unwrap();
    assert!(crashy["restarts"].as_u64().unwrap() >= 2, "{json}");
    assert_eq!(crashy["last_exit"]["code"], 3);

    // Unhealthy while crashy loops; oneshot, done by its policy, is fine.
    // (crashy does run for a moment between its backoffs: ask until the
    // answer is taken between two runs, as nearly every time.)
    let out = wait_for("health to say unhealthy", LONG, || {
        let (code, out, _) = baseinit(&tree, &["health"]);
        (code == 1).then_some(out)
    });
    assert!(out.starts_with("unhealthy: crashy: "), "{out}");
    assert!(!out.contains("oneshot"), "{out}");
    wait_for("status --check to fail", LONG, || {
        (baseinit(&tree, &["status", "--check"]).0 == 1).then_some(())
    });

    // Stopped on purpose, it is no longer expected up: healthy.
    baseinit(&tree, &["sv", "down", "crashy"]);
    wait_for("health to turn healthy", LONG, || {
        let (code, out, _) = baseinit(&tree, &["health"]);
        (code == 0 && out == "healthy\n").then_some(())
    });

    init.stop(LONG);
    // Nothing answers any more: a clear message, not a hang.
    let (code, _, err) = baseinit(&tree, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("no baseinit answers at"), "{err}");
    let (code, out, _) = baseinit(&tree, &["health"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("unhealthy: no baseinit answers"), "{out}");
}

#[test]
fn status_is_for_root_only() {
    require!(Capability::Namespaces);
    // Root, to switch to nobody.
    require!(Capability::Root);
    let tree = Tree::new();
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "web", 1, LONG);
    common::wait_control_socket(&tree, LONG);
    let socket = tree.path().join("run/control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is root's alone");
    let (code, _, err) = baseinit(&tree, &["setuser", "nobody", BIN, "status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("permission denied") && err.contains("only root"), "{err}");
    init.stop(LONG);
}

/// With no directory to put the socket in (a read-only root without a
/// tmpfs), status and health are answered over an abstract socket, found by
/// `baseinit status` from the same PID namespace; only root and baseinit's
/// own user are answered there.
#[test]
fn with_nothing_writable_status_and_health_answer_over_an_abstract_socket() {
    require!(Capability::Root);
    let tree = Tree::new();
    tree.service("web", r#"echo up > "$OUT/web"; exec sleep 60"#);
    // Nothing can be created under /proc, not even by root.
    let runtime = "/proc/baseinit-no-such-dir/run";
    let mut args = tree.args(&[]);
    let at = args
        .iter()
        .position(|a| a == "--runtime-dir")
        .expect("tree.args names one");
    args[at + 1] = runtime.to_owned();
    let init = Baseinit::start(Mode::Subreaper, &args);
    wait_lines(&tree, "web", 1, LONG);
    let ask = |what: &str, uid: Option<u32>| {
        let mut command = std::process::Command::new(BIN);
        command.args([what, "--runtime-dir", runtime]);
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(uid);
        }
        common::run(command)
    };
    let status = wait_for("status over the abstract socket", LONG, || {
        let out = ask("status", None);
        (out.code == 0).then_some(out)
    });
    assert!(status.stdout.contains("web"), "{}", status.text());
    assert_eq!(ask("health", None).code, 0);
    // Another user is refused, and told why.
    let nobody = ask("status", Some(65534));
    assert_eq!(nobody.code, 1, "{}", nobody.text());
    assert!(nobody.stderr.contains("permission denied"), "{}", nobody.text());
    let finished = init.stop(LONG);
    assert!(
        finished.stderr.contains("answered over an abstract socket"),
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains(" WARN "), "{}", finished.stderr);
}
