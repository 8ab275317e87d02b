//! What the supervisor guarantees about privileges: services run as the
//! user they name, with nothing of root left; the control interface
//! (supervise FIFOs, status socket) is root's alone.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Baseinit, Mode, Tree, require_namespaces, wait_lines};
use nix::libc;

const LONG: Duration = Duration::from_secs(30);

fn root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("\n*** SKIPPED {test}: needs root ***\n");
    false
}

#[test]
fn a_service_with_user_runs_with_every_id_and_group_of_that_user() {
    // Not PID 1 (a user namespace maps only root): as root on the host.
    if !root("a_service_with_user_runs_with_every_id_and_group_of_that_user") {
        return;
    }
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
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait(LONG).code, 0);
    let ids = tree.read("ids");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
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
    require_namespaces!("only_root_controls_services_or_asks_for_status");
    if !root("only_root_controls_services_or_asks_for_status") {
        return;
    }
    let tree = Tree::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tree.service("web", r#"echo up >> "$OUT/web"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "web", 1, LONG);
    let as_nobody = |args: &[&str]| {
        Command::new(BIN)
            .args(["setuser", "nobody", BIN])
            .args(args)
            .env("SVDIR", tree.service_dir())
            .env("BASEINIT_RUNTIME_DIR", tree.path().join("run"))
            .output()
            .unwrap()
    };
    for command in ["down", "kill", "term", "exit"] {
        let out = as_nobody(&["sv", command, "web"]);
        assert_ne!(out.status.code(), Some(0), "nobody could sv {command}: {out:?}");
    }
    let out = as_nobody(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
    // The service never noticed: one start, still running.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tree.read("web"), "up\n");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait(LONG).code, 0);
}
