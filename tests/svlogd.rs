//! The `svlogd` applet beside Debian's `/usr/bin/svlogd`: the same input to
//! both, the same files out (the rotated files compared in order, their
//! names' timestamps and the lines' timestamps set aside), for each
//! option and `config` setting, and for the signals; where baseinit's
//! differs on purpose (a last line without a newline), the test says how.
//! Then bad input (directories it cannot use, a nonsense `config`, a line
//! longer than any buffer, a full disk), and a service whose `log/run` is
//! `exec svlogd -tt ./main` under baseinit, with no runit installed.
//!
//! Every svlogd is a child of the test, killed by its pid when a deadline
//! passes or the test ends.
// Tests are not PID 1: they wait for the children they start themselves, so
// the supervisor's waitpid rule (clippy.toml) does not apply here.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Baseinit, Capability, Mode, Tree, require, wait_for, write_file};
use nix::libc;

/// The longest a run of svlogd on the test's input may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Which svlogd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    /// `baseinit svlogd`.
    Ours,
    /// Debian's, from runit.
    Theirs,
}

/// True when Debian's svlogd is here (with runit's runsv and sv, the
/// harness's capability); else the loud skip, or the failure in CI.
fn have_runit(test: &str) -> bool {
    if !common::require(Capability::Runit, test) {
        return false;
    }
    assert!(
        common::which("svlogd").is_some(),
        "{test}: runit's runsv and sv are installed but not its svlogd"
    );
    true
}

/// A running svlogd, its stdin a pipe the test writes, its stderr a file.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

/// How a run ended.
#[derive(Debug)]
struct Ended {
    code: i32,
    stderr: String,
}

impl Running {
    fn start(which: Which, args: &[&str]) -> Running {
        let logs = tempfile::tempdir().expect("tempdir");
        let stderr = logs.path().join("stderr");
        let mut command = match which {
            Which::Ours => {
                let mut command = Command::new(BIN);
                command.arg("svlogd");
                command
            }
            Which::Theirs => Command::new("svlogd"),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn svlogd");
        Running {
            stdin: child.stdin.take(),
            child,
            stderr,
            _logs: logs,
        }
    }

    /// Writes `bytes` to svlogd's stdin; an svlogd that has exited (a fatal
    /// error) leaves them unread, for the test to find out how it ended.
    fn write(&mut self, bytes: &[u8]) {
        match self.stdin.as_mut().expect("stdin open").write_all(bytes) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write to svlogd: {e}"),
            _ => {}
        }
    }

    /// Writes `bytes` from a thread of its own (a write to a svlogd that
    /// pauses would block), which hands stdin back when done.
    fn write_in_background(&mut self, bytes: Vec<u8>) -> std::thread::JoinHandle<ChildStdin> {
        let mut stdin = self.stdin.take().expect("stdin open");
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
            stdin
        })
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill");
    }

    fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Closes stdin (unless `keep_stdin`) and waits for the exit; past the
    /// deadline the child is killed by its pid and the test fails.
    fn end(mut self, keep_stdin: bool) -> Ended {
        if !keep_stdin {
            drop(self.stdin.take());
        }
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                use std::os::unix::process::ExitStatusExt;
                return Ended {
                    code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                    stderr: self.stderr_so_far(),
                };
            }
            assert!(
                Instant::now() < until,
                "watchdog: svlogd still running after {DEADLINE:?}; stderr:\n{}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `svlogd ARGS DIR` on `input`, to its end.
fn feed(which: Which, args: &[&str], dir: &Path, input: &[u8]) -> Ended {
    let dir = dir.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&dir);
    let mut run = Running::start(which, &all);
    run.write(input);
    run.end(false)
}

/// A log directory's files: the rotated ones in the order of their names
/// (their kind, `.s` or `.u`, kept), then `current` and `lock`, each with
/// its mode and its content (timestamps of `stamps` checked and set aside).
fn snapshot(dir: &Path, stamps: Option<&str>) -> Vec<(String, u32, String)> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('@'))
        .collect();
    names.sort();
    names.push("current".into());
    names.push("lock".into());
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            let kind = if name.starts_with('@') {
                assert_eq!(name.len(), 27, "{name}");
                format!("@….{}", &name[26..])
            } else {
                name.clone()
            };
            (kind, mode, stamps.map_or(text.clone(), |flag| unstamped(&text, flag)))
        })
        .collect()
}

