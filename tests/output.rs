//! Services' output through baseinit: whole lines, prefixed, never torn or
//! lost, flushed at exit, as JSON on demand.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Baseinit, Capability, Mode, Tree, require, wait_for, wait_lines};
use nix::libc;

const LONG: Duration = Duration::from_secs(60);
/// The watchdog of a wait for tens of MB of service lines (seconds here,
/// in a debug build).
const FLOOD: Duration = Duration::from_secs(120);

#[test]
fn concurrent_long_lines_are_never_torn_and_keep_their_order() {
    require!(Capability::Namespaces);
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
    let run = init.stop(LONG);
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
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("burst", r#"seq 1 100000; echo done > "$OUT/done"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "done", 1, LONG);
    let run = init.stop(LONG);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 100_000, "every line of the burst");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("burst | {}", i + 1));
    }
}

#[test]
fn last_lines_overlong_lines_stderr_and_inherit() {
    require!(Capability::Namespaces);
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
    run.assert_stderr_contains("long (stderr) | err-line\n");
}

#[test]
fn json_output_parses_back() {
    require!(Capability::Namespaces);
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
    let mut init = Baseinit::start_with(Mode::Subreaper, &tree.args(&[]), |c| {
        c.stdout(Stdio::piped());
    });
    let mut stdout = init.take_stdout().expect("a stdout pipe");
    // Read on a thread of its own (a read can block), to the end, so the
    // wait below keeps its watchdog; `lines` says how far it got.
    let lines = Arc::new(AtomicUsize::new(0));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                // Slow at first: the service must wait for us, not drop
                // lines. (This pause is the slow reader, not a wait.)
                if got.len() < 64 * 1024 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                lines.store(got.iter().filter(|b| **b == b'\n').count(), Ordering::Relaxed);
            }
        })
    };
    wait_for("20000 lines on stdout", LONG, || {
        (lines.load(Ordering::Relaxed) >= 20000).then_some(())
    });
    init.signal(libc::SIGTERM);
    init.wait(LONG);
    // baseinit is gone: the read ends.
    let got = reader.join().expect("the reader");
    let text = String::from_utf8(got).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("fast | {}", i + 1));
    }
}

/// baseinit (not PID 1) with its stderr on a pipe the test holds but never
/// reads (its read end returned) or closes at once (`keep_reading_end`
/// false).
fn start_with_stderr_pipe(tree: &Tree, keep_reading_end: bool) -> (Baseinit, Option<OwnedFd>) {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let init = Baseinit::start_with(Mode::Subreaper, &tree.args(&[]), |c| {
        c.stderr(Stdio::from(writer));
    });
    (init, keep_reading_end.then_some(reader))
}

/// How many bytes wait in the pipe whose read end is `pipe`, and how many
/// it holds at most.
fn pipe_fill(pipe: &OwnedFd) -> (usize, usize) {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through the pointer; F_GETPIPE_SZ
    // only reads. Both on an fd we own.
    let (rc, size) = unsafe {
        (
            libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut queued),
            libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ),
        )
    };
    assert!(rc == 0 && size > 0, "FIONREAD / F_GETPIPE_SZ failed");
    (queued as usize, size as usize)
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
    let (init, held) = start_with_stderr_pipe(&tree, true);
    let held = held.expect("the read end");
    // The pipe (64 KiB) is full long before `loud` is done: baseinit itself
    // must still answer and reap (crashy restarts all the while). Full: no
    // room for one more atomic write.
    wait_for("baseinit's stderr pipe to be full", LONG, || {
        let (queued, size) = pipe_fill(&held);
        (queued + libc::PIPE_BUF > size).then_some(())
    });
    let out = tree.baseinit(&["status"]);
    assert_eq!(out.code, 0, "status must answer: {}", out.stderr);
    assert!(out.stdout.contains("crashy"));
    // SIGTERM still stops it, and the exit is bounded though stderr stays blocked.
    let started = Instant::now();
    init.stop(Duration::from_secs(20));
    eprintln!("exit with a blocked stderr took {:?}", started.elapsed());
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
    let (mut init, _) = start_with_stderr_pipe(&tree, false);
    // Ten restarts: ten runs' `oops` and baseinit's lines about them went
    // to the closed stderr.
    tree.wait_status("ten restarts of crashy", LONG, |s| {
        let restarts = common::service_in(s, "crashy")?["restarts"].as_u64()?;
        (restarts >= 10).then_some(())
    });
    assert!(init.is_running(), "baseinit died when its stderr closed");
    init.stop(Duration::from_secs(20));
}

