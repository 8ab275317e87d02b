//! Scheduled services (`schedule` in service.toml) with the real binary as
//! PID 1: runs at their seconds with the container environment, no overlap
//! (skipped, or queued back to back), a stop during a run, `sv once`,
//! `baseinit check`'s positions, and the status fields.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::{Baseinit, Capability, Mode, Sv, Tree, require, wait_for, wait_lines};

const LONG: Duration = Duration::from_secs(30);

/// A job's `run`: `body` between a `start` line and an `end` line in
/// `$OUT/NAME`, each with `date +%s.%N`.
fn job(tree: &Tree, name: &str, toml: &str, body: &str) {
    tree.service(
        name,
        &format!(
            "echo \"start $(date +%s.%N) ${{GREETING:-unset}}\" >> \"$OUT/{name}\"\n{body}\necho \"end $(date +%s.%N)\" >> \"$OUT/{name}\""
        ),
    );
    tree.service_file(name, "service.toml", toml, 0o644);
}

/// The (start, end) times of the runs recorded in `$OUT/NAME`; the end is
/// None for a run that goes on.
fn runs(tree: &Tree, name: &str) -> Vec<(f64, Option<f64>)> {
    let mut out: Vec<(f64, Option<f64>)> = Vec::new();
    for line in tree.read(name).lines() {
        let mut words = line.split_whitespace();
        let (Some(what), Some(Ok(at))) = (words.next(), words.next().map(str::parse::<f64>)) else {
            continue;
        };
        match what {
            "start" => out.push((at, None)),
            _ => {
                if let Some(last) = out.last_mut() {
                    last.1 = Some(at);
                }
            }
        }
    }
    out
}

/// How far `t` is from the nearest even second.
fn off_the_even_second(t: f64) -> f64 {
    t - 2.0 * (t / 2.0).round()
}

