//! What the supervisor guarantees about privileges: services run as the
//! user they name, with nothing of root left; the control interface
//! (supervise FIFOs, status socket) is root's alone; no child of any kind
//! inherits a signal mask, an ignored signal or an fd.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{BIN, Baseinit, Capability, Mode, Tree, children_of, require, wait_lines};
use nix::libc;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn a_service_with_user_runs_with_every_id_and_group_of_that_user() {
    // Not PID 1 (a user namespace maps only root): as root on the host, to
    // switch users.
    require!(Capability::Root);
    let tree = Tree::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = tree.out("ids");
    tree.service_file(
        "probe",
        "service.toml",
        &format!(
            "user = \"nobody\"\ncommand = [\"sh\", \"-c\", \"grep -E '^(Uid|Gid|Groups):' /proc/self/status > {out}; echo HOME=$HOME USER=$USER >> {out}; exec sleep 60\"]\n",
            out = out.display()
        ),
        0o644,
    );
    let init = Baseinit::start(Mode::Subreaper, &tree.args(&[]));
    wait_lines(&tree, "ids", 4, LONG);
    init.stop(LONG);
    let ids = tree.read("ids");
    let nobody = baseinit::accounts::user_by_name("nobody").unwrap().unwrap();
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let line = |key: &str| ids.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_owned();
    assert_eq!(line("Uid:"), format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}"), "{ids}");
    assert_eq!(line("Gid:"), format!("Gid:\t{gid}\t{gid}\t{gid}\t{gid}"), "{ids}");
    let groups_line = line("Groups:");
    let groups: Vec<&str> = groups_line.trim_start_matches("Groups:").split_whitespace().collect();
    assert!(!groups.contains(&"0"), "a root group survived: {ids}");
    assert!(
        ids.contains(&format!("HOME={} USER=nobody", nobody.dir.display())),
        "{ids}"
    );
}

#[test]
fn only_root_controls_services_or_asks_for_status() {
    require!(Capability::Namespaces);
    // Root, to switch users.
    require!(Capability::Root);
    let tree = Tree::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tree.service("web", r#"echo up >> "$OUT/web"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "web", 1, LONG);
    // Otherwise a refusal could be only "not there yet".
    common::wait_supervised(&tree, "web", LONG);
    common::wait_control_socket(&tree, LONG);
    let as_nobody = |args: &[&str]| {
        let mut all = vec!["setuser", "nobody", BIN];
        all.extend_from_slice(args);
        tree.baseinit(&all)
    };
    for command in ["down", "kill", "term", "exit"] {
        let out = as_nobody(&["sv", command, "web"]);
        assert_ne!(out.code, 0, "nobody could sv {command}: {out:?}");
    }
    let out = as_nobody(&["status"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("permission denied"), "{out:?}");
    // The service never noticed: one start, still running.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tree.read("web"), "up\n");
    init.stop(LONG);
}

/// Where each of `fds` of `pid` pointed (when it still runs).
fn fd_links(pid: i32, fds: &[i32]) -> Vec<String> {
    fds.iter()
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into())
        })
        .collect()
}

/// (SigBlk, SigIgn, fds, process group) of a live process.
fn child_state(pid: i32) -> Option<(String, String, Vec<i32>, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let pgrp = stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()?;
    Some((field("SigBlk:")?, field("SigIgn:")?, fds, pgrp))
}

