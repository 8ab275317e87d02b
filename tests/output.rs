//! Services' output through baseinit: whole lines, prefixed, never torn or
//! lost, flushed at exit, as JSON on demand.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Baseinit, Mode, Tree, require_namespaces, wait_lines};
use nix::libc;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn concurrent_long_lines_are_never_torn_and_keep_their_order() {
    require_namespaces!("concurrent_long_lines_are_never_torn_and_keep_their_order");
    let tree = Tree::new();
    // Four services, 300 lines of 6000 bytes each (beyond PIPE_BUF), at full
    // speed, all at once.
    for k in 0..4 {
        tree.service(
            &format!("svc{k}"),
            &format!(
                r#"x=$(printf '%6000s' '' | tr ' ' 'x')
i=0; while [ $i -lt 300 ]; do echo "svc{k}:$i:$x"; i=$((i+1)); done
echo done >> "$OUT/done"
exec sleep 60"#
            ),
        );
    }
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "done", 4, LONG);
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let payload = "x".repeat(6000);
    let mut next: HashMap<String, usize> = HashMap::new();
    for line in run.stdout.lines() {
        let (prefix, text) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("no prefix: {:.80}", line));
        let mut parts = text.splitn(3, ':');
        let (name, i, rest) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
        assert_eq!(prefix, name, "a line under another service's prefix: {:.80}", line);
        assert_eq!(rest, payload, "torn line from {name} #{i}");
        let want = next.entry(name.to_owned()).or_default();
        assert_eq!(i.parse::<usize>().unwrap(), *want, "{name}: out of order");
        *want += 1;
    }
    for k in 0..4 {
        assert_eq!(next.get(&format!("svc{k}")), Some(&300), "svc{k}: lines missing");
    }
}

#[test]
fn a_burst_written_right_before_the_stop_is_all_printed_before_exit() {
    require_namespaces!("a_burst_written_right_before_the_stop_is_all_printed_before_exit");
    let tree = Tree::new();
    tree.service("burst", r#"seq 1 100000; echo done > "$OUT/done"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "done", 1, LONG);
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 100_000, "every line of the burst");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("burst | {}", i + 1));
    }
}

