//! Bad input at runtime against the real binary as PID 1: odd service
//! names, huge and binary files, symlink loops, added to a running
//! container. Each is started or reported (naming it), none panics
//! baseinit, and the healthy service is never touched. (`check.rs` holds
//! the corpus of broken definitions and their exact messages.)
#![allow(clippy::disallowed_methods)]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, require, wait_lines};
use nix::libc;

const LONG: Duration = Duration::from_secs(10);

#[test]
fn odd_names_huge_files_and_symlink_loops_added_at_runtime_harm_nothing() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("fine", r#"echo $$ >> "$OUT/fine"; exec sleep 1000"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "fine", 1, LONG);

    // Built in a staging directory, then moved in at once.
    let staging = tree.path().join("staging");
    fs::create_dir_all(&staging).unwrap();
    let records = |dir: &std::path::Path, tag: &str| {
        common::write_file(
            &dir.join("run"),
            &tree.script(&format!("echo {tag} >> \"$OUT/started\"; exec sleep 1000")),
            0o755,
        );
    };
    let long_name = "n".repeat(255);
    let names: Vec<(&[u8], &str)> = vec![
        (b"with space", "space"),
        (b"new\nline", "newline"),
        (b"caf\xe9", "latin1"), // reported: names must be UTF-8
        (long_name.as_bytes(), "long"),
        (b"-dash", "dash"),
    ];
    for (name, tag) in &names {
        let dir = staging.join(OsStr::from_bytes(name));
        records(&dir, tag);
    }
    // A 20 MB service.toml, a binary one, a FIFO one (a read would block),
    // a symlink loop and a symlink to itself, a `run` that is a directory,
    // a service that is a plain file (ignored, as runsvdir does).
    let huge = staging.join("huge");
    records(&huge, "huge");
    fs::write(huge.join("service.toml"), "# padding\n".repeat(2_000_000)).unwrap();
    let fifo = staging.join("fifo");
    records(&fifo, "fifo");
    nix::unistd::mkfifo(&fifo.join("service.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let binary = staging.join("binary");
    records(&binary, "binary");
    fs::write(
        binary.join("service.toml"),
        (0..=255u8).cycle().take(65536).collect::<Vec<u8>>(),
    )
    .unwrap();
    symlink("loop-b", staging.join("loop-a")).unwrap();
    symlink("loop-a", staging.join("loop-b")).unwrap();
    symlink("self", staging.join("self")).unwrap();
    fs::create_dir_all(staging.join("run-is-dir/run")).unwrap();
    fs::write(staging.join("plain-file"), "not a service").unwrap();

    for entry in fs::read_dir(&staging).unwrap() {
        let entry = entry.unwrap();
        fs::rename(entry.path(), tree.service_dir().join(entry.file_name())).unwrap();
    }
    init.signal(libc::SIGHUP);
    let expected_starts = ["space", "newline", "long", "dash"];
    wait_or_dump(&init, "the well-formed odd services to start", || {
        let started = tree.read("started");
        expected_starts
            .iter()
            .all(|t| started.lines().any(|l| l == *t))
            .then_some(())
    });
    // The libc's own words for ELOOP (glibc's and musl's differ): the test
    // is built against the same libc as the binary.
    let eloop = std::io::Error::from_raw_os_error(libc::ELOOP).to_string();
    wait_or_dump(&init, "the broken ones to be reported", || {
        let err = init.stderr_so_far();
        [
            "binary/service.toml:2:118: not valid UTF-8".to_owned(),
            "/caf\u{fffd}: service name is not valid UTF-8".to_owned(),
            format!("loop-a: cannot read: {eloop}"),
            format!("loop-b: cannot read: {eloop}"),
            format!("self: cannot read: {eloop}"),
            "run-is-dir/run: not a regular file".to_owned(),
            "huge/service.toml: too large: 20000000 bytes".to_owned(),
            "fifo/service.toml: not a regular file".to_owned(),
        ]
        .iter()
        .all(|n| err.contains(n.as_str()))
        .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    let problems: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    eprintln!("as reported:\n{}", problems.join("\n"));
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(
        tree.read("fine").lines().count(),
        1,
        "the healthy service was never restarted"
    );
    let started = tree.read("started");
    assert!(
        !started.contains("binary"),
        "a binary service.toml is an error, not a default"
    );
}

/// Like `wait_for`, with baseinit's log in the failure message.
fn wait_or_dump(init: &Baseinit, what: &str, mut probe: impl FnMut() -> Option<()>) {
    let deadline = std::time::Instant::now() + LONG;
    while probe().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; stderr:\n{}",
            init.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_unreadable_service_directory_is_reported_and_harms_nothing() {
    // Root reads everything: baseinit runs as nobody here (through its own
    // setuser), so that a 0700 root-owned directory is truly unreadable.
    require!(Capability::Root);
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new();
    let open = |path: &std::path::Path| {
        fs::create_dir_all(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o777)).unwrap();
    };
    fs::set_permissions(tree.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = tree.path().join("out");
    open(&out);
    open(&tree.path().join("run"));
    let script = |body: &str| format!("#!/bin/sh\nOUT='{}'\n{body}\n", out.display());
    common::write_file(
        &tree.service_dir().join("fine/run"),
        &script(r#"echo $$ >> "$OUT/fine"; exec sleep 1000"#),
        0o755,
    );
    let mut args = vec!["setuser".to_owned(), "nobody".to_owned(), common::BIN.to_owned()];
    args.extend(tree.args(&[]));
    let init = Baseinit::start(Mode::Subreaper, &args);
    wait_or_dump(&init, "fine to start", || {
        (!fs::read_to_string(out.join("fine")).unwrap_or_default().is_empty()).then_some(())
    });

    let staging = tree.path().join("staging/locked");
    common::write_file(&staging.join("run"), &script("exec sleep 1000"), 0o755);
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o700)).unwrap();
    fs::rename(&staging, tree.service_dir().join("locked")).unwrap();
    init.signal(libc::SIGHUP);
    wait_or_dump(&init, "the unreadable directory to be reported", || {
        init.stderr_so_far()
            .contains("locked/service.toml: cannot read: Permission denied")
            .then_some(())
    });
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    eprintln!(
        "as reported:\n{}",
        run.stderr
            .lines()
            .filter(|l| l.contains("locked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        fs::read_to_string(out.join("fine")).unwrap_or_default().lines().count(),
        1,
        "fine was never restarted"
    );
}