#[test]
fn restarts_never_merge_the_last_line_of_one_run_into_the_next() {
    require!(Capability::Namespaces);
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
    // Immediate restarts: more than 50 lines within 1.5 s of the start...
    let deadline = Instant::now() + Duration::from_millis(1500);
    wait_for("more than 50 lines", LONG, || {
        (init.stdout_so_far().lines().count() > 50).then_some(())
    });
    assert!(Instant::now() <= deadline, "restarts were not immediate");
    // ...and many seams between two runs to check: 300 restarts.
    tree.wait_status("300 restarts", LONG, |s| {
        let restarts = common::service_in(s, "s")?["restarts"].as_u64()?;
        (restarts >= 300).then_some(())
    });
    let run = init.stop(LONG);
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

/// Reads `pipe` to its end on a thread of its own (a read can block, and the
/// test's waits must keep their watchdogs); the counter says how many lines
/// have arrived so far.
fn read_to_end(mut pipe: impl Read + Send + 'static) -> (std::thread::JoinHandle<Vec<u8>>, Arc<AtomicUsize>) {
    let lines = Arc::new(AtomicUsize::new(0));
    let counter = lines.clone();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => {
                    let chunk = &buf[..n];
                    got.extend_from_slice(chunk);
                    counter.fetch_add(chunk.iter().filter(|b| **b == b'\n').count(), Ordering::Relaxed);
                }
            }
        }
    });
    (reader, lines)
}

/// The lines of `out`, which must end with a newline (no line torn off at
/// the end).
fn lines_of(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = out.strip_suffix(b"\n").unwrap_or_else(|| {
        assert!(out.is_empty(), "the output ends inside a line");
        out
    });
    body.split(|b| *b == b'\n').filter(move |_| !body.is_empty())
}

#[test]
fn ten_services_writing_100000_lines_each_arrive_whole_and_once() {
    require!(Capability::Namespaces);
    const SERVICES: usize = 10;
    const LINES: usize = 100_000;
    const PAD: &str = "abcdefghijklmnopqrstuvwx";
    let tree = Tree::new();
    // Ten services, 42-byte numbered lines, all released at once (a gate
    // file) and written by awk at full speed: 42 MB in all.
    for k in 0..SERVICES {
        tree.service(
            &format!("svc{k}"),
            &format!(
                r#"echo ready >> "$OUT/ready"
while [ ! -e "$OUT/go" ]; do sleep 0.01; done
awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) printf "svc{k} line %06d {PAD}\n", i }}'
exec sleep 60"#
            ),
        );
    }
    let mut init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.stdout(Stdio::piped());
    });
    let (reader, arrived) = read_to_end(init.take_stdout().expect("a stdout pipe"));
    wait_lines(&tree, "ready", SERVICES, LONG);
    common::write_file(&tree.out("go"), "", 0o644);
    wait_for("every service's lines on stdout", FLOOD, || {
        (arrived.load(Ordering::Relaxed) >= SERVICES * LINES).then_some(())
    });
    init.stop(LONG);
    // baseinit and its namespace are gone: the read ends.
    let out = reader.join().expect("the reader");
    let mut next = [0usize; SERVICES];
    let mut total = 0;
    for line in lines_of(&out) {
        let k = line
            .strip_prefix(b"svc")
            .and_then(|rest| rest.first())
            .filter(|d| d.is_ascii_digit())
            .map(|d| usize::from(d - b'0'))
            .unwrap_or_else(|| panic!("not a service line: {:.100}", String::from_utf8_lossy(line)));
        next[k] += 1;
        let want = format!("svc{k} | svc{k} line {:06} {PAD}", next[k]);
        assert!(
            line == want.as_bytes(),
            "svc{k}: line {} torn, lost, repeated or out of order: got {:.100}",
            next[k],
            String::from_utf8_lossy(line)
        );
        total += 1;
    }
    assert_eq!(next, [LINES; SERVICES], "lines per service");
    assert_eq!(total, SERVICES * LINES);
}