#[test]
fn no_signal_mask_ignored_signal_or_fd_leaks_into_any_kind_of_child() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Each kind of child ends in `exec` of a program that opens nothing, told
    // apart by its arguments, so /proc shows exactly what baseinit gave it.
    let kinds: [(&str, &str); 9] = [
        ("startup script", "sleep 0.4"),
        ("service", "sleep 100"),
        ("readiness probe", "sleep 0.41"),
        ("health probe", "sleep 0.42"),
        ("service run once", "sleep 0.43"),
        ("finish", "sleep 0.44"),
        ("logger", "cat"),
        ("pre-shutdown hook", "sleep 0.45"),
        ("post-shutdown hook", "sleep 0.46"),
    ];
    tree.startup_script("10_script", "exec sleep 0.4");
    tree.service("svc", "exec sleep 100");
    tree.service_file(
        "svc",
        "service.toml",
        "[ready]\ncommand = [\"sleep\", \"0.41\"]\n[health]\ncommand = [\"sleep\", \"0.42\"]\ninterval = \"200ms\"\ntimeout = \"5s\"\n",
        0o644,
    );
    tree.service_file("svc", "log/run", "#!/bin/sh\nexec cat > /dev/null\n", 0o755);
    tree.service("once", "exec sleep 0.43");
    tree.service_file("once", "service.toml", "restart = \"never\"\n", 0o644);
    tree.service_file("once", "finish", "#!/bin/sh\nexec sleep 0.44\n", 0o755);
    for (dir, arg) in [("pre_shutdown.d", "0.45"), ("post_shutdown.d", "0.46")] {
        common::write_file(
            &tree.path().join(dir).join("10_hook"),
            &format!("#!/bin/sh\nexec sleep {arg}\n"),
            0o755,
        );
    }
    let mut init = Baseinit::start_with(
        Mode::Pid1,
        &tree.args(&["--hook-timeout", "3"]),
        common::dirty_inheritance,
    );
    let pid = init.pid();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (seen, done) = (seen.clone(), done.clone());
        let markers: Vec<String> = kinds.iter().map(|(_, c)| c.replace(' ', "\0") + "\0").collect();
        std::thread::spawn(move || {
            // A program may open a file for a moment as it starts (`sleep`
            // reads locale data): judge each child 50 ms after its exec.
            let mut first_seen = std::collections::HashMap::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for (child, _) in children_of(pid) {
                    let cmdline = std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap_or_default();
                    let Some(i) = markers.iter().position(|m| *m == cmdline) else {
                        continue;
                    };
                    let since = *first_seen.entry(child).or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= Duration::from_millis(50)
                        && let Some(state) = child_state(child)
                    {
                        seen.lock().unwrap().entry(i).or_insert((child, state));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    common::wait_for("every running kind of child to be seen", LONG, || {
        (seen.lock().unwrap().len() >= 7).then_some(())
    });
    init.mark();
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let seen = seen.lock().unwrap();
    for (i, (kind, _)) in kinds.iter().enumerate() {
        let Some((child, (blocked, ignored, fds, pgrp))) = seen.get(&i) else {
            panic!("{kind}: never seen running; stderr:\n{}", run.stderr);
        };
        assert_eq!(blocked, "0000000000000000", "{kind}: signal mask");
        assert_eq!(ignored, "0000000000000000", "{kind}: ignored signals");
        assert_eq!(
            fds,
            &[0, 1, 2],
            "{kind}: only fds 0-2 (links: {links:?})",
            links = fd_links(*child, fds)
        );
        assert_eq!(pgrp, child, "{kind}: its own process group");
    }
}

/// baseinit without privileges, as OpenShift runs it (a uid with no passwd
/// entry, gid 0, no capabilities): a service whose `user` is that very uid
/// runs, with no credential call (setgroups would fail), and, given as a
/// uid without a passwd entry and no `group`, gets baseinit's gid. One
/// asking for another user is refused at load, naming the line and the
/// reason, by `baseinit check` and by the boot: never a crash loop, and the
/// other services run.
#[test]
fn without_privileges_services_run_as_baseinits_ids_and_other_users_are_refused_at_load() {
    require!(Capability::Root);
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const UID: u32 = 1_000_780_000;
    let tree = Tree::new();
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = tree.out("ids");
    tree.service_file(
        "self",
        "service.toml",
        &format!(
            "user = \"{UID}\"\ncommand = [\"sh\", \"-c\", \"grep -E '^(Uid|Gid):' /proc/self/status > {out}; exec sleep 60\"]\n",
            out = out.display()
        ),
        0o644,
    );
    let unprivileged = |c: &mut std::process::Command| {
        c.uid(UID).gid(0);
    };
    let runtime = tree.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    // tree.args' runtime directory (made writable above) and environment
    // directory (in the tree, which anyone may write).
    let args = tree.args(&[]);
    let init = Baseinit::start_with(Mode::Subreaper, &args, unprivileged);
    wait_lines(&tree, "ids", 2, LONG);
    let finished = init.stop(LONG);
    let ids = tree.read("ids");
    assert!(ids.contains(&format!("Uid:\t{UID}\t{UID}\t{UID}\t{UID}")), "{ids}");
    assert!(ids.contains("Gid:\t0\t0\t0\t0"), "{ids}");
    assert!(
        !finished.stderr.contains("cannot start"),
        "no failed start:\n{}",
        finished.stderr
    );

    // Another user: an error at load, with its line; only that service is
    // kept down (`broken` in the status), the other runs.
    tree.service_file(
        "other",
        "service.toml",
        "user = \"root\"\ncommand = [\"true\"]\n",
        0o644,
    );
    let check = std::process::Command::new(common::BIN)
        .args(["check", "--service-dir"])
        .arg(tree.service_dir())
        .uid(UID)
        .gid(0)
        .output()
        .expect("run baseinit check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(
        report.contains("other/service.toml:1:8: error: cannot run as that user: baseinit is running as uid 1000780000 without CAP_SETUID"),
        "{report}"
    );
    std::fs::remove_file(&out).unwrap();
    let init = Baseinit::start_with(Mode::Subreaper, &args, unprivileged);
    wait_lines(&tree, "ids", 2, LONG);
    let mut ask = std::process::Command::new(common::BIN);
    ask.args(["status", "--json"]).uid(UID).gid(0);
    tree.point_at(&mut ask);
    let status = common::run(ask);
    assert_eq!(status.code, 0, "{}", status.text());
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json parses");
    let other = json["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "other"))
        .unwrap_or_else(|| panic!("other missing: {json:#}"));
    assert_eq!(other["state"], "broken", "{json:#}");
    assert!(
        other["reason"]
            .as_str()
            .is_some_and(|r| r.contains("without CAP_SETUID")),
        "{json:#}"
    );
    let boot = init.stop(LONG);
    assert_eq!(boot.code, 0, "{}", boot.stderr);
    assert!(boot.stderr.contains("without CAP_SETUID"), "{}", boot.stderr);
}

/// Nothing writable for a non-root baseinit (a read-only root without a
/// tmpfs, as far as baseinit can tell): no directory for the socket or for
/// runit's `supervise/`. The socket is abstract, `status` answers, and
/// baseinit's `sv` controls services over it, as the same uid; another
/// uid is denied.
#[test]
fn with_nothing_writable_sv_controls_services_over_the_abstract_socket() {
    require!(Capability::Root);
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const UID: u32 = 1_000_780_000;
    let tree = Tree::new();
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    tree.service("web", r#"echo $$ >> "$OUT/starts"; exec sleep 60"#);
    // Root's, read-only to baseinit: the runtime directory and $TMPDIR (the
    // service directory is root's too).
    let locked = tree.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(tree.runtime_dir()).unwrap();
    std::fs::set_permissions(tree.runtime_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_uid = |uid: u32| {
        let locked = locked.clone();
        move |c: &mut std::process::Command| {
            c.uid(uid).gid(0).env("TMPDIR", &locked);
        }
    };
    let init = Baseinit::start_with(Mode::Subreaper, &tree.args(&[]), as_uid(UID));
    wait_lines(&tree, "starts", 1, LONG);
    let sv = |uid: u32, args: &[&str]| {
        let mut command = std::process::Command::new(BIN);
        command.arg("sv").args(args);
        tree.point_at(&mut command);
        as_uid(uid)(&mut command);
        common::run(command)
    };
    let first = tree.read("starts").trim().to_owned();
    let status = sv(UID, &["status", "web"]);
    assert_eq!(status.code, 0, "{}", status.text());
    assert!(
        status.stdout.starts_with(&format!("run: web: (pid {first}) ")),
        "{}",
        status.text()
    );
    let restart = sv(UID, &["restart", "web"]);
    assert_eq!(restart.code, 0, "{}", restart.text());
    assert!(restart.stdout.starts_with("ok: run: web: (pid "), "{}", restart.text());
    wait_lines(&tree, "starts", 2, LONG);
    let down = sv(UID, &["down", "web"]);
    assert_eq!(down.code, 0, "{}", down.text());
    let status = sv(UID, &["status", "web"]);
    assert!(status.stdout.starts_with("down: web: "), "{}", status.text());
    // Another uid is denied, and says so.
    let other = sv(UID + 1, &["up", "web"]);
    assert!(other.stdout.contains("permission denied"), "{}", other.text());
    assert_ne!(other.code, 0, "{}", other.text());
    let status = sv(UID, &["status", "web"]);
    assert!(status.stdout.starts_with("down: web: "), "{}", status.text());
    let run = init.stop(LONG);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("answered over an abstract socket"),
        "{}",
        run.stderr
    );
}
