//! `[log]` in service.toml: a service's lines kept by baseinit itself in a
//! log directory (svlogd's layout), rotated by size, the oldest deleted,
//! every line exactly once, in order; a directory that cannot be written
//! loses only its copy of the lines.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, require, wait_lines};

const LONG: Duration = Duration::from_secs(120);

/// The files of a log directory in the order they were written: the
/// rotated ones by name (their TAI64N stamps sort by time), then `current`.
fn files_in_order(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut rotated: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('@'))
        .collect();
    rotated.sort();
    rotated.push("current".to_owned());
    rotated
        .into_iter()
        .map(|name| {
            let body = fs::read(dir.join(&name)).unwrap_or_default();
            (name, body)
        })
        .collect()
}

#[test]
fn log_files_rotate_at_max_size_keep_max_files_and_hold_every_line_once() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let logs = tree.path().join("logs");
    fs::create_dir(&logs).unwrap();
    // 100,000 lines of 101 bytes: 10 MB, through files of at most 100 kB,
    // of which 5 are kept: the last 500 kB or so are on disk, in order.
    tree.service(
        "chatty",
        r#"awk 'BEGIN { for (i = 0; i < 100000; i++) printf "line %06d %s\n", i, sprintf("%88s", "") }'
echo done > "$OUT/done"
exec sleep 60"#,
    );
    tree.service_file(
        "chatty",
        "service.toml",
        &format!(
            "[log]\ndir = \"{}\"\nmax-size = \"100kB\"\nmax-files = 5\ntimestamps = false\nstdout = false\n",
            logs.display()
        ),
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "done", 1, LONG);
    let run = init.stop(LONG);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stdout.contains("chatty | line"),
        "stdout = false: nothing on stdout"
    );
    let files = files_in_order(&logs);
    assert_eq!(
        files.len(),
        6,
        "5 rotated files and current: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, body) in &files {
        assert!(body.len() <= 100_000, "{name} is {} bytes", body.len());
        if name != "current" {
            assert!(name.ends_with(".s"), "{name}");
            assert!(body.len() > 99_000, "{name} rotated early: {} bytes", body.len());
        }
    }
    // Consecutive, each line whole, ending with the last one written.
    let text: String = files
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let numbers: Vec<u32> = text
        .lines()
        .map(|l| {
            assert_eq!(l.len(), 100, "a torn line: {l:?}");
            l[5..11].parse().unwrap()
        })
        .collect();
    assert_eq!(numbers.last(), Some(&99_999));
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a line lost or repeated");
    }
    // Closed cleanly at the stop (svlogd's mark: current is 0744).
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(logs.join("current")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o744);
}

#[test]
fn log_files_are_stamped_and_stdout_still_gets_the_lines() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service(
        "web",
        r#"echo "to stdout"; echo "to stderr" >&2
echo done > "$OUT/done"
exec sleep 60"#,
    );
    // A relative dir is the service directory's.
    tree.service_file("web", "service.toml", "[log]\ndir = \"logs\"\n", 0o644);
    fs::create_dir(tree.service_dir().join("web/logs")).unwrap();
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "done", 1, LONG);
    let run = init.stop(LONG);
    assert!(run.stdout.contains("web | to stdout"), "{}", run.stdout);
    let current = fs::read_to_string(tree.service_dir().join("web/logs/current")).unwrap();
    let lines: Vec<&str> = current.lines().collect();
    assert_eq!(lines.len(), 2, "{current}");
    for (line, text) in lines.iter().zip(["to stdout", "to stderr"]) {
        // svlogd -ttt: YYYY-MM-DDTHH:MM:SS.xxxxx, then the line.
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 25, "{line}");
        assert_eq!(&stamp[10..11], "T", "{line}");
        assert_eq!(rest, text);
    }
}

#[test]
fn an_unwritable_log_dir_is_reported_once_and_the_service_runs_on() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service(
        "web",
        r#"i=0; while [ $i -lt 50 ]; do echo "line $i"; i=$((i+1)); done
echo done > "$OUT/done"
exec sleep 60"#,
    );
    // A file where the directory should be.
    let dir = tree.path().join("not-a-dir");
    fs::write(&dir, "").unwrap();
    tree.service_file(
        "web",
        "service.toml",
        &format!("[log]\ndir = \"{}\"\n", dir.display()),
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "done", 1, LONG);
    tree.wait_status("web running", LONG, |s| {
        s["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "web" && s["state"] == "run")
            .map(|_| ())
    });
    let run = init.stop(LONG);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("cannot keep log files in").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(they still go to stdout)"), "{}", run.stderr);
    assert!(run.stdout.contains("web | line 49"), "{}", run.stdout);
}