/// baseinit writes whole batches while it is its stdout's only writer, and
/// lines of at most PIPE_BUF once a process shares it: a main command that
/// writes its own lines straight to the pipe, one write each (as a program
/// must for its lines to stay whole beside any other writer), while a
/// service floods through baseinit, never lands inside one of baseinit's
/// lines, nor they in its.
#[test]
fn a_main_command_writing_to_the_same_stdout_never_tears_relayed_lines() {
    require!(Capability::Namespaces);
    const LINES: usize = 20_000;
    let tree = Tree::new();
    let pad = "p".repeat(300);
    tree.service(
        "svc",
        &format!(
            r#"echo ready >> "$OUT/ready"
while [ ! -e "$OUT/go" ]; do sleep 0.01; done
awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) printf "svc line %06d {pad}\n", i }}'
exec sleep 60"#
        ),
    );
    let main = tree.script(&format!(
        r#"echo ready >> "$OUT/ready"
while [ ! -e "$OUT/go" ]; do sleep 0.01; done
awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) {{ printf "main line %06d {pad}\n", i; fflush() }} }}'
while [ ! -e "$OUT/end" ]; do sleep 0.01; done"#
    ));
    common::write_file(&tree.out("main"), &main, 0o755);
    let main_path = tree.out("main").display().to_string();
    let mut init = Baseinit::start_with(Mode::Pid1, &tree.args(&["--", &main_path]), |c| {
        c.stdout(Stdio::piped());
    });
    let (reader, arrived) = read_to_end(init.take_stdout().expect("a stdout pipe"));
    wait_lines(&tree, "ready", 2, LONG);
    common::write_file(&tree.out("go"), "", 0o644);
    wait_for("both floods on stdout", FLOOD, || {
        (arrived.load(Ordering::Relaxed) >= 2 * LINES).then_some(())
    });
    // The main command ends, and the container with it.
    common::write_file(&tree.out("end"), "", 0o644);
    let run = init.wait(LONG);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = reader.join().expect("the reader");
    let (mut svc, mut main) = (0, 0);
    for line in lines_of(&out) {
        let line = String::from_utf8_lossy(line);
        if let Some(rest) = line.strip_prefix("svc | svc line ") {
            svc += 1;
            assert_eq!(rest, format!("{svc:06} {pad}"), "a relayed line torn or out of order");
        } else if let Some(rest) = line.strip_prefix("main line ") {
            main += 1;
            assert_eq!(
                rest,
                format!("{main:06} {pad}"),
                "a main command line torn or out of order"
            );
        } else {
            panic!("a torn line: {line:.120}");
        }
    }
    assert_eq!((svc, main), (LINES, LINES));
}

/// The host pid of a live process under `root`, at any depth, whose command
/// line starts with `program` and a space.
fn descendant(root: i32, program: &str) -> Option<i32> {
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for (child, state) in common::children_of(pid) {
            if state != 'Z' && common::cmdline(child).starts_with(&format!("{program} ")) {
                return Some(child);
            }
            todo.push(child);
        }
    }
    None
}

/// True when `pid` is inside write(2) (or writev), as a writer blocked on a
/// full pipe is.
fn in_write(pid: i32) -> bool {
    let Ok(syscall) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let number: Option<libc::c_long> = syscall.split_whitespace().next().and_then(|n| n.parse().ok());
    number.is_some_and(|n| n == libc::SYS_write || n == libc::SYS_writev)
}