/// `text` without the timestamp of each line, which must be of `flag`'s
/// format (`-t`, `-tt`, `-ttt`).
fn unstamped(text: &str, flag: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let (stamp, rest) = line.split_at(26);
            let shape: String = stamp
                .chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect();
            let hex = stamp.len() == 26
                && stamp.starts_with("@4000")
                && stamp[1..25].chars().all(|c| c.is_ascii_hexdigit())
                && stamp.ends_with(' ');
            match flag {
                "-t" => assert!(hex, "not a TAI64N stamp: {line:?}"),
                "-tt" => assert_eq!(shape, "9999-99-99_99:99:99.99999 ", "{line:?}"),
                _ => assert_eq!(shape, "9999-99-99T99:99:99.99999 ", "{line:?}"),
            }
            rest
        })
        .collect()
}

/// Two log directories (ours, theirs), each with `config` when given.
fn two_dirs(config: Option<&str>) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let top = tempfile::Builder::new().prefix("baseinit-svlogd-").tempdir().unwrap();
    let (ours, theirs) = (top.path().join("ours"), top.path().join("theirs"));
    for dir in [&ours, &theirs] {
        fs::create_dir(dir).unwrap();
        if let Some(config) = config {
            fs::write(dir.join("config"), config).unwrap();
        }
    }
    (top, ours, theirs)
}

/// Both svlogds, with `args`, `config` and `input`: the same files, the
/// same exit status and, when `same_stderr`, the same standard error.
fn same_as_runit(args: &[&str], config: Option<&str>, input: &[u8], same_stderr: bool) -> Vec<(String, u32, String)> {
    let (_top, ours, theirs) = two_dirs(config);
    let mine = feed(Which::Ours, args, &ours, input);
    let runit = feed(Which::Theirs, args, &theirs, input);
    let stamps = args.iter().copied().find(|a| a.starts_with("-t"));
    let files = snapshot(&ours, stamps);
    assert_eq!(files, snapshot(&theirs, stamps), "svlogd {args:?}, config {config:?}");
    assert_eq!(
        (mine.code, runit.code),
        (0, 0),
        "ours:\n{}\nrunit's:\n{}",
        mine.stderr,
        runit.stderr
    );
    if same_stderr {
        assert_eq!(mine.stderr, runit.stderr);
    }
    files
}

/// `n` lines of varied text and length (at most 60 bytes).
fn lines(n: usize) -> Vec<u8> {
    let words = ["error", "info", "warning", "debug", "boring", "fatal"];
    let mut out = Vec::new();
    for i in 0..n {
        let word = words[i % words.len()];
        let filler = "x".repeat(i * 7 % 23);
        writeln!(out, "{word}: line {i} {filler}").unwrap();
    }
    out
}

/// The contents of a snapshot's files, concatenated.
fn all_text(files: &[(String, u32, String)]) -> String {
    files.iter().map(|(_, _, text)| text.as_str()).collect()
}

#[test]
fn plain_lines_land_in_current_as_runits() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let files = same_as_runit(&[], None, &lines(100), true);
    assert_eq!(all_text(&files), String::from_utf8(lines(100)).unwrap());
    assert_eq!(files[0].0, "current");
    assert_eq!(files[0].1, 0o744, "closed cleanly");
    assert_eq!(files[1].1, 0o600, "lock");
}

#[test]
fn every_timestamp_format_is_runits() {
    if !have_runit(common::function_name!()) {
        return;
    }
    for flag in ["-t", "-tt", "-ttt"] {
        same_as_runit(&[flag], None, &lines(50), true);
    }
}

#[test]
fn size_rotation_keeps_n_files_at_the_same_lines() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let files = same_as_runit(&["-tt"], Some("s2000\nn3\n"), &lines(400), true);
    assert_eq!(files.len(), 3 + 2, "3 rotated files, current and lock: {files:?}");
    for (kind, mode, _) in &files[..3] {
        assert_eq!((kind.as_str(), *mode), ("@….s", 0o744));
    }
    // -l sets how close to `s` a line ends for a rotation, too.
    let files = same_as_runit(&["-l", "100"], Some("s1500\nn0\n"), &lines(400), true);
    assert!(files.len() > 5, "{}", files.len());
}

