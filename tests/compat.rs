//! Drop-in compatibility with my_init and runit, against the real binary as
//! PID 1: stock runit `sv` driving baseinit, `log/` loggers, shutdown hooks,
//! argv[0] `my_init`, `--enable-insecure-key`, runtime changes to the
//! service directory.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Sv, Tree, require, wait_for, wait_lines, wait_text};
use nix::libc;

const LONG: Duration = Duration::from_secs(30);

/// The pid in a `run: NAME: (pid N) …` line.
fn pid_of(status: &str) -> u32 {
    let (_, rest) = status.split_once("(pid ").expect("a pid in the status");
    rest.split(')').next().unwrap().parse().unwrap()
}

#[test]
fn stock_runit_sv_controls_every_service() {
    require!(Capability::Namespaces);
    require!(Capability::Runit);
    sv_controls_every_service(Tree::new(), Sv::Stock);
}

#[test]
fn baseinits_own_sv_controls_every_service_without_runit() {
    require!(Capability::Namespaces);
    sv_controls_every_service(Tree::new(), Sv::Link);
}

/// The seconds in a `run: NAME: (pid N) Ss` line.
fn seconds_of(status: &str) -> u64 {
    let (_, rest) = status.split_once(") ").expect("seconds in the status");
    rest.split('s').next().unwrap().parse().unwrap()
}