#[test]
fn a_job_every_two_seconds_runs_on_its_seconds_with_the_container_environment() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    job(&tree, "tick", "schedule = \"*/2 * * * * *\"\n", "");
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("GREETING", "from-docker-run");
    });
    let text = wait_lines(&tree, "tick", 8, LONG);
    let runs = runs(&tree, "tick");
    let offsets: Vec<f64> = runs.iter().map(|(start, _)| off_the_even_second(*start)).collect();
    let worst = offsets.iter().fold(0.0f64, |w, o| w.max(o.abs()));
    eprintln!(
        "scheduled starts vs their even seconds, ms: {:?} (worst {:.1})",
        offsets
            .iter()
            .map(|o| (o * 1000.0 * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        worst * 1000.0
    );
    // The issue wishes ±100 ms; a loaded CI machine is given ±500 ms.
    assert!(worst < 0.5, "a run far from its second: {offsets:?}\n{text}");
    for pair in runs.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!((1.5..2.5).contains(&gap), "runs {gap:.3} s apart, not 2:\n{text}");
    }
    assert!(
        text.lines()
            .filter(|l| l.starts_with("start"))
            .all(|l| l.ends_with(" from-docker-run")),
        "the container's environment in every run:\n{text}"
    );
    let done = init.stop(LONG);
    assert!(
        !done.stderr.contains("restarting"),
        "a job is never restarted:\n{}",
        done.stderr
    );
    // baseinit's own part: its log's time of each spawn (`2026-…T11:12:00.003005Z
    // INFO service tick: started`); seconds of the day have the epoch's parity.
    let spawned: Vec<f64> = done
        .stderr
        .lines()
        .filter(|l| l.contains("service tick: started (pid"))
        .filter_map(|l| {
            let clock = l.get(11..26)?;
            let mut parts = clock.split(':').map(str::parse::<f64>);
            let (h, m, s) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
            Some(off_the_even_second(h * 3600.0 + m * 60.0 + s))
        })
        .collect();
    assert!(spawned.len() >= 4, "{}", done.stderr);
    eprintln!(
        "baseinit's spawns vs their even seconds, ms: {:?}",
        spawned
            .iter()
            .map(|o| (o * 1000.0 * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    assert!(spawned.iter().all(|o| o.abs() < 0.5), "{spawned:?}");
}

#[test]
fn a_run_longer_than_the_interval_is_never_overlapped_and_the_skip_is_logged() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    job(&tree, "slow", "schedule = \"*/2 * * * * *\"\n", "sleep 3");
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    // Three whole runs: each outlasts the next time, which is skipped.
    wait_for("three runs of slow", LONG, || {
        (runs(&tree, "slow").iter().filter(|(_, end)| end.is_some()).count() >= 3).then_some(())
    });
    let runs = runs(&tree, "slow");
    for pair in runs.windows(2) {
        let (end, next) = (pair[0].1.expect("ended"), pair[1].0);
        assert!(
            next >= end,
            "a run started at {next} before the last ended at {end}: {runs:?}"
        );
        // skip: the next run is the first even second after the end.
        assert!(next - end < 2.5, "{runs:?}");
    }
    let skipped = tree.wait_status("a skip in status", LONG, |s| {
        let skipped = common::service_in(s, "slow")?["schedule"]["skipped"].as_u64()?;
        (skipped >= 2).then_some(skipped)
    });
    let done = init.stop(LONG);
    done.assert_stderr_contains("service slow: still running at ");
    done.assert_stderr_contains("this run is skipped (overlap = \"skip\")");
    eprintln!("slow: {} runs, {skipped} skipped", runs.len());
}

#[test]
fn with_overlap_queue_a_run_waits_and_runs_right_after_the_last() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    job(
        &tree,
        "queued",
        "schedule = \"*/2 * * * * *\"\noverlap = \"queue\"\n",
        "sleep 3",
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_for("three runs of queued", LONG, || {
        (runs(&tree, "queued").len() >= 3 && runs(&tree, "queued")[1].1.is_some()).then_some(())
    });
    let runs = runs(&tree, "queued");
    for pair in runs.windows(2) {
        let Some(end) = pair[0].1 else { continue };
        let next = pair[1].0;
        assert!(next >= end, "overlap: {runs:?}");
        // Back to back: the queued run starts when the last one ends, not
        // at the next even second.
        assert!(
            next - end < 0.5,
            "a queued run {:.3} s after the last: {runs:?}",
            next - end
        );
    }
    let done = init.stop(LONG);
    done.assert_stderr_contains("the next run starts when it ends (overlap = \"queue\")");
}

#[test]
fn sigterm_during_a_run_stops_it_within_its_stop_timeout() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // It ignores SIGTERM (so does its sleep, which inherits that): only the
    // SIGKILL at the stop timeout ends it.
    job(
        &tree,
        "stuck",
        "schedule = \"* * * * * *\"\nstop-timeout = \"1s\"\n",
        "trap '' TERM\nsleep 30",
    );
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "stuck", 1, LONG);
    init.mark();
    init.signal(nix::libc::SIGTERM);
    let done = init.wait(LONG);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let took = done.elapsed;
    eprintln!(
        "stop with a run ignoring SIGTERM (stop-timeout 1 s): {} ms",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(1000),
        "killed before its stop timeout: {took:?}"
    );
    assert!(took < Duration::from_millis(3000), "{took:?}:\n{}", done.stderr);
    done.assert_stderr_contains("service stuck: stopping: SIGTERM to process group");
    done.assert_stderr_contains("SIGKILL");
    assert_eq!(runs(&tree, "stuck").len(), 1, "no run after the stop began");
}