#[test]
fn patterns_prefix_and_alerts_select_as_runits() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let config = "# everything but debug, boring errors and the filler\n-debug*\n-*boring*\n+boring: line 1*\n\
                  e*fatal*\nE*line 3*\ne*+x\npPFX| \n";
    let files = same_as_runit(&[], Some(config), &lines(200), true);
    let text = all_text(&files);
    assert!(text.contains("PFX| error: line 0 \n") && !text.contains("debug"));
    // -l limits what the patterns see: `*x` on the first 12 bytes, where
    // no line has its filler yet.
    let files = same_as_runit(&["-l", "12"], Some("-*x\n"), &lines(60), true);
    assert!(all_text(&files).contains("x\n"));
    // Alerts with timestamps, on a second directory with its own config.
    let (_top, ours, theirs) = two_dirs(Some("e*fatal*\n"));
    let input = lines(30);
    let mine = feed(Which::Ours, &["-tt"], &ours, &input);
    let runit = feed(Which::Theirs, &["-tt"], &theirs, &input);
    assert_eq!(unstamped(&mine.stderr, "-tt"), unstamped(&runit.stderr, "-tt"));
    assert_eq!(mine.stderr.lines().count(), 5);
}

#[test]
fn replacement_of_characters_is_runits() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let input = "tab\there\nbell\x07 del\x7f utf-8 é\nabc def\n".as_bytes();
    for args in [
        &["-r", ":"][..],
        &["-R", "ae"],
        &["-r_", "-R", " c"],
        &["-R", "a", "-r", "!"],
    ] {
        same_as_runit(args, None, input, true);
    }
}

#[test]
fn a_last_line_without_a_newline_is_kept_where_runit_drops_it() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let (_top, ours, theirs) = two_dirs(None);
    feed(Which::Ours, &[], &ours, b"one\ntwo\nthree");
    feed(Which::Theirs, &[], &theirs, b"one\ntwo\nthree");
    assert_eq!(fs::read_to_string(ours.join("current")).unwrap(), "one\ntwo\nthree\n");
    assert_eq!(
        fs::read_to_string(theirs.join("current")).unwrap(),
        "one\ntwo\n",
        "Debian's svlogd kept the line without a newline: baseinit's need not differ any more"
    );
}

/// Both svlogds running on their directories with `args`.
fn start_both(args: &[&str], ours: &Path, theirs: &Path) -> [Running; 2] {
    [(Which::Ours, ours), (Which::Theirs, theirs)].map(|(which, dir)| {
        let dir = dir.display().to_string();
        let mut all = args.to_vec();
        all.push(&dir);
        Running::start(which, &all)
    })
}

/// Waits until `dir/current` holds `text`, or a rotated file exists when
/// `text` is None.
fn wait_dir(dir: &Path, text: Option<&str>) {
    wait_for(&format!("{text:?} in {}", dir.display()), DEADLINE, || match text {
        Some(text) => fs::read_to_string(dir.join("current"))
            .ok()?
            .contains(text)
            .then_some(()),
        None => fs::read_dir(dir)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('@'))
            .then_some(()),
    });
}

#[test]
fn sigalrm_rotates_now_and_sighup_reads_the_config_again() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let (_top, ours, theirs) = two_dirs(None);
    let mut both = start_both(&["-v"], &ours, &theirs);
    for (run, dir) in both.iter_mut().zip([&ours, &theirs]) {
        run.write(b"before the alarm\n");
        wait_dir(dir, Some("before the alarm"));
        run.signal(libc::SIGALRM);
        wait_dir(dir, None);
        run.write(b"after the alarm\n");
        wait_dir(dir, Some("after the alarm"));
        fs::write(dir.join("config"), "pnew: \n").unwrap();
        run.signal(libc::SIGHUP);
        wait_for("the hangup seen", DEADLINE, || {
            run.stderr_so_far().contains("sighangup received.").then_some(())
        });
        run.write(b"after the hangup\n");
    }
    for run in both {
        assert_eq!(run.end(false).code, 0);
    }
    let files = snapshot(&ours, None);
    assert_eq!(files, snapshot(&theirs, None));
    assert_eq!(
        all_text(&files),
        "before the alarm\nafter the alarm\nnew: after the hangup\n"
    );
}

