//! `--syslog`: baseinit as PID 1 listens on a syslog socket and relays each
//! datagram as one line of its output; a live socket is left alone; a flood
//! with a slow stdout drops and counts, and PID 1 stays small and answers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Baseinit, Capability, Mode, Tree, require, wait_for};
use nix::libc;

const LONG: Duration = Duration::from_secs(60);
/// What one datagram may hold whole (src/syslog: MAX_DATAGRAM).
const MAX_DATAGRAM: usize = 64 * 1024;

/// True when `program` is in PATH; else a loud skip (a failure with
/// BASEINIT_REQUIRE_NAMESPACES=1, as in CI: util-linux's `logger` comes with
/// Debian's essential `bsdutils`, beside the `unshare` those tests need).
fn have(program: &str, test: &str) -> bool {
    if common::which(program).is_some() {
        return true;
    }
    if std::env::var("BASEINIT_REQUIRE_NAMESPACES").as_deref() == Ok("1") {
        panic!("{test}: needs {program} in PATH (BASEINIT_REQUIRE_NAMESPACES=1)");
    }
    eprintln!("\n*** SKIPPED {test}: needs {program} in PATH, which is missing ***\n");
    false
}

/// baseinit as PID 1 with `--syslog --syslog-socket TREE/log.sock` and
/// `extra`, its stdout a pipe read to the end by a thread: (baseinit, the
/// socket, the reader, how many lines it has read so far, and a flag that
/// makes it read slowly while set).
struct Relaying {
    init: Baseinit,
    socket: PathBuf,
    reader: std::thread::JoinHandle<Vec<u8>>,
    lines: Arc<AtomicUsize>,
    slow: Arc<AtomicBool>,
}

fn start(tree: &Tree, extra: &[&str]) -> Relaying {
    let socket = tree.path().join("log.sock");
    let mut args = vec!["--syslog", "--syslog-socket", socket.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let mut init = Baseinit::start_with(Mode::Pid1, &tree.args(&args), |c| {
        c.stdout(Stdio::piped());
    });
    let mut stdout = init.take_stdout().expect("a stdout pipe");
    let lines = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicBool::new(false));
    let reader = {
        let (lines, slow) = (lines.clone(), slow.clone());
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                // The slow reader: 4 KiB every 20 ms (200 kB/s) while asked
                // (this pause is the reader's pace, not a wait).
                let slow = slow.load(Ordering::Relaxed);
                if slow {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let want = if slow { 4096 } else { buf.len() };
                match stdout.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        lines.fetch_add(buf[..n].iter().filter(|b| **b == b'\n').count(), Ordering::Relaxed);
                    }
                }
            }
        })
    };
    common::wait_control_socket(tree, LONG);
    wait_for("the syslog socket", LONG, || {
        std::fs::symlink_metadata(&socket).is_ok().then_some(())
    });
    Relaying {
        init,
        socket,
        reader,
        lines,
        slow,
    }
}

impl Relaying {
    /// Stops baseinit (exit 0); its stdout and stderr.
    fn stop(self) -> (Vec<u8>, String) {
        let run = self.init.stop(LONG);
        (self.reader.join().expect("the reader"), run.stderr)
    }
}

/// The relay's `syslog` object in `status --json`.
fn syslog_status(tree: &Tree) -> serde_json::Value {
    tree.status().expect("status answers")["syslog"].clone()
}