#[test]
fn a_blocked_stdout_loses_nothing_and_pid1_still_answers_and_stops() {
    require!(Capability::Namespaces);
    // 250,000 lines of 80 bytes: 20 MB, far more than the pipes and any
    // bounded relay hold.
    const TOTAL: usize = 250_000;
    const PAD: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // How long the test reads nothing.
    const PAUSE: Duration = Duration::from_secs(5);
    let tree = Tree::new();
    // awk says how many lines it has handed to write(2), every 1000 lines.
    tree.service(
        "big",
        &format!(
            r#"awk -v p="$OUT/progress" 'BEGIN {{
  for (i = 1; i <= {TOTAL}; i++) {{
    printf "big line %07d {PAD}\n", i
    if (i % 1000 == 0) {{ fflush(); print i > p; close(p) }}
  }}
}}'
echo done > "$OUT/done"
exec sleep 60"#
        ),
    );
    let mut init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.stdout(Stdio::piped());
    });
    // Not read (yet): the test holds the read end.
    let stdout = init.take_stdout().expect("a stdout pipe");
    let progress = || tree.read("progress").trim().parse::<usize>().ok();
    let done = || tree.out("done").exists();
    // Blocked: awk sits in write(2) and its count of lines written has
    // stopped (the same over ten polls in a row), below the total. (Not
    // "baseinit's stdout pipe is full" by FIONREAD: a relay writing odd-sized
    // batches fills the pipe's page slots with fewer bytes.)
    let pid = init.pid();
    let (mut last, mut same) = (None, 0);
    let (awk, stuck_at) = wait_for("the service to block on its writes", LONG, || {
        // A relay that drops lines instead of holding them back lets the
        // service run to its end: fail at once.
        assert!(
            !done(),
            "the service wrote all its lines while nobody read baseinit's stdout"
        );
        let awk = descendant(pid, "awk")?;
        let now = progress()?;
        let blocked = in_write(awk) && now < TOTAL;
        same = if blocked && last == Some(now) { same + 1 } else { 0 };
        last = Some(now);
        (same >= 10).then_some((awk, now))
    });
    let paused = Instant::now();

    // PID 1 answers while its stdout is blocked.
    common::wait_control_socket(&tree, LONG);
    let runtime = tree.runtime_dir();
    let status = tree.baseinit(&["status", "--runtime-dir", runtime.to_str().expect("a UTF-8 path")]);
    assert_eq!(status.code, 0, "status must answer: {}", status.stderr);
    assert!(status.stdout.contains("(PID 1, running)"), "{}", status.stdout);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("big ") && l.contains(" run ")),
        "{}",
        status.stdout
    );

    // The rest of the pause (the stopped reader, not a wait): the service
    // is still blocked at its end, no further than before.
    std::thread::sleep(PAUSE.saturating_sub(paused.elapsed()));
    assert!(in_write(awk), "the service is no longer blocked in write(2)");
    assert!(!done(), "the service finished while nobody read baseinit's stdout");
    assert_eq!(progress(), Some(stuck_at), "the service wrote on while nobody read");

    // Reading resumes: every line arrives, whole, once, in order.
    let (reader, arrived) = read_to_end(stdout);
    wait_for("every line on stdout", FLOOD, || {
        (arrived.load(Ordering::Relaxed) >= TOTAL).then_some(())
    });
    common::wait_text(&tree, "done", "done", LONG);
    // SIGTERM: an exit with code 0 (within the stop's budget; the watchdog
    // is far beyond it).
    init.stop(LONG);
    let out = reader.join().expect("the reader");
    let mut count = 0;
    for line in lines_of(&out) {
        count += 1;
        let want = format!("big | big line {count:07} {PAD}");
        assert!(
            line == want.as_bytes(),
            "line {count} torn, lost, repeated or out of order: got {:.120}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(count, TOTAL);
}

/// One service flooding its output does not starve another's lines: each
/// of `tick`'s lines is written only once the test has seen the one before
/// (a handshake through files), and between two of them the flood gets
/// through a bounded share, far below the whole flood. A relay serving the
/// flood first would let nothing of `tick` through until the flood is over.
#[test]
fn a_flooding_service_does_not_starve_another() {
    require!(Capability::Namespaces);
    const FLOOD_BYTES: usize = 40 << 20;
    const TICKS: usize = 10;
    let tree = Tree::new();
    tree.service(
        "flood",
        &format!(
            r#"while [ ! -e "$OUT/go" ]; do sleep 0.01; done
yes 'flood flood flood flood flood flood flood flood flood flood flood flood flo' | head -c {FLOOD_BYTES}
echo flood done
exec sleep 60"#
        ),
    );
    tree.service(
        "tick",
        &format!(
            r#"while [ ! -e "$OUT/go" ]; do sleep 0.01; done
i=1
while [ $i -le {TICKS} ]; do
    echo "tick $i"
    while [ ! -e "$OUT/ack.$i" ]; do sleep 0.005; done
    i=$((i + 1))
done
exec sleep 60"#
        ),
    );
    let mut init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.stdout(Stdio::piped());
    });
    let mut stdout = init.take_stdout().expect("a stdout pipe");
    common::write_file(&tree.out("go"), "", 0o644);
    // Read slowly (the flood then lasts seconds), acknowledging each tick
    // and counting the flood's bytes between two ticks.
    let deadline = Instant::now() + FLOOD;
    let (mut buf, mut pending) = (vec![0u8; 64 * 1024], Vec::new());
    let (mut ticks, mut flood_since_tick, mut most_between, mut flood_done) = (0, 0usize, 0usize, false);
    while ticks < TICKS && Instant::now() < deadline {
        let n = stdout.read(&mut buf).expect("read baseinit's stdout");
        assert!(n > 0, "baseinit's stdout ended early");
        pending.extend_from_slice(&buf[..n]);
        let complete = pending.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in pending[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if line.starts_with(b"tick | tick ") {
                ticks += 1;
                assert!(
                    !flood_done || ticks > 1,
                    "the first tick came only after the whole flood"
                );
                most_between = most_between.max(flood_since_tick);
                flood_since_tick = 0;
                common::write_file(&tree.out(&format!("ack.{ticks}")), "", 0o644);
            } else if line == b"flood | flood done" {
                flood_done = true;
            } else {
                flood_since_tick += line.len() + 1;
            }
        }
        pending.drain(..complete);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(ticks, TICKS, "every tick arrived");
    assert!(
        !flood_done,
        "the flood ended before the ticks did: make it longer, it proves nothing"
    );
    // Between two ticks: the handshake's poll plus what baseinit holds (a
    // few batches) and the pipes; far below the flood (40 MB).
    assert!(
        most_between < 8 << 20,
        "{most_between} bytes of the flood between two ticks"
    );
    drop(stdout);
    init.stop(LONG);
}
