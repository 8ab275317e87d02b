//! `baseinit check` against a corpus of broken trees: every problem reported,
//! each once, with its position; nothing missed; JSON that parses back.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;

use common::{Tree, write_file};

/// Runs `baseinit check` on the tree; (exit code, stdout).
fn check(tree: &Tree, extra: &[&str]) -> (i32, String) {
    let out = common::run(tree.check_command(extra));
    (out.code, out.stdout)
}

/// Every kind of breakage, one service (or file) each, and what check must say.
fn broken_corpus(tree: &Tree) -> Vec<String> {
    let run = |name: &str| tree.service(name, "exec sleep 1");
    let toml = |name: &str, body: &str| {
        tree.service_file(name, "service.toml", body, 0o644);
    };
    run("syntax");
    toml("syntax", "restart = \"always\"\ncommand = [\"a\",\n");
    run("unknown-key");
    toml("unknown-key", "\n\nstop-timout = \"1s\"\n");
    run("wrong-type");
    toml("wrong-type", "restart = 3\n");
    run("bad-duration");
    toml("bad-duration", "[backoff]\ninitial = \"fast\"\n");
    run("bad-signal");
    toml("bad-signal", "stop-signal = \"SIGFOO\"\n");
    run("no-user");
    toml("no-user", "user = \"nobody-here-at-all\"\n");
    run("no-group");
    toml("no-group", "group = \"nogroup-here-at-all\"\n");
    tree.service_file("no-run", "finish", "#!/bin/sh\n", 0o755);
    tree.service_file("run-not-exec", "run", "#!/bin/sh\n", 0o644);
    run("finish-not-exec");
    tree.service_file("finish-not-exec", "finish", "#!/bin/sh\n", 0o644);
    run("check-not-exec");
    tree.service_file("check-not-exec", "check", "#!/bin/sh\n", 0o644);
    run("log-not-exec");
    tree.service_file("log-not-exec", "log/run", "#!/bin/sh\n", 0o644);
    run("both");
    toml("both", "command = [\"sleep\", \"1\"]\n");
    toml("empty-command", "command = []\n");
    run("backoff");
    toml("backoff", "[backoff]\ninitial = \"2s\"\nmax = \"1s\"\n");
    run("no-workdir");
    toml("no-workdir", "working-directory = \"missing\"\n");
    run("binary");
    fs::write(tree.service_dir().join("binary/service.toml"), b"a\xff\xfe\x00").unwrap();
    std::os::unix::fs::symlink("/nonexistent/service", tree.service_dir().join("dangling")).unwrap();
    run("fine"); // must not be mentioned
    write_file(&tree.env_dir().join("A=B"), "x", 0o600);
    write_file(&tree.env_dir().join("GOOD"), "x", 0o600);
    std::fs::write(tree.env_dir().join("NUL"), b"a\0b").unwrap();

    let s = tree.service_dir().display().to_string();
    vec![
        format!("{s}/syntax/service.toml:2:16: error: unclosed array"),
        format!("{s}/unknown-key/service.toml:3:1: error: unknown field `stop-timout`"),
        format!("{s}/wrong-type/service.toml:1:11: error: invalid type: integer `3`, expected one of"),
        format!("{s}/bad-duration/service.toml:2:11: error: invalid duration \"fast\""),
        format!("{s}/bad-signal/service.toml:1:15: error: unknown signal \"SIGFOO\""),
        format!("{s}/no-user/service.toml:1:8: error: unknown user `nobody-here-at-all`"),
        format!("{s}/no-group/service.toml:1:9: error: unknown group `nogroup-here-at-all`"),
        format!("{s}/no-run/run: error: missing"),
        format!("{s}/run-not-exec/run: error: not executable"),
        format!("{s}/finish-not-exec/finish: error: not executable"),
        format!("{s}/check-not-exec/check: error: not executable"),
        format!("{s}/log-not-exec/log/run: error: not executable"),
        format!("{s}/both/service.toml:1:11: error: both `command` and a `run` file"),
        format!("{s}/empty-command/service.toml:1:11: error: `command` is empty"),
        format!("{s}/backoff/service.toml:3:7: error: backoff.max is shorter than backoff.initial"),
        format!("{s}/no-workdir/service.toml:1:21: error: working-directory"),
        format!("{s}/binary/service.toml:1:2: error: not valid UTF-8"),
        format!("{s}/dangling: error: dangling symlink"),
        format!(
            "{}/A=B: error: a variable name cannot contain '='",
            tree.env_dir().display()
        ),
        format!("{}/NUL: error: the value holds a NUL byte", tree.env_dir().display()),
    ]
}

#[test]
fn every_problem_of_a_broken_corpus_is_reported_once_with_its_position() {
    let tree = Tree::new();
    let expected = broken_corpus(&tree);
    let (code, out) = check(&tree, &[]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("baseinit check:")).collect();
    for want in &expected {
        let hits = lines.iter().filter(|l| l.starts_with(want.as_str())).count();
        assert_eq!(hits, 1, "{want:?} should be reported once in:\n{out}");
    }
    assert_eq!(lines.len(), expected.len(), "nothing else reported:\n{out}");
    assert!(!out.contains("/fine/"), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("baseinit check: {} error(s), 0 warning(s)", expected.len())),
        "{summary}"
    );
}

#[test]
fn json_output_parses_back_to_the_same_problems() {
    let tree = Tree::new();
    let expected = broken_corpus(&tree);
    let (code, out) = check(&tree, &["--format", "json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), expected.len());
    assert_eq!(report["errors"], expected.len());
    let unknown = problems
        .iter()
        .find(|p| p["path"].as_str().unwrap().ends_with("unknown-key/service.toml"))
        .unwrap();
    assert_eq!(
        (unknown["line"].as_u64(), unknown["column"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(unknown["severity"], "error");
}

#[test]
fn a_clean_tree_passes_and_warnings_do_not_fail_it() {
    let tree = Tree::new();
    tree.service("web", "exec sleep 1");
    tree.service_file("web", "service.toml", "stop-signal = \"QUIT\"\n", 0o644);
    tree.startup_script("10_ok", "true");
    write_file(&tree.startup_dir().join("README"), "notes", 0o644);
    write_file(&tree.env_dir().join("1ODD"), "x", 0o600);
    let (code, out) = check(&tree, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("README: warning: not executable"), "{out}");
    assert!(out.contains("1ODD: warning: not a valid shell variable name"), "{out}");
    assert!(
        out.ends_with("baseinit check: 0 error(s), 2 warning(s) in 1 service(s) and 1 startup script(s)\n"),
        "{out}"
    );
    assert!(
        !tree.service_dir().join("web/supervise").exists(),
        "check writes nothing"
    );
}