/// Sends `datagram` to `socket`; a large one with a send buffer to match
/// (SO_SNDBUFFORCE as root; else the kernel's limit, then a smaller one).
/// The size sent.
fn send(socket: &Path, datagram: &[u8]) -> usize {
    let sender = UnixDatagram::unbound().expect("socket");
    if datagram.len() > 100_000 {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt(2) on a socket we own, with an int option.
        unsafe {
            libc::setsockopt(
                sender.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if sender.send_to(datagram, socket).is_err() {
            // Not root, or a kernel that refuses it: the most the default allows.
            let smaller = &datagram[..150_000];
            sender.send_to(smaller, socket).expect("send a large datagram");
            return smaller.len();
        }
        return datagram.len();
    }
    sender.send_to(datagram, socket).expect("send");
    datagram.len()
}

/// What each sender wrote, and the line it must become (text format).
fn odd_datagrams() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut big = b"<13>big: ".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    let mut big_line = b"syslog:big | ".to_vec();
    big_line.extend(std::iter::repeat_n(b'x', MAX_DATAGRAM - b"<13>big: ".len()));
    big_line.extend_from_slice(b" [message cut at 64 KiB]");
    vec![
        (
            b"<13>1 2026-12-06T10:07:38.873872+00:00 host app5424 4242 ID1 [x@1 a=\"]\"] \xEF\xBB\xBFfive".to_vec(),
            b"syslog:app5424 | five".to_vec(),
        ),
        (
            b"<30>Dec  6 10:07:38 myhost app3164[7]: three-one-six-four".to_vec(),
            b"syslog:app3164 | three-one-six-four".to_vec(),
        ),
        (b"no header at all".to_vec(), b"syslog | no header at all".to_vec()),
        (b"<13>bad: caf\xe9 \xff".to_vec(), b"syslog:bad | caf\xe9 \xff".to_vec()),
        (b"<13>nl: one\ntwo\n\0".to_vec(), b"syslog:nl | one\\ntwo".to_vec()),
        (big, big_line),
    ]
}

/// Every syslog line of `out`: the lines starting with `syslog`.
fn syslog_lines(out: &[u8]) -> Vec<&[u8]> {
    out.split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"syslog"))
        .collect()
}