#[test]
fn age_rotation_comes_while_the_input_is_idle() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let (_top, ours, theirs) = two_dirs(Some("t2\n"));
    let both = start_both(&[], &ours, &theirs);
    for (mut run, dir) in both.into_iter().zip([&ours, &theirs]) {
        run.write(b"an old line\n");
        // Rotated within two seconds, with nothing more read.
        wait_dir(dir, None);
        run.write(b"a new line\n");
        wait_dir(dir, Some("a new line"));
        // Ended at once: left running while the other one has its turn,
        // it would rotate the new line too at its next tick.
        assert_eq!(run.end(false).code, 0);
    }
    let files = snapshot(&ours, None);
    assert_eq!(files, snapshot(&theirs, None));
    assert_eq!(files[0].2, "an old line\n");
}

#[test]
fn sigterm_writes_out_what_was_read_and_exits_0() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let (_top, ours, theirs) = two_dirs(Some("s3000\n"));
    let mut both = start_both(&["-tt"], &ours, &theirs);
    let input = lines(300);
    for (run, dir) in both.iter_mut().zip([&ours, &theirs]) {
        run.write(&input);
        wait_dir(dir, Some("line 299 "));
        run.signal(libc::SIGTERM);
    }
    // stdin stays open: the signal alone ends them.
    for run in both {
        assert_eq!(run.end(true).code, 0);
    }
    let files = snapshot(&ours, Some("-tt"));
    assert_eq!(files, snapshot(&theirs, Some("-tt")));
    assert_eq!(all_text(&files), String::from_utf8(input).unwrap());
}

#[test]
fn several_directories_each_take_the_lines_they_select() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let input = lines(120);
    let mut dirs = Vec::new();
    for which in ["ours", "theirs"] {
        let errors = top.path().join(which).join("errors");
        let rest = top.path().join(which).join("rest");
        for (dir, config) in [(&errors, "-*\n+error*\n+fatal*\n"), (&rest, "-error*\n-fatal*\n")] {
            fs::create_dir_all(dir).unwrap();
            fs::write(dir.join("config"), config).unwrap();
        }
        let mut run = Running::start(
            if which == "ours" { Which::Ours } else { Which::Theirs },
            &[&errors.display().to_string(), &rest.display().to_string()],
        );
        run.write(&input);
        assert_eq!(run.end(false).code, 0);
        dirs.push((errors, rest));
    }
    for (mine, theirs) in [(&dirs[0].0, &dirs[1].0), (&dirs[0].1, &dirs[1].1)] {
        assert_eq!(snapshot(mine, None), snapshot(theirs, None));
    }
    let errors = fs::read_to_string(dirs[0].0.join("current")).unwrap();
    assert_eq!(errors.lines().count(), 40);
}