#[test]
fn sv_once_runs_it_now_and_sv_status_shows_down_then_run() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    job(&tree, "yearly", "schedule = \"@yearly\"\n", "sleep 2");
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    common::wait_supervised(&tree, "yearly", LONG);
    tree.wait_status("yearly to be scheduled", LONG, |s| {
        (common::service_in(s, "yearly")?["state"] == "scheduled").then_some(())
    });
    let status = tree.sv(Sv::Baseinit, &["status", "yearly"]).stdout;
    assert!(status.starts_with("down: yearly: "), "{status}");
    assert!(tree.read("yearly").is_empty(), "not run at boot");
    let started = Instant::now();
    let out = tree.sv(Sv::Baseinit, &["once", "yearly"]);
    assert_eq!(out.code, 0, "{}", out.text());
    wait_lines(&tree, "yearly", 1, LONG);
    eprintln!("sv once to the job's first line: {} ms", started.elapsed().as_millis());
    let status = tree.sv(Sv::Baseinit, &["status", "yearly"]).stdout;
    assert!(status.starts_with("run: yearly: (pid "), "{status}");
    tree.wait_sv_status(Sv::Baseinit, "yearly", "down: yearly: ", LONG);
    assert_eq!(runs(&tree, "yearly").len(), 1);
    init.stop(LONG);
}

#[test]
fn status_shows_the_schedule_its_last_run_and_next_time_in_the_containers_zone() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    job(
        &tree,
        "report",
        "schedule = \"*/2 * * * * *\"\n[health]\non-failed-run = \"unhealthy\"\n",
        "exit 3",
    );
    // A POSIX rule: 14 hours east of UTC, no DST, no zoneinfo needed.
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| {
        c.env("TZ", "XXX-14");
    });
    wait_lines(&tree, "report", 2, LONG);
    let snapshot = tree.wait_status("the failed run in status", LONG, |s| {
        let report = common::service_in(s, "report")?;
        (report["schedule"]["failed"] == true).then(|| report.clone())
    });
    let schedule = &snapshot["schedule"];
    assert_eq!(schedule["expression"], "*/2 * * * * *");
    assert_eq!(schedule["time_zone"], "XXX-14");
    assert_eq!(schedule["overlap"], "skip");
    let next = schedule["next_run"].as_str().expect("next_run");
    assert!(next.ends_with("+14:00"), "{next}");
    let last = schedule["last_run_start"].as_str().expect("last_run_start");
    assert!(last.ends_with("+14:00") && last.contains('.'), "{last}");
    assert!(schedule["runs"].as_u64() >= Some(1));
    assert_eq!(snapshot["last_exit"]["code"], 3);
    assert_eq!(snapshot["expected_up"], false);
    let table = tree.baseinit(&["status"]).stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("report: `*/2 * * * * *` (XXX-14): ")),
        "{table}"
    );
    let health = tree.baseinit(&["health"]);
    assert_eq!(health.code, 1, "{}", health.text());
    assert!(
        health.stdout.contains("report: its last run failed (code 3)"),
        "{}",
        health.stdout
    );
    init.stop(LONG);
}

#[test]
fn baseinit_check_reports_a_bad_expression_at_its_field() {
    let tree = Tree::new();
    tree.service("bad", "exit 0");
    tree.service_file("bad", "service.toml", "\nschedule = \"*/5 25 * * *\"\n", 0o644);
    tree.service("never", "exit 0");
    tree.service_file("never", "service.toml", "schedule = \"0 0 31 4 *\"\n", 0o644);
    tree.service("good", "exit 0");
    tree.service_file(
        "good",
        "service.toml",
        "schedule = \"@daily\"\noverlap = \"queue\"\n",
        0o644,
    );
    let out = common::run(tree.check_command(&[]));
    assert_eq!(out.code, 1, "{}", out.text());
    let root = tree.service_dir();
    let bad = format!(
        "{}/bad/service.toml:2:17: error: schedule \"*/5 25 * * *\": hour field \"25\"",
        root.display()
    );
    let never = format!(
        "{}/never/service.toml:1:13: error: schedule \"0 0 31 4 *\" matches no time at all",
        root.display()
    );
    for expected in [bad, never] {
        assert!(out.stdout.contains(&expected), "{expected}\nnot in:\n{}", out.stdout);
    }
    assert!(!out.stdout.contains("good/"), "{}", out.stdout);
}