#[test]
fn logger_and_raw_datagrams_each_become_one_line() {
    require!(Capability::Namespaces);
    if !have("logger", common::function_name!()) {
        return;
    }
    let tree = Tree::new();
    let socket = tree.path().join("log.sock");
    // The service waits for the socket (bound once the first services
    // started), logs with util-linux's logger in its three formats, says
    // it is done, and stays up.
    tree.service(
        "daemon",
        &format!(
            r#"S='{}'
while [ ! -S "$S" ]; do sleep 0.01; done
logger -u "$S" -t mytag hello
logger -u "$S" --rfc5424 -i -t five -p daemon.err "from rfc5424"
logger -u "$S" --rfc3164 -t host3164 "from rfc3164"
echo done > "$OUT/logged"
exec sleep 60"#,
            socket.display()
        ),
    );
    let relay = start(&tree, &[]);
    common::wait_text(&tree, "logged", "done", LONG);
    let mut expected: Vec<Vec<u8>> = vec![
        b"syslog:mytag | hello".to_vec(),
        b"syslog:five | from rfc5424".to_vec(),
        b"syslog:host3164 | from rfc3164".to_vec(),
    ];
    let mut sent = 3;
    for (datagram, line) in odd_datagrams() {
        let size = send(&relay.socket, &datagram);
        assert!(size == datagram.len() || size > MAX_DATAGRAM);
        expected.push(line);
        sent += 1;
    }
    wait_for("every datagram received", LONG, || {
        (syslog_status(&tree)["received"] == sent).then_some(())
    });
    let status = syslog_status(&tree);
    assert_eq!(status["dropped"], 0, "{status}");
    assert_eq!(status["listening"], true, "{status}");
    assert_eq!(status["socket"], socket.display().to_string(), "{status}");
    let table = tree.baseinit(&["status"]).stdout;
    assert!(
        table.contains(&format!("syslog: {}, {sent} received, 0 dropped", socket.display())),
        "{table}"
    );
    wait_for("every line on stdout", LONG, || {
        (relay.lines.load(Ordering::Relaxed) >= expected.len()).then_some(())
    });
    let (out, stderr) = relay.stop();
    let lines = syslog_lines(&out);
    for want in &expected {
        let found = lines.iter().filter(|l| **l == want.as_slice()).count();
        assert_eq!(
            found,
            1,
            "{:.200} found {found} times in:\n{:.3000}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(lines.len(), expected.len(), "{:.3000}", String::from_utf8_lossy(&out));
    assert!(!stderr.contains("WARN"), "{stderr}");
    // The socket goes with baseinit.
    assert!(std::fs::symlink_metadata(&socket).is_err(), "the socket is still there");
}

#[test]
fn json_lines_carry_facility_severity_tag_and_pid() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("idle", "exec sleep 60");
    let relay = start(&tree, &["--log-format", "json"]);
    let datagrams: Vec<Vec<u8>> = odd_datagrams().into_iter().map(|(d, _)| d).collect();
    for datagram in &datagrams {
        send(&relay.socket, datagram);
    }
    send(&relay.socket, b"<86>Dec  6 10:07:38 sshd[4711]: Accepted publickey");
    let sent = datagrams.len() + 1;
    wait_for("every line on stdout", LONG, || {
        (relay.lines.load(Ordering::Relaxed) >= sent).then_some(())
    });
    let (out, _) = relay.stop();
    let objects: Vec<serde_json::Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {:.300}", String::from_utf8_lossy(l))))
        .filter(|v: &serde_json::Value| v["service"].as_str().is_some_and(|s| s.starts_with("syslog")))
        .collect();
    assert_eq!(objects.len(), sent, "{objects:#?}");
    let by_service = |service: &str| -> &serde_json::Value {
        let found: Vec<_> = objects.iter().filter(|v| v["service"] == service).collect();
        assert_eq!(found.len(), 1, "{service}: {objects:#?}");
        found[0]
    };
    let sshd = by_service("syslog:sshd");
    assert_eq!(sshd["facility"], "authpriv");
    assert_eq!(sshd["severity"], "info");
    assert_eq!(sshd["level"], "info");
    assert_eq!(sshd["tag"], "sshd");
    assert_eq!(sshd["pid"], 4711);
    assert_eq!(sshd["stream"], "stdout");
    assert_eq!(sshd["message"], "Accepted publickey");
    assert!(sshd["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{sshd}");
    let five = by_service("syslog:app5424");
    assert_eq!((&five["pid"], &five["message"]), (&4242.into(), &"five".into()));
    let three = by_service("syslog:app3164");
    assert_eq!(
        (&three["facility"], &three["severity"]),
        (&"daemon".into(), &"info".into())
    );
    let bare = by_service("syslog");
    assert_eq!(
        (&bare["facility"], &bare["severity"]),
        (&"user".into(), &"notice".into())
    );
    assert_eq!(
        (&bare["tag"], &bare["pid"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    assert_eq!(by_service("syslog:bad")["message"], "caf\u{fffd} \u{fffd}");
    assert_eq!(by_service("syslog:nl")["message"], "one\\ntwo");
    let big = by_service("syslog:big")["message"].as_str().unwrap().to_owned();
    assert!(
        big.ends_with("x [message cut at 64 KiB]"),
        "{:.100}",
        &big[big.len() - 100..]
    );
}

#[test]
fn syslog_dir_keeps_the_messages_in_a_log_directory_too() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("idle", "exec sleep 60");
    let dir = tree.path().join("syslog");
    std::fs::create_dir(&dir).unwrap();
    let relay = start(&tree, &["--syslog-dir", dir.to_str().unwrap()]);
    send(&relay.socket, b"<78>Dec  6 10:07:38 CRON[42]: (root) CMD (date)");
    send(&relay.socket, b"no header at all");
    wait_for("both lines on stdout", LONG, || {
        (relay.lines.load(Ordering::Relaxed) >= 2).then_some(())
    });
    let (out, stderr) = relay.stop();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("syslog:CRON | (root) CMD (date)\n"), "{out}");
    let current = std::fs::read_to_string(dir.join("current")).unwrap();
    let lines: Vec<&str> = current
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_stamp, rest)| rest))
        .collect();
    assert_eq!(
        lines,
        ["cron.info CRON[42]: (root) CMD (date)", "user.notice no header at all"],
        "{current}\n{stderr}"
    );
}