#[test]
fn unusable_directories_are_warned_about_and_none_usable_is_fatal() {
    if !have_runit(common::function_name!()) {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let missing = top.path().join("missing");
    let locked_out = top.path().join("lock-is-a-directory");
    fs::create_dir_all(locked_out.join("lock")).unwrap();
    let good = top.path().join("good");
    fs::create_dir(&good).unwrap();
    for which in [Which::Ours, Which::Theirs] {
        let bad = [&missing, &locked_out].map(|p| p.display().to_string());
        let mut run = Running::start(which, &[&bad[0], &bad[1]]);
        run.write(b"lost\n");
        let ended = run.end(false);
        assert_eq!(ended.code, 111, "{which:?}: {}", ended.stderr);
        assert!(
            ended.stderr.contains("no functional log directories."),
            "{}",
            ended.stderr
        );
        assert!(ended.stderr.contains("missing"), "{}", ended.stderr);
    }
    // One usable of three: a warning for each other, and the lines written.
    let args = [&missing, &good, &locked_out].map(|p| p.display().to_string());
    let mut run = Running::start(Which::Ours, &[&args[0], &args[1], &args[2]]);
    run.write(b"kept\n");
    let ended = run.end(false);
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_eq!(fs::read_to_string(good.join("current")).unwrap(), "kept\n");
    let warnings: Vec<&str> = ended.stderr.lines().collect();
    assert_eq!(warnings.len(), 2, "{}", ended.stderr);
    assert!(
        warnings[0].starts_with(&format!(
            "svlogd: warning: {}: cannot open the log directory: ",
            missing.display()
        )),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("lock-is-a-directory: cannot open its lock file: Is a directory"),
        "{}",
        warnings[1]
    );
}

#[test]
fn one_directory_takes_one_svlogd_whichever_runs_first() {
    if !have_runit(common::function_name!()) {
        return;
    }
    for (first, second) in [(Which::Theirs, Which::Ours), (Which::Ours, Which::Theirs)] {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("main");
        fs::create_dir(&dir).unwrap();
        let path = dir.display().to_string();
        let mut holder = Running::start(first, &[&path]);
        holder.write(b"first\n");
        wait_dir(&dir, Some("first"));
        let mut late = Running::start(second, &[&path]);
        late.write(b"second\n");
        let ended = late.end(false);
        assert_eq!(ended.code, 111, "{second:?} after {first:?}: {}", ended.stderr);
        assert!(
            ended.stderr.contains("no functional log directories."),
            "{}",
            ended.stderr
        );
        assert_eq!(holder.end(false).code, 0);
        assert_eq!(fs::read_to_string(dir.join("current")).unwrap(), "first\n");
    }
}

#[test]
fn usage_errors_exit_111_as_runits() {
    if !have_runit(common::function_name!()) {
        return;
    }
    for args in [&[][..], &["-x", "d"], &["-r"], &["-r", "ab", "d"], &["-l", "2000", "d"]] {
        let mine = Running::start(Which::Ours, args).end(false);
        let runit = Running::start(Which::Theirs, args).end(false);
        assert_eq!((mine.code, runit.code), (111, 111), "{args:?}");
        let usage = |text: &str| text.replace("baseinit", "svlogd").replace(BIN, "svlogd");
        assert_eq!(usage(&mine.stderr), usage(&runit.stderr), "{args:?}");
    }
}

#[test]
fn a_nonsense_config_is_reported_by_line_and_logging_goes_on() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("main");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config"), "s 1000\nhello there\n!gzip\nU10.0.0.1:514\nn3\n").unwrap();
    let ended = feed(Which::Ours, &[], &dir, b"a line\n");
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_eq!(fs::read_to_string(dir.join("current")).unwrap(), "a line\n");
    let config = dir.join("config").display().to_string();
    let warnings: Vec<&str> = ended.stderr.lines().collect();
    assert_eq!(warnings.len(), 4, "{}", ended.stderr);
    for (warning, line) in warnings.iter().zip(1..) {
        assert!(
            warning.starts_with(&format!("svlogd: warning: {config}: line {line}: ")),
            "{warning}"
        );
    }
    assert!(warnings[0].contains("is not a size"), "{}", warnings[0]);
    assert!(warnings[2].contains("processor") && warnings[3].contains("UDP"));
}

#[test]
fn a_very_long_line_is_written_whole() {
    if !have_runit(common::function_name!()) {
        return;
    }
    // 3 MB in one line, between short ones: without rotation (s0), the
    // same bytes as runit's.
    let mut input = b"before\n".to_vec();
    input.extend((0..3_000_000).map(|i| b'a' + (i % 26) as u8));
    input.extend_from_slice(b"\nafter\n");
    let files = same_as_runit(&[], Some("s0\n"), &input, true);
    assert!(all_text(&files).as_bytes() == &input[..], "every byte, in order");
    // With the default 1,000,000 bytes: cut only where a file is full (the
    // line fits in none), every byte kept, in order.
    let (_top, ours, _) = two_dirs(None);
    assert_eq!(feed(Which::Ours, &[], &ours, &input).code, 0);
    let files = snapshot(&ours, None);
    assert!(all_text(&files).as_bytes() == &input[..], "every byte, in order");
    assert_eq!(files.len(), 2 + 2, "3 MB in 2 rotated files and current, and lock");
    assert!(files[0].2.starts_with("before\nabc"));
    for (_, _, text) in &files {
        // Cut at the end of the first piece (a buffer of 64 KiB) that
        // reaches the limit.
        assert!(text.len() < 1_000_000 + 64 * 1024, "{}", text.len());
    }
}