fn sv_controls_every_service(tree: Tree, which: Sv) {
    let sv = |tree: &Tree, args: &[&str]| {
        let out = tree.sv(which, args);
        (out.code, out.text())
    };
    let wait_status = |tree: &Tree, name: &str, prefix: &str| tree.wait_sv_status(which, name, prefix, LONG);
    tree.service(
        "web",
        r#"trap 'echo HUP >> "$OUT/web.hup"' HUP
echo $$ >> "$OUT/web.pids"
while :; do sleep 0.1; done"#,
    );
    tree.service_file("web", "check", &tree.script(r#"test -e "$OUT/web.pids""#), 0o755);
    tree.service("oneshot", r#"echo ran >> "$OUT/oneshot"; sleep 0.2"#);
    common::write_file(&tree.service_dir().join("oneshot/down"), "", 0o644);
    tree.service("stubborn", r#"trap '' TERM; while :; do sleep 0.1; done"#);
    tree.service_file("stubborn", "service.toml", "stop-timeout = \"20s\"\n", 0o644);
    tree.service("never-ready", "exec sleep 60");
    tree.service_file("never-ready", "check", "#!/bin/sh\nexit 1\n", 0o755);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "web.pids", 1, LONG);

    // status, with runit's format and exit code.
    let status = wait_status(&tree, "web", "run: web: (pid ");
    let (code, down) = sv(&tree, &["status", "oneshot"]);
    assert_eq!(code, 0);
    assert!(down.starts_with("down: oneshot: "), "{down}");

    // down / up.
    sv(&tree, &["down", "web"]);
    wait_status(&tree, "web", "down: web: ");
    sv(&tree, &["up", "web"]);
    let up = wait_status(&tree, "web", "run: web: (pid ");
    assert_ne!(pid_of(&up), pid_of(&status), "up starts a new run");

    // once: runs one time, then stays down.
    sv(&tree, &["once", "oneshot"]);
    wait_lines(&tree, "oneshot", 1, LONG);
    wait_status(&tree, "oneshot", "down: oneshot: ");
    // baseinit decided on the run's end: down, no restart counted.
    let oneshot = tree.wait_status("oneshot's run to end", LONG, |s| {
        let oneshot = common::service_in(s, "oneshot")?;
        (!oneshot["last_exit"].is_null()).then(|| oneshot.clone())
    });
    assert_eq!(oneshot["state"], "down", "once must not restart it");
    assert_eq!(oneshot["restarts"], 0, "once must not restart it");
    assert_eq!(tree.read("oneshot"), "ran\n", "once must not restart it");

    // restart with -w: a new pid, reported ok. sv compares start times in
    // whole seconds (as with runsv), so let the current run age past one.
    let before = pid_of(&wait_status(&tree, "web", "run: web: (pid "));
    wait_for("web's run to be a second old", LONG, || {
        let (_, text) = sv(&tree, &["status", "web"]);
        let run = text.starts_with("run: web: (pid ") && pid_of(&text) == before;
        (run && seconds_of(&text) >= 1).then_some(())
    });
    let (code, text) = sv(&tree, &["-w", "5", "restart", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("ok: run: web: (pid "), "{text}");
    assert_ne!(pid_of(&text), before);

    // term and kill: the service dies and comes back at once.
    for command in ["term", "kill"] {
        let before = pid_of(&wait_status(&tree, "web", "run: web: (pid "));
        sv(&tree, &[command, "web"]);
        wait_for(&format!("web to restart after sv {command}"), LONG, || {
            let (_, text) = sv(&tree, &["status", "web"]);
            (text.starts_with("run: web: (pid ") && pid_of(&text) != before).then_some(())
        });
    }

    // hup reaches the service.
    sv(&tree, &["hup", "web"]);
    wait_lines(&tree, "web.hup", 1, LONG);

    // pause and cont.
    let stat = |want: &str| {
        let path = tree.service_dir().join("web/supervise/stat");
        wait_for(&format!("stat to say {want:?}"), LONG, || {
            (fs::read_to_string(&path).ok()? == want).then_some(())
        })
    };
    sv(&tree, &["pause", "web"]);
    stat("run, paused\n");
    wait_for("sv status to say paused", LONG, || {
        sv(&tree, &["status", "web"]).1.contains(", paused").then_some(())
    });
    sv(&tree, &["cont", "web"]);
    stat("run\n");

    // stop and start with -w.
    let (code, text) = sv(&tree, &["-w", "5", "stop", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("ok: down: web: "), "{text}");
    let (code, text) = sv(&tree, &["-w", "5", "start", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("ok: run: web: (pid "), "{text}");

    // check: ok when ./check passes, timeout when it never does.
    let (code, text) = sv(&tree, &["-w", "5", "check", "web"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = sv(&tree, &["-w", "1", "check", "never-ready"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("timeout: run: never-ready: "), "{text}");

    // stop with -w on a service that ignores TERM: timeout, exit 1.
    let (code, text) = sv(&tree, &["-w", "1", "stop", "stubborn"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("timeout: run: stubborn: "), "{text}");
    assert!(text.contains("want down, got TERM"), "{text}");
    // force-stop: TERM, then KILL at the -w timeout.
    let (_, text) = sv(&tree, &["-w", "1", "force-stop", "stubborn"]);
    assert!(
        text.starts_with("kill: ") || text.starts_with("ok: down: stubborn"),
        "{text}"
    );
    wait_status(&tree, "stubborn", "down: stubborn: ");

    // exit: baseinit treats it as down.
    sv(&tree, &["exit", "web"]);
    wait_status(&tree, "web", "down: web: ");

    init.stop(LONG);
    // With baseinit gone, sv says so instead of hanging.
    let (code, text) = sv(&tree, &["status", "web"]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("not running") || text.contains("supervise/ok"), "{text}");
}

#[test]
fn the_log_pipe_keeps_every_line_across_restarts_of_either_side() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // The service writes 1..50000, crashes, is restarted, writes the rest.
    tree.service(
        "writer",
        r#"if [ -e "$OUT/half" ]; then seq 50001 100000; echo done > "$OUT/written"; exec sleep 60; fi
seq 1 50000; touch "$OUT/half"; exit 1"#,
    );
    tree.service_file("writer", "service.toml", "[backoff]\ninitial = \"10ms\"\n", 0o644);
    // The logger quits by itself after 30000 lines and is restarted; `read`
    // takes one byte at a time from a pipe, so it never swallows more.
    tree.service_file(
        "writer",
        "log/run",
        &tree.script(
            r#"n=0
while [ $n -lt 30000 ] && IFS= read -r line; do echo "$line"; n=$((n+1)); done >> "$OUT/logged"
[ $n -lt 30000 ] && echo eof > "$OUT/eof"
exit 0"#,
        ),
        0o755,
    );
    tree.service_file("writer", "log/service.toml", "[backoff]\ninitial = \"10ms\"\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "written", 1, LONG);
    // Stop at once: lines still in the pipe must reach the logger anyway.
    let run = init.stop(LONG);
    assert_eq!(
        tree.read("eof"),
        "eof\n",
        "the logger read to EOF after its service stopped; stderr:\n{}",
        run.stderr
    );
    let logged = tree.read("logged");
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 100_000, "every line exactly once");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, (i + 1).to_string(), "line {} out of order", i + 1);
    }
    let restarts = run.stderr.matches("service writer/log: started").count();
    assert!(restarts >= 4, "the logger restarted mid-way ({restarts} starts)");
    assert!(
        run.stderr.matches("service writer: started").count() >= 2,
        "the service restarted mid-way"
    );
}

#[test]
fn shutdown_hooks_run_in_order_around_the_stop_and_failures_do_not_stop_it() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let pre = tree.path().join("pre_shutdown.d");
    let post = tree.path().join("post_shutdown.d");
    let hook = |dir: &std::path::Path, name: &str, body: &str| {
        common::write_file(&dir.join(name), &tree.script(body), 0o755);
    };
    hook(&pre, "10_first", r#"echo pre-10 >> "$OUT/order""#);
    hook(&pre, "20_fails", r#"echo pre-20 >> "$OUT/order"; exit 3"#);
    hook(&pre, "30_third", r#"echo pre-30 >> "$OUT/order""#);
    hook(&post, "10_hangs", r#"echo post-10 >> "$OUT/order"; exec sleep 60"#);
    hook(&post, "20_skipped", r#"echo post-20 >> "$OUT/order""#);
    tree.service(
        "svc",
        r#"trap 'echo service-stopped >> "$OUT/order"; exit 0' TERM
echo up > "$OUT/up"
while :; do sleep 0.1; done"#,
    );
    let args = tree.args(&["--hook-timeout", "0.5"]);
    let mut init = Baseinit::start(Mode::Pid1, &args);
    wait_lines(&tree, "up", 1, LONG);
    init.mark();
    let run = init.stop(LONG);
    eprintln!(
        "stop with a hanging post-shutdown hook (budget 0.5 s): {:?}",
        run.elapsed
    );
    assert_eq!(tree.read("order"), "pre-10\npre-20\npre-30\nservice-stopped\npost-10\n");
    run.assert_stderr_contains("20_fails failed with exit code 3; the shutdown goes on");
    run.assert_stderr_contains("10_hangs: still running at the end of the hook budget");
    run.assert_stderr_contains("shutdown hooks ran out of time: skipping 1 more");
}

#[test]
fn named_my_init_it_is_the_init() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let link = tree.path().join("my_init");
    std::os::unix::fs::symlink(common::BIN, &link).unwrap();
    let args = tree.args(&["--skip-runit", "--", "sh", "-c", "exit 5"]);
    let run = Baseinit::start_named(Mode::Pid1, &link, &args, |_| {}).wait(LONG);
    assert_eq!(run.code, 5, "stderr:\n{}", run.stderr);
}

#[test]
fn enable_insecure_key_runs_the_script_first_or_fails_clearly() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let script = tree.path().join("enable_insecure_key");
    common::write_file(&script, &tree.script(r#"echo key >> "$OUT/order""#), 0o755);
    tree.startup_script("10_boot", r#"echo startup >> "$OUT/order""#);
    let key = script.to_str().unwrap();
    let args = tree.args(&[
        "--enable-insecure-key",
        "--insecure-key-script",
        key,
        "--skip-runit",
        "--",
        "true",
    ]);
    let run = Baseinit::start(Mode::Pid1, &args).wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(tree.read("order"), "key\nstartup\n");

    let missing = tree.path().join("nope").display().to_string();
    let args = tree.args(&[
        "--enable-insecure-key",
        "--insecure-key-script",
        &missing,
        "--skip-runit",
        "--",
        "true",
    ]);
    let run = Baseinit::start(Mode::Pid1, &args).wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("--enable-insecure-key");
}

#[test]
fn services_added_changed_and_removed_at_runtime_are_applied() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let stays = r#"echo "$(basename "$PWD") $$" >> "$OUT/starts"
trap 'echo "$(basename "$PWD")" >> "$OUT/stops"; exit 0' TERM
while :; do sleep 0.1; done"#;
    tree.service("a", stays);
    tree.service("keep", stays);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "starts", 2, LONG);

    // Added: built elsewhere, then moved in (as `ln -s /etc/sv/b /etc/service/`).
    let staging = tree.path().join("staging/b");
    common::write_file(&staging.join("run"), &tree.script(stays), 0o755);
    fs::rename(&staging, tree.service_dir().join("b")).unwrap();
    wait_text(&tree, "starts", "b ", LONG);

    // Removed: stopped.
    fs::rename(tree.service_dir().join("a"), tree.path().join("a-removed")).unwrap();
    wait_text(&tree, "stops", "a\n", LONG);

    // Changed: only that service restarts, with the new definition.
    let changed = tree.script(&format!("echo changed > \"$OUT/changed\"\n{stays}"));
    let new_run = tree.service_dir().join("b/run.new");
    common::write_file(&new_run, &changed, 0o755);
    fs::rename(&new_run, tree.service_dir().join("b/run")).unwrap();
    wait_lines(&tree, "changed", 1, LONG);

    // SIGHUP rescans too (and a broken definition leaves the service alone).
    tree.service_file("keep", "service.toml", "bogus = 1\n", 0o644);
    init.signal(libc::SIGHUP);
    wait_for("the rescan to report the broken definition", LONG, || {
        init.stderr_so_far()
            .contains("received SIGHUP: rescanning")
            .then_some(())
    });
    wait_for("the broken definition to be reported", LONG, || {
        init.stderr_so_far()
            .contains("keep/service.toml:1:1: unknown field `bogus`")
            .then_some(())
    });
    init.stop(LONG);
    let starts = tree.read("starts");
    assert_eq!(
        starts.matches("keep ").count(),
        1,
        "keep was never restarted:\n{starts}"
    );
    assert_eq!(
        starts.matches("b ").count(),
        2,
        "b restarted once, for its change:\n{starts}"
    );
    assert!(
        tree.read("stops").contains("keep\n"),
        "keep kept running until the shutdown"
    );
}

#[test]
fn every_watched_directory_is_pinned_for_as_long_as_it_is_watched() {
    require!(Capability::Namespaces);
    // A pin (src/watch.rs) is a watched directory held open with a dnotify
    // request, so the stop's close of the inotify fd is quick. baseinit holds
    // no other directory open, so the open directories are the pins.
    let tree = Tree::new();
    tree.service("a", r#"echo a >> "$OUT/starts"; exec sleep 60"#);
    tree.service_file("a", "log/run", &tree.script("exec cat > /dev/null"), 0o755);
    tree.service("b", r#"echo b >> "$OUT/starts"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    let pid = init.pid();
    wait_lines(&tree, "starts", 2, LONG);
    let watched = |n: usize| {
        let what = format!("{n} watches, each pinned");
        wait_for(&what, LONG, || {
            let (watches, dirs) = (common::inotify_watches(pid), common::open_directories(pid));
            (watches == n && dirs == n).then_some(())
        });
    };
    // The tree's root (the service directory's parent), the service
    // directory, a, a/log and b.
    watched(5);
    let staging = tree.path().join("staging/c");
    common::write_file(&staging.join("run"), &tree.script("exec sleep 60"), 0o755);
    fs::rename(&staging, tree.service_dir().join("c")).unwrap();
    watched(6);
    fs::rename(tree.service_dir().join("b"), tree.path().join("b-removed")).unwrap();
    watched(5);
    init.stop(LONG);
}

#[test]
fn a_service_added_while_the_first_ones_start_is_not_missed() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // `a` moves `b` in as it starts, while baseinit is still starting the
    // 100 services after it (in name order), so before its directory watch
    // exists. `b` must start all the same, with no SIGHUP.
    for i in 0..100 {
        tree.service(&format!("z-{i:03}"), "exec sleep 60");
    }
    let staging = tree.path().join("staging/b");
    common::write_file(
        &staging.join("run"),
        &tree.script(r#"echo b >> "$OUT/starts"; exec sleep 60"#),
        0o755,
    );
    tree.service(
        "a",
        &format!(
            "mv '{}' '{}'\necho a >> \"$OUT/starts\"\nexec sleep 60",
            staging.display(),
            tree.service_dir().join("b").display()
        ),
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "starts", "b\n", LONG);
    let run = init.stop(LONG);
    run.assert_stderr_contains("service b: new, starting");
}

#[test]
fn the_container_environment_is_imported_exported_and_reimported_like_my_init() {
    require!(Capability::Namespaces);
    use std::os::unix::ffi::OsStrExt;
    let tree = Tree::new();
    let env_dir = tree.env_dir();
    common::write_file(&env_dir.join("FROM_FILE"), "file value\n", 0o600);
    common::write_file(&env_dir.join("OVERRIDDEN"), "from the file\n", 0o600);
    common::write_file(&env_dir.join("DELETED_BY_SCRIPT"), "soon gone", 0o600);
    // A script adds and deletes variables for everything started after it.
    tree.startup_script(
        "10_edit",
        &format!(
            "printf 'added by a script' > '{dir}/ADDED'\nrm '{dir}/DELETED_BY_SCRIPT'",
            dir = env_dir.display()
        ),
    );
    tree.startup_script("20_record", r#"env -0 > "$OUT/startup.env""#);
    tree.service("svc", r#"env -0 > "$OUT/service.env"; exec sleep 60"#);
    let weird: &[u8] = b"it's \"quoted\"\n$HOME \\ back\\slash \xff\xfe end";
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("OVERRIDDEN", "from docker run -e")
            .env("WEIRD", std::ffi::OsStr::from_bytes(weird))
            .env("1NOT_A_SHELL_NAME", "x")
            .env("HOME", "/home/somebody");
    });
    wait_for("the service to record its environment", LONG, || {
        fs::metadata(tree.out("service.env"))
            .ok()
            .filter(|m| m.len() > 0)
            .map(|_| ())
    });
    let run = init.stop(LONG);

    for who in ["startup.env", "service.env"] {
        let env = common::parse_env0(&fs::read(tree.out(who)).unwrap());
        let get = |name: &str| env.get(name.as_bytes()).map(|v| v.as_slice());
        assert_eq!(
            get("FROM_FILE"),
            Some(&b"file value"[..]),
            "{who}: imported, one newline stripped"
        );
        assert_eq!(
            get("OVERRIDDEN"),
            Some(&b"from docker run -e"[..]),
            "{who}: docker run -e wins"
        );
        assert_eq!(get("WEIRD"), Some(weird), "{who}");
        assert_eq!(
            get("HOME"),
            Some(&b"/home/somebody"[..]),
            "{who}: HOME is kept (my_init loses it)"
        );
        if who == "service.env" {
            assert_eq!(
                get("ADDED"),
                Some(&b"added by a script"[..]),
                "re-import after a startup script"
            );
            assert_eq!(get("DELETED_BY_SCRIPT"), None, "a script can delete a variable");
        }
    }

    // The files: one per variable, raw, none for the skip-list.
    assert_eq!(fs::read(env_dir.join("OVERRIDDEN")).unwrap(), b"from docker run -e");
    assert_eq!(fs::read(env_dir.join("WEIRD")).unwrap(), weird);
    assert_eq!(fs::read(env_dir.join("1NOT_A_SHELL_NAME")).unwrap(), b"x");
    assert!(!env_dir.join("HOME").exists(), "HOME is never written as a file");
    // The .sh gives back exactly the values through a real shell.
    let sh = tree.path().join("container_environment.sh");
    let sourced = common::sourced_env(&sh);
    assert_eq!(sourced.get(&b"WEIRD"[..]).map(|v| v.as_slice()), Some(weird));
    assert_eq!(
        sourced.get(&b"ADDED"[..]).map(|v| v.as_slice()),
        Some(&b"added by a script"[..])
    );
    assert!(!sourced.contains_key(&b"DELETED_BY_SCRIPT"[..]));
    assert!(
        !fs::read_to_string(&sh)
            .unwrap_or_default()
            .contains("1NOT_A_SHELL_NAME")
    );
    // The .json is one object.
    let json = fs::read_to_string(tree.path().join("container_environment.json")).unwrap();
    assert!(
        json.starts_with('{') && json.contains("\"ADDED\":\"added by a script\""),
        "{json}"
    );
    // Each odd name is reported once.
    assert_eq!(run.stderr.matches("1NOT_A_SHELL_NAME").count(), 1, "{}", run.stderr);
    // Permissions as the base image expects.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sh), 0o640);
    assert_eq!(mode(&tree.path().join("container_environment.json")), 0o640);
}

#[test]
fn without_startup_scripts_the_first_service_already_finds_the_whole_export() {
    // The export is written on another thread while baseinit reads the
    // service definitions; no service may run before it is complete.
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let env_dir = tree.env_dir();
    let (sh, json) = (
        tree.path().join("container_environment.sh"),
        tree.path().join("container_environment.json"),
    );
    for name in ["a", "b", "c"] {
        tree.service(
            name,
            &format!(
                r#"cat '{sh}' '{json}' '{dir}/FIRST' '{dir}/LAST' > "$OUT/{name}.seen" 2>&1; exec sleep 60"#,
                sh = sh.display(),
                json = json.display(),
                dir = env_dir.display()
            ),
        );
    }
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("FIRST", "one").env("LAST", "two");
    });
    for name in ["a", "b", "c"] {
        wait_for("the service to read the export", LONG, || {
            fs::read_to_string(tree.out(&format!("{name}.seen")))
                .ok()
                .filter(|seen| !seen.is_empty())
        });
    }
    init.stop(LONG);
    for name in ["a", "b", "c"] {
        let seen = fs::read_to_string(tree.out(&format!("{name}.seen"))).unwrap();
        assert!(
            seen.contains("export FIRST=one") && seen.contains("export LAST=two"),
            "{name}: the whole .sh: {seen}"
        );
        assert!(
            seen.contains("\"FIRST\":\"one\"") && seen.contains("\"LAST\":\"two\""),
            "{name}: the whole .json: {seen}"
        );
        assert!(seen.ends_with("onetwo"), "{name}: both variable files: {seen}");
    }
}

#[test]
fn control_scripts_override_sv_commands_when_they_exit_zero() {
    require!(Capability::Namespaces);
    require!(Capability::Runit);
    let tree = Tree::new();
    tree.service(
        "web",
        r#"trap 'echo HUP >> "$OUT/signals"' HUP
trap 'echo TERM >> "$OUT/signals"' TERM
echo up >> "$OUT/up"
while :; do sleep 0.1; done"#,
    );
    // t: handled by the script (exit 0), so no SIGTERM; h: the script fails,
    // so the default SIGHUP still goes out.
    tree.service_file(
        "web",
        "control/t",
        &tree.script(r#"echo control-t >> "$OUT/control""#),
        0o755,
    );
    tree.service_file(
        "web",
        "control/h",
        &tree.script(r#"echo control-h >> "$OUT/control"; exit 1"#),
        0o755,
    );
    // A short stop timeout: at the shutdown control/t handles the stop too
    // (as runsv runs it), so the service, which ignores SIGCONT, is killed.
    let init = Baseinit::start(Mode::Pid1, &tree.args(&["--stop-timeout", "0.5"]));
    wait_lines(&tree, "up", 1, LONG);
    // A service can be up before its runit state is on disk (written once
    // per wake-up, and spawning does not wait for the exec); sv without a
    // `supervise/status` does nothing.
    tree.wait_sv_status(Sv::Stock, "web", "run: web: ", LONG);
    tree.sv(Sv::Stock, &["term", "web"]);
    wait_lines(&tree, "control", 1, LONG);
    tree.sv(Sv::Stock, &["hup", "web"]);
    wait_lines(&tree, "signals", 1, LONG);
    init.stop(LONG);
    assert_eq!(
        tree.read("control"),
        "control-t
control-h
control-t
"
    );
    // The first signal the service saw was the HUP: control/t swallowed sv term.
    assert_eq!(tree.read("signals").lines().next(), Some("HUP"));
    assert_eq!(tree.read("up"), "up\n", "never restarted");
}

/// A service that records what happens to it, with `control/t` (exiting
/// `t_code`) and `control/d` recording when they run, in `tree`.
fn service_with_stop_scripts(tree: &Tree, t_code: i32) {
    tree.service(
        "svc",
        r#"trap 'echo TERM >> "$OUT/events"; exit 0' TERM
echo up >> "$OUT/events"
while :; do sleep 0.05; done"#,
    );
    let t = format!("echo t >> \"$OUT/events\"; exit {t_code}");
    tree.service_file("svc", "control/t", &tree.script(&t), 0o755);
    let d = r#"echo d >> "$OUT/events""#;
    tree.service_file("svc", "control/d", &tree.script(d), 0o755);
}

/// What `sv down` did: the events (the order of those after control/t,
/// which race each other under runsv too, aside) and `sv status` after
/// them (pid and seconds aside).
fn after_sv_down(tree: &Tree, t_code: i32) -> (Vec<String>, String) {
    tree.wait_sv_status(Sv::Stock, "svc", "run: svc: ", LONG);
    tree.sv(Sv::Stock, &["down", "svc"]);
    let (events, settled) = if t_code == 0 {
        (3, "run: svc: ")
    } else {
        (4, "down: svc: ")
    };
    let text = wait_lines(tree, "events", events, LONG);
    let status = tree.wait_sv_status(Sv::Stock, "svc", settled, LONG);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2..].sort();
    let status: String = status
        .split(|c: char| c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("N");
    (lines, status)
}

#[test]
fn sv_down_runs_control_t_then_control_d_as_runsv_does() {
    require!(Capability::Namespaces);
    require!(Capability::Runit);
    for t_code in [0, 1] {
        // Debian's runsv, a child of this test, stopped by its pid.
        let tree = Tree::new();
        service_with_stop_scripts(&tree, t_code);
        let mut runsv = std::process::Command::new("runsv")
            .arg(tree.service_dir().join("svc"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn runsv");
        let theirs = after_sv_down(&tree, t_code);
        if let Ok(pid) = tree.read("service/svc/supervise/pid").trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(runsv.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = runsv.wait();

        let tree = Tree::new();
        service_with_stop_scripts(&tree, t_code);
        let init = Baseinit::start(Mode::Pid1, &tree.args(&["--stop-timeout", "0.5"]));
        let ours = after_sv_down(&tree, t_code);
        init.stop(LONG);
        assert_eq!(ours, theirs, "control/t exiting {t_code}: baseinit, then runsv");
        let expected: &[&str] = if t_code == 0 {
            &["up", "t", "d"]
        } else {
            &["up", "t", "TERM", "d"]
        };
        assert_eq!(ours.0, expected, "control/t exiting {t_code}");
    }
}

#[test]
fn my_init_flags_skip_startup_files_and_no_kill_all_on_exit() {
    require!(Capability::Namespaces);
    // An escaped process (own session, so no service stop reaches it) that
    // records a SIGTERM: the kill-all sends one; without it, the kernel's
    // SIGKILL at PID 1's exit gives it no chance.
    for (flags, expect_term) in [(&[][..], true), (&["--no-kill-all-on-exit"][..], false)] {
        let tree = Tree::new();
        tree.startup_script("10_never", r#"echo ran > "$OUT/startup.ran""#);
        let escapee = tree.script(
            r#"trap 'echo TERM > "$OUT/escapee"; exit 0' TERM; echo up > "$OUT/up"; while :; do sleep 0.05; done"#,
        );
        common::write_file(&tree.out("escapee.sh"), &escapee, 0o755);
        tree.service(
            "spawner",
            &format!("setsid {} &\nexec sleep 60", tree.out("escapee.sh").display()),
        );
        let mut args = vec!["--skip-startup-files"];
        args.extend_from_slice(flags);
        let init = Baseinit::start(Mode::Pid1, &tree.args(&args));
        wait_lines(&tree, "up", 1, LONG);
        let run = init.stop(LONG);
        assert!(
            !tree.out("startup.ran").exists(),
            "--skip-startup-files ran a startup script"
        );
        // The escapee is gone (PID 1's exit ends every process of its
        // namespace before it is reaped): what it wrote is all it wrote.
        let script = tree.out("escapee.sh").display().to_string();
        wait_for("the escapee to be gone", LONG, || {
            processes_running(&script).is_empty().then_some(())
        });
        assert_eq!(
            tree.out("escapee").exists(),
            expect_term,
            "{flags:?}; stderr:\n{}",
            run.stderr
        );
    }
}

/// Host pids of live processes whose command line contains `text`.
fn processes_running(text: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && common::cmdline(*pid).contains(text)
        })
        .collect()
}

#[test]
fn rescans_handle_services_that_are_still_stopping() {
    require!(Capability::Namespaces);
    require!(Capability::Runit);
    let tree = Tree::new();
    // Each service is slow to stop (1 s), logs its starts with $V, and its
    // finish says it ran.
    let slow = r#"echo "$(basename "$PWD") V=$V" >> "$OUT/starts"
trap '' TERM
while :; do sleep 0.05; done"#;
    let toml = |v: u32| format!("stop-timeout = \"1s\"\n[environment]\nV = \"{v}\"\n");
    let make = |dir: &std::path::Path, v: u32| {
        common::write_file(&dir.join("run"), &tree.script(slow), 0o755);
        common::write_file(
            &dir.join("finish"),
            &tree.script(r#"echo "$(basename "$PWD")" >> "$OUT/finished""#),
            0o755,
        );
        common::write_file(&dir.join("service.toml"), &toml(v), 0o644);
    };
    // linked: lives outside and is linked in, runit's usual way.
    let real = tree.path().join("sv/linked");
    make(&real, 1);
    std::os::unix::fs::symlink(&real, tree.service_dir().join("linked")).unwrap();
    for name in ["back", "edited", "held"] {
        make(&tree.service_dir().join(name), 1);
    }
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "starts", 4, LONG);
    // Its runit state may lag its start (see the control-script test).
    tree.wait_sv_status(Sv::Stock, "held", "run: held: ", LONG);
    tree.sv(Sv::Stock, &["down", "held"]);
    tree.wait_sv_status(Sv::Stock, "held", "down: held: ", LONG);

    // linked: its symlink removed; it still stops cleanly and runs finish.
    fs::remove_file(tree.service_dir().join("linked")).unwrap();
    // back: removed, then back before its slow stop is over.
    fs::rename(tree.service_dir().join("back"), tree.path().join("back.away")).unwrap();
    wait_for("back to be told to stop", LONG, || {
        init.stderr_so_far().contains("service back: removed").then_some(())
    });
    fs::rename(tree.path().join("back.away"), tree.service_dir().join("back")).unwrap();
    // edited: changed twice while stopping: the last definition wins.
    let edit = |v: u32| {
        let new = tree.service_dir().join("edited/service.toml.new");
        common::write_file(&new, &toml(v), 0o644);
        fs::rename(&new, tree.service_dir().join("edited/service.toml")).unwrap();
    };
    edit(2);
    wait_for("edited to be told to restart", LONG, || {
        init.stderr_so_far()
            .contains("service edited: definition changed")
            .then_some(())
    });
    edit(3);
    // held: changed while down by sv: stays down.
    let new = tree.service_dir().join("held/service.toml.new");
    common::write_file(&new, &toml(9), 0o644);
    fs::rename(&new, tree.service_dir().join("held/service.toml")).unwrap();
    wait_for("the new back and edited to start", LONG, || {
        let starts = tree.read("starts");
        (starts.contains("edited V=3") && starts.matches("back V=1").count() == 2).then_some(())
    });
    // sv up on a service being removed is ignored.
    fs::rename(tree.service_dir().join("back"), tree.path().join("back.gone")).unwrap();
    wait_for("back to be told to stop", LONG, || {
        (init.stderr_so_far().matches("service back: removed").count() == 2).then_some(())
    });
    let control = tree.path().join("back.gone/supervise/control");
    fs::write(&control, "u").unwrap();
    wait_for("the sv up to be refused", LONG, || {
        init.stderr_so_far()
            .contains("service back: ignoring sv Up")
            .then_some(())
    });
    // The service directory moved away and back: nothing stops. Away, a
    // SIGHUP's rescan (its line comes out with the rest of that turn's:
    // whatever it stopped is stopping by then); back, the watch's.
    let before = tree.read("starts");
    let running = |s: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| u["state"] == "run")
            .map(|u| (u["name"].as_str().unwrap_or_default().to_owned(), u["pid"].clone()))
            .collect()
    };
    let running_before = tree.wait_status("a status snapshot", LONG, |s| Some(running(s)));
    fs::rename(tree.service_dir(), tree.path().join("service.away")).unwrap();
    init.signal(libc::SIGHUP);
    wait_for("the rescan", LONG, || {
        init.stderr_so_far()
            .contains("received SIGHUP: rescanning")
            .then_some(())
    });
    fs::rename(tree.path().join("service.away"), tree.service_dir()).unwrap();
    // A service added once it is back starts by a rescan (the watch's) of
    // the directory as it is back.
    let staging = tree.path().join("staging/marker");
    common::write_file(
        &staging.join("run"),
        &tree.script(r#"echo up > "$OUT/marker"; exec sleep 60"#),
        0o755,
    );
    fs::rename(&staging, tree.service_dir().join("marker")).unwrap();
    wait_lines(&tree, "marker", 1, LONG);
    let running_after = tree.wait_status("a status snapshot", LONG, |s| Some(running(s)));
    for service in &running_before {
        assert!(
            running_after.contains(service),
            "{service:?} stopped for the move: {running_after:?}"
        );
    }
    let run = init.stop(LONG);
    let starts = tree.read("starts");
    assert_eq!(starts, before, "nothing restarted by the move");
    assert!(
        !starts.contains("edited V=2"),
        "the stale definition never ran:\n{starts}"
    );
    assert!(!starts.contains("held V=9"), "held stayed down:\n{starts}");
    assert!(
        tree.read("finished").contains("linked\n"),
        "finish ran for the unlinked service"
    );
    assert!(
        !run.stderr.contains("service edited: removed"),
        "edited was never removed"
    );
    assert!(
        !run.stderr.contains("service linked: finish: cannot start"),
        "stderr:\n{}",
        run.stderr
    );
}

#[test]
fn env_init_directory_names_the_startup_directory() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let elsewhere = tree.path().join("elsewhere.d");
    common::write_file(&elsewhere.join("10_x"), &tree.script(r#"echo ran > "$OUT/ran""#), 0o755);
    // Tree::args names --startup-dir; without it, my_init's variable decides.
    let args: Vec<String> = tree
        .args(&["--skip-runit", "--", "true"])
        .chunks(2)
        .filter(|pair| pair[0] != "--startup-dir")
        .flatten()
        .cloned()
        .collect();
    let run = Baseinit::start_with(Mode::Pid1, &args, |c| {
        c.env("ENV_INIT_DIRECTORY", &elsewhere);
    })
    .wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(tree.read("ran"), "ran\n");
}

#[test]
fn as_a_non_root_user_an_unwritable_environment_is_one_info_line_not_a_failure() {
    // Root, to switch to nobody.
    require!(Capability::Root);
    let tree = Tree::new();
    // A root-owned 0700 directory: nobody can neither read nor write there.
    let locked = tree.path().join("locked");
    fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
    // The rest of the tree must be reachable for nobody.
    fs::set_permissions(tree.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let env_dir = locked.join("container_environment").display().to_string();
    // A runtime directory nobody may use: only the environment is unwritable.
    let runtime_dir = tree.path().join("run");
    fs::create_dir(&runtime_dir).unwrap();
    fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let runtime = runtime_dir.display().to_string();
    let args: Vec<String> = [
        "setuser",
        "nobody",
        common::BIN,
        "--skip-startup-files",
        "--skip-runit",
        "--env-dir",
        &env_dir,
        "--runtime-dir",
        &runtime,
        "--",
        "sh",
        "-c",
        "exit 4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = Baseinit::start(Mode::Subreaper, &args).wait(LONG);
    assert_eq!(
        run.code, 4,
        "the main command ran and its code came back; stderr:\n{}",
        run.stderr
    );
    // Expected of a non-root baseinit (the files are root's): no warning,
    // one line at info level saying what could not be read or written.
    assert_eq!(run.stderr.matches(" WARN ").count(), 0, "no warning:\n{}", run.stderr);
    assert_eq!(
        run.stderr
            .matches(" INFO container environment: not all of it can be read or written as uid ")
            .count(),
        1,
        "exactly one line about it:\n{}",
        run.stderr
    );
}

#[test]
fn a_logger_that_quits_often_still_gets_every_line_at_shutdown() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("writer", r#"seq 1 40; echo done > "$OUT/written"; exec sleep 60"#);
    // Quits after every 5 lines; restarts only after 10 s, so at shutdown
    // most lines are still in the pipe.
    tree.service_file(
        "writer",
        "log/run",
        &tree.script(r#"n=0; while [ $n -lt 5 ] && IFS= read -r l; do echo "$l" >> "$OUT/logged"; n=$((n+1)); done"#),
        0o755,
    );
    tree.service_file("writer", "log/service.toml", "[backoff]\ninitial = \"10s\"\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "written", 1, LONG);
    wait_lines(&tree, "logged", 5, LONG);
    init.stop(LONG);
    let expected: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    assert_eq!(tree.read("logged").lines().collect::<Vec<_>>(), expected);
}

/// Opens a control FIFO for writing without blocking: Err(ENXIO) when
/// nobody reads it.
fn open_control(path: &std::path::Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[test]
fn a_removed_service_stops_listening_and_the_next_one_gets_only_its_own_commands() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let body = r#"echo "$(basename "$PWD") up" >> "$OUT/events"
trap 'echo "$(basename "$PWD") stopped" >> "$OUT/events"; exit 0' TERM
while :; do sleep 0.05; done"#;
    tree.service("old", body);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "events", 1, LONG);
    // Its supervise/ (the FIFO's reader) is made just after the wake-up
    // that started it: there before it is removed.
    common::wait_supervised(&tree, "old", LONG);
    let old_control = tree.path().join("gone/old/supervise/control");

    // Removed: stopped and retired (its slot is free for the next one).
    fs::create_dir_all(tree.path().join("gone")).unwrap();
    fs::rename(tree.service_dir().join("old"), tree.path().join("gone/old")).unwrap();
    wait_lines(&tree, "events", 2, LONG);
    let staging = tree.path().join("staging/new");
    common::write_file(&staging.join("run"), &tree.script(body), 0o755);
    fs::rename(&staging, tree.service_dir().join("new")).unwrap();
    wait_lines(&tree, "events", 3, LONG);

    // Nobody reads the old service's FIFO any more...
    let err = open_control(&old_control).expect_err("the old FIFO still has a reader");
    assert_eq!(err.raw_os_error(), Some(libc::ENXIO), "{err}");
    // ...and the new one's commands reach the new one.
    use std::io::Write;
    // The reader is opened with supervise/, before its status is written
    // (the end of the wake-up that started the service).
    common::wait_supervised(&tree, "new", LONG);
    let new_control = tree.service_dir().join("new/supervise/control");
    let mut control = open_control(&new_control).expect("the new service's FIFO has a reader");
    control.write_all(b"d").unwrap();
    wait_lines(&tree, "events", 4, LONG);
    init.stop(LONG);
    assert_eq!(tree.read("events"), "old up\nold stopped\nnew up\nnew stopped\n");
}

#[test]
fn every_one_of_many_services_gets_its_supervise_state() {
    require!(Capability::Namespaces);
    // Enough services that making their supervise/ directories spans
    // several turns of the event loop on a slow disk: none may be missed.
    const SERVICES: usize = 150;
    let tree = Tree::new();
    for i in 0..SERVICES {
        tree.service(&format!("s{i:03}"), "exec sleep 600");
    }
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    for i in 0..SERVICES {
        let name = format!("s{i:03}");
        tree.wait_sv_status(Sv::Link, &name, &format!("run: {name}: (pid "), LONG);
        let stat = fs::read_to_string(tree.service_dir().join(&name).join("supervise/stat")).unwrap();
        assert_eq!(stat, "run\n", "{name}");
    }
    init.stop(LONG);
}