#[test]
fn a_live_socket_of_another_program_is_left_alone() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("idle", "exec sleep 60");
    let socket = tree.path().join("log.sock");
    let other = UnixDatagram::bind(&socket).expect("bind");
    let relay = start(&tree, &[]);
    let status = syslog_status(&tree);
    assert_eq!(status["listening"], false, "{status}");
    // Still the other program's: what is sent there reaches it.
    send(&socket, b"<13>t: for the other daemon");
    let mut buf = [0u8; 128];
    other.set_read_timeout(Some(LONG)).expect("timeout");
    let n = other.recv(&mut buf).expect("the other program receives");
    assert_eq!(&buf[..n], b"<13>t: for the other daemon");
    let (out, stderr) = relay.stop();
    assert!(syslog_lines(&out).is_empty(), "{}", String::from_utf8_lossy(&out));
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("syslog")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("live socket"),
        "{stderr}"
    );
    assert!(
        std::fs::symlink_metadata(&socket).is_ok(),
        "the other program's socket was removed"
    );
}

#[test]
fn the_variables_turn_it_on() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("idle", "exec sleep 60");
    let socket = tree.path().join("env.sock");
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("BASEINIT_SYSLOG", "1").env("BASEINIT_SYSLOG_SOCKET", &socket);
    });
    common::wait_control_socket(&tree, LONG);
    wait_for("the syslog socket", LONG, || socket.exists().then_some(()));
    send(&socket, b"<13>envtag: on");
    wait_for("the line", LONG, || {
        init.stdout_so_far().contains("syslog:envtag | on\n").then_some(())
    });
    init.stop(LONG);
    // Off: no socket, no `syslog` in status.
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("BASEINIT_SYSLOG", "0").env("BASEINIT_SYSLOG_SOCKET", &socket);
    });
    // (The first run's control socket file may still be there: ask until
    // this one answers.)
    let snapshot = tree.wait_status("status to answer", LONG, |s| Some(s.clone()));
    assert!(snapshot.get("syslog").is_none(), "{snapshot}");
    assert!(!socket.exists());
    init.stop(LONG);
}

/// VmRSS of `pid`, kB.
fn rss_kb(pid: i32) -> u64 {
    common::footprint(pid).0
}

/// A `/proc/PID/status` figure of `pid` (`VmHWM`), kB.
fn status_kb(pid: i32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The highest VmRSS of `pid` from now until `stop` is set: sampled every
/// millisecond by a thread, and read from VmHWM, reset now (clear_refs 5)
/// when the kernel lets us, so that no peak between two samples is missed.
fn watch_peak(pid: i32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kb(pid));
            std::thread::sleep(Duration::from_millis(1));
        }
        let hwm = if reset { status_kb(pid, "VmHWM").unwrap_or(0) } else { 0 };
        peak.max(hwm)
    })
}