/// A 64 KiB tmpfs (root only), unmounted by its path on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path) -> SmallFs {
        fs::create_dir_all(at).unwrap();
        let mut mount = Command::new("mount");
        mount.args(["-t", "tmpfs", "-o", "size=64k", "baseinit-test"]).arg(at);
        assert_eq!(common::run(mount).code, 0, "mount a tmpfs");
        SmallFs(at.to_owned())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let mut umount = Command::new("umount");
        umount.arg("-l").arg(&self.0);
        let _ = common::try_run(umount, Duration::from_secs(10));
    }
}

#[test]
fn a_full_disk_deletes_old_files_down_to_n_and_else_pauses_until_sigterm() {
    require!(Capability::Root);
    let top = tempfile::tempdir().unwrap();
    let small = SmallFs::mount(&top.path().join("small"));
    let line = format!("{}\n", "y".repeat(99));
    // 8 kB files, at most 20 of them (more than fit in 64 kB), at least 2:
    // 100 kB of lines go through, the oldest files deleted to make room.
    let dir = small.0.join("deleting");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config"), "s8000\nn20\nN2\n").unwrap();
    let mut run = Running::start(Which::Ours, &[&dir.display().to_string()]);
    let mut input = line.repeat(1000).into_bytes();
    input.extend_from_slice(b"the last line\n");
    let writer = run.write_in_background(input);
    wait_dir(&dir, Some("the last line"));
    run.stdin = Some(writer.join().expect("the writer"));
    let ended = run.end(false);
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert!(
        ended.stderr.contains("out of disk space, delete: @"),
        "{}",
        ended.stderr
    );
    let rotated = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('@'));
    assert!(rotated.count() >= 2);
    fs::remove_dir_all(&dir).unwrap();
    // Without rotated files to delete (no rotation: s0), svlogd pauses
    // (3 s, then tries again) and SIGTERM ends it.
    let dir = small.0.join("pausing");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config"), "s0\n").unwrap();
    let mut run = Running::start(Which::Ours, &[&dir.display().to_string()]);
    let mut filler = fs::File::create(small.0.join("filler")).unwrap();
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    while filler.write_all(&[0u8; 1]).is_ok() {}
    // More than the page `current` may have room in; less than a pipe holds.
    run.write(line.repeat(60).as_bytes());
    wait_for("a pause", DEADLINE, || {
        run.stderr_so_far().contains("svlogd: pausing: ").then_some(())
    });
    let stderr = run.stderr_so_far();
    let pause = stderr.lines().find(|l| l.starts_with("svlogd: pausing: ")).unwrap();
    assert_eq!(
        pause,
        format!(
            "svlogd: pausing: {}/current: cannot write it: No space left on device",
            dir.display()
        )
    );
    run.signal(libc::SIGTERM);
    let ended = run.end(true);
    assert_eq!(ended.code, 111, "{}", ended.stderr);
    assert!(ended.stderr.contains("exiting on SIGTERM"), "{}", ended.stderr);
}

#[test]
fn a_service_logs_through_svlogd_under_baseinit_without_runit() {
    // `svlogd` on PATH is baseinit itself: no runit needed.
    let tree = Tree::new();
    let bin = tree.path().join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("svlogd")).unwrap();
    tree.service("web", "echo hello from web; echo and a second line; exec sleep 60");
    write_file(
        &tree.service_dir().join("web/log/run"),
        "#!/bin/sh\nexec svlogd -tt ./main\n",
        0o755,
    );
    fs::create_dir(tree.service_dir().join("web/log/main")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let init = Baseinit::start_with(Mode::Subreaper, &tree.args(&[]), |c| {
        c.env("PATH", &path);
    });
    let current = tree.service_dir().join("web/log/main/current");
    let text = wait_for("two lines in main/current", DEADLINE, || {
        let text = fs::read_to_string(&current).ok()?;
        (text.lines().count() >= 2).then_some(text)
    });
    assert_eq!(
        unstamped(&text, "-tt"),
        "hello from web\nand a second line\n",
        "stamped by -tt: {text:?}"
    );
    init.stop(DEADLINE);
    // The logger read to the end and closed `current` cleanly.
    let mode = fs::metadata(&current).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o744);
}