#[test]
fn last_lines_overlong_lines_stderr_and_inherit() {
    require_namespaces!("last_lines_overlong_lines_stderr_and_inherit");
    let tree = Tree::new();
    tree.service("tail", r#"printf 'no newline at the end'"#);
    tree.service_file("tail", "service.toml", "restart = \"never\"\n", 0o644);
    tree.service(
        "long",
        r#"printf '%20000s\n' '' | tr ' ' 'y'; echo err-line >&2; exec sleep 60"#,
    );
    tree.service("raw", r#"echo raw-line; exec sleep 60"#);
    tree.service_file("raw", "service.toml", "output = \"inherit\"\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&["--", "sleep", "1"]));
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(run.stdout.contains("tail | no newline at the end\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("\nraw-line\n") || run.stdout.starts_with("raw-line\n"),
        "inherit: no prefix"
    );
    let long: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("long | ")).collect();
    assert_eq!(long.len(), 2, "20000 bytes: split once at 16 KiB");
    assert!(long[0].ends_with(" [line continues]"));
    assert!(long[1].starts_with("long | [continued] "));
    let ys: usize = long.iter().map(|l| l.matches('y').count()).sum();
    assert_eq!(ys, 20000, "nothing lost in the split");
    assert!(run.stderr.contains("long (stderr) | err-line\n"), "{}", run.stderr);
}

#[test]
fn json_output_parses_back() {
    require_namespaces!("json_output_parses_back");
    let tree = Tree::new();
    tree.service("web", r#"echo 'said "hi"'; echo oops >&2; exec sleep 60"#);
    let run = Baseinit::start(Mode::Pid1, &tree.args(&["--log-format", "json", "--", "sleep", "1"])).wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let parse = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let out = parse(&run.stdout);
    assert_eq!(out.len(), 1, "{}", run.stdout);
    assert_eq!(out[0]["service"], "web");
    assert_eq!(out[0]["stream"], "stdout");
    assert_eq!(out[0]["message"], "said \"hi\"");
    assert!(out[0]["timestamp"].as_str().is_some());
    let err = parse(&run.stderr);
    assert!(
        err.iter()
            .any(|v| v["service"] == "web" && v["message"] == "oops" && v["level"] == "warn")
    );
    assert!(err.iter().any(|v| v["service"] == "baseinit" && v["level"] == "info"));
    for v in &err {
        for key in ["timestamp", "level", "service", "stream", "message"] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
}

#[test]
fn a_slow_stdout_slows_services_down_and_loses_nothing() {
    // Not PID 1: baseinit's stdout is a pipe the test reads slowly.
    let tree = Tree::new();
    tree.service("fast", r#"seq 1 20000; echo done > "$OUT/done"; exec sleep 60"#);
    let mut child = Command::new(BIN)
        .args(tree.args(&[]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    // Slow at first: the service must wait for us, not drop lines.
    while got.iter().filter(|b| **b == b'\n').count() < 20000 {
        assert!(start.elapsed() < LONG, "watchdog: stuck reading");
        if got.len() < 64 * 1024 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "stdout closed early");
        got.extend_from_slice(&buf[..n]);
    }
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = stdout.read_to_end(&mut got);
    let _ = child.wait();
    let text = String::from_utf8(got).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("fast | {}", i + 1));
    }
}

/// baseinit (not PID 1) with its stderr on a pipe the test holds but never
/// reads (`read_end` kept) or closes at once (`read_end` dropped).
fn start_with_stderr_pipe(tree: &Tree, keep_reading_end: bool) -> (std::process::Child, Option<std::os::fd::OwnedFd>) {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let child = Command::new(BIN)
        .args(tree.args(&[]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .expect("spawn");
    (child, keep_reading_end.then_some(reader))
}

/// Waits for `child` (our own) to exit, with a watchdog; its exit code.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("watchdog: baseinit still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_stderr_nobody_reads_never_stalls_pid_1() {
    let tree = Tree::new();
    tree.service("loud", r#"seq 1 50000 >&2; echo done > "$OUT/done"; exec sleep 60"#);
    tree.service("crashy", "exit 1");
    tree.service_file(
        "crashy",
        "service.toml",
        "[backoff]\ninitial = \"10ms\"\nmax = \"20ms\"\n",
        0o644,
    );
    let (mut child, _held) = start_with_stderr_pipe(&tree, true);
    // The pipe (64 KiB) is full long before `loud` is done: baseinit itself
    // must still answer and reap (crashy restarts all the while).
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(BIN)
        .args(["status", "--runtime-dir"])
        .arg(tree.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "status must answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("crashy"));
    // SIGTERM still stops it, and the exit is bounded though stderr stays blocked.
    let started = Instant::now();
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = wait_exit(&mut child, Duration::from_secs(20));
    eprintln!("exit with a blocked stderr took {:?}", started.elapsed());
    assert_eq!(code, 0);
}

#[test]
fn a_closed_stderr_never_kills_pid_1() {
    let tree = Tree::new();
    tree.service("crashy", "echo oops >&2; exit 1");
    tree.service_file(
        "crashy",
        "service.toml",
        "[backoff]\ninitial = \"10ms\"\nmax = \"20ms\"\n",
        0o644,
    );
    let (mut child, _) = start_with_stderr_pipe(&tree, false);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "baseinit died when its stderr closed"
    );
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), 0);
}

#[test]
fn restarts_never_merge_the_last_line_of_one_run_into_the_next() {
    require_namespaces!("restarts_never_merge_the_last_line_of_one_run_into_the_next");
    let tree = Tree::new();
    // Each run ends with a line that has no newline; restarts are immediate.
    tree.service("s", r#"printf 'L%s\npartial-%s' $$ $$"#);
    tree.service_file(
        "s",
        "service.toml",
        "max-restarts = 1000000\n[backoff]\nreset-after = \"1ns\"\n",
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    std::thread::sleep(Duration::from_millis(1500));
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.len() > 50,
        "only {} lines: restarts were not immediate",
        lines.len()
    );
    for line in lines {
        let text = line.strip_prefix("s | ").unwrap_or_else(|| panic!("{line:?}"));
        let ok = text.strip_prefix('L').or(text.strip_prefix("partial-"));
        assert!(
            ok.is_some_and(|pid| pid.parse::<u32>().is_ok()),
            "merged line: {line:?}"
        );
    }
}