#[test]
fn a_flood_with_a_slow_stdout_drops_and_counts_and_pid1_stays_small() {
    require!(Capability::Namespaces);
    const MESSAGES: usize = 100_000;
    let tree = Tree::new();
    tree.service("idle", "exec sleep 120");
    let relay = start(&tree, &[]);
    let pid = relay.init.pid();
    // Warm up: a few lines through the whole path, then idle.
    for i in 0..10 {
        send(&relay.socket, format!("<14>warm: {i}").as_bytes());
    }
    wait_for("the warm-up lines", LONG, || {
        (relay.lines.load(Ordering::Relaxed) >= 10).then_some(())
    });
    // Let the writer's last batch go (its buffers are freed once written).
    wait_for("the relay idle", LONG, || {
        (syslog_status(&tree)["received"] == 10).then_some(())
    });
    let idle = rss_kb(pid);
    let watched = Arc::new(AtomicBool::new(false));
    let watcher = watch_peak(pid, watched.clone());

    // The flood: a sender at full speed (blocking sends: a datagram the
    // kernel refuses is the sender's error, counted here), while stdout is
    // read at 200 kB/s.
    relay.slow.store(true, Ordering::Relaxed);
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (socket, done) = (relay.socket.clone(), done.clone());
        std::thread::spawn(move || {
            let sender = UnixDatagram::unbound().expect("socket");
            sender.connect(&socket).expect("connect");
            let (mut sent, mut refused) = (0usize, 0usize);
            let started = Instant::now();
            for i in 0..MESSAGES {
                let datagram = format!("<14>Dec  6 10:07:38 flood[1]: message {i:06} of the flood");
                match sender.send(datagram.as_bytes()) {
                    Ok(_) => sent += 1,
                    Err(_) => refused += 1,
                }
            }
            done.store(true, Ordering::Relaxed);
            (sent, refused, started.elapsed())
        })
    };
    // PID 1 answers during the flood.
    let mut answered = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let out = tree.baseinit(&["status"]);
        assert_eq!(out.code, 0, "status must answer during the flood: {}", out.stderr);
        answered.push(asked.elapsed());
    }
    let (sent, refused, took) = sender.join().expect("the sender");
    assert_eq!(sent + refused, MESSAGES);
    // Every datagram the kernel took is read (the slow stdout notwithstanding).
    let status = wait_for("every datagram read", LONG, || {
        let status = syslog_status(&tree);
        (status["received"] == sent + 10).then_some(status)
    });
    let dropped = status["dropped"].as_u64().expect("dropped") as usize;
    assert!(dropped > 0, "nothing dropped with a slow stdout: {status}");
    // The drops are reported in the log, in all.
    let reported = wait_for("the drops reported", LONG, || {
        let stderr = relay.init.stderr_so_far();
        let n: usize = stderr
            .lines()
            .filter_map(|l| l.split("syslog: ").nth(1)?.split(' ').next()?.parse::<usize>().ok())
            .sum();
        (n == dropped).then_some(stderr)
    });
    assert!(reported.contains("dropped (output too slow)"), "{reported}");
    // Read fast again: every message not dropped arrives, once, in order.
    relay.slow.store(false, Ordering::Relaxed);
    let relayed = sent - dropped;
    wait_for("every relayed line on stdout", LONG, || {
        (relay.lines.load(Ordering::Relaxed) >= 10 + relayed).then_some(())
    });
    watched.store(true, Ordering::Relaxed);
    let peak = watcher.join().expect("the RSS watcher");
    let after = rss_kb(pid);
    let (out, _) = relay.stop();
    let numbers: Vec<usize> = syslog_lines(&out)
        .into_iter()
        .filter_map(|l| l.strip_prefix(b"syslog:flood | message "))
        .map(|rest| {
            std::str::from_utf8(&rest[..6])
                .expect("digits")
                .parse()
                .expect("a number")
        })
        .collect();
    assert_eq!(numbers.len(), relayed);
    assert!(numbers.is_sorted_by(|a, b| a < b), "a message repeated or out of order");
    let slowest = answered.iter().max().copied().unwrap_or_default();
    eprintln!(
        "syslog flood: {sent} sent ({refused} refused) in {took:?}, {dropped} dropped, {relayed} relayed; \
         VmRSS idle {idle} kB, peak {peak} kB (+{} kB), after {after} kB; status answered {} times, slowest {slowest:?}",
        peak - idle,
        answered.len()
    );
    assert!(peak <= idle + 2048, "PID 1 grew from {idle} kB to {peak} kB");
    assert!(!answered.is_empty());
}

#[test]
fn a_syslog_daemon_that_takes_the_path_over_keeps_it() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("idle", "exec sleep 60");
    let relay = start(&tree, &[]);
    assert_eq!(syslog_status(&tree)["listening"], true);
    // As rsyslog and syslog-ng do at their start: remove the file, bind anew.
    std::fs::remove_file(&relay.socket).expect("remove");
    let daemon = UnixDatagram::bind(&relay.socket).expect("bind");
    let status = syslog_status(&tree);
    assert_eq!(status["listening"], false, "{status}");
    let socket = relay.socket.clone();
    relay.stop();
    // baseinit removed nothing of the daemon's at its exit.
    send(&socket, b"<13>t: still the daemon's");
    let mut buf = [0u8; 64];
    daemon.set_read_timeout(Some(LONG)).expect("timeout");
    let n = daemon.recv(&mut buf).expect("the daemon receives");
    assert_eq!(&buf[..n], b"<13>t: still the daemon's");
}
