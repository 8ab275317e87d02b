//! Abuse of the real binary as PID 1: a chaos soak (random SIGKILLs of
//! services, signal storms, services added and removed, a stream of orphans)
//! SIGTERM at every moment of a container's life, fork failing (a pids
//! cgroup) and a read-only or full `/etc` and `/run` (a small tmpfs).
//!
//! The soak lasts `BASEINIT_SOAK_SECS` seconds (default 30, CI's length); run
//! the long variant with
//! `BASEINIT_SOAK_SECS=600 cargo test --test chaos -- --nocapture`.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{
    Baseinit, Capability, Mode, Rng, Tree, footprint, lasting_zombies, require, sleeping_services, wait_for, wait_lines,
};
use nix::libc;

const LONG: Duration = Duration::from_secs(30);
/// Services the soak kills (the 20th makes orphans).
const KILLABLE: usize = 19;

fn send(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a pid this test found as a child of its own
    // baseinit (or baseinit itself).
    unsafe { libc::kill(pid, signal) };
}

fn soak_service(tree: &Tree, name: &str, number: u32) {
    tree.service(name, &format!("echo x >> \"$OUT/starts-{name}\"\nexec sleep {number}"));
    // Fast restarts and no crash-loop verdict: the soak kills on purpose.
    tree.service_file(
        name,
        "service.toml",
        "max-restarts = 1000000\n[backoff]\ninitial = \"10ms\"\nmax = \"50ms\"\n",
        0o644,
    );
}

#[test]
fn chaos_soak_loses_nothing_leaks_nothing_and_still_stops_in_milliseconds() {
    require!(Capability::Namespaces);
    let secs: u64 = std::env::var("BASEINIT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    eprintln!("chaos soak: {secs} s, seed {seed:#x}");
    let mut rng = Rng(seed);

    let tree = Tree::new();
    let names: Vec<String> = (0..KILLABLE).map(|i| format!("s{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        soak_service(&tree, name, 1000 + i as u32);
    }
    // Each `(sleep 0.01 &)` leaves an orphan for PID 1 to reap.
    tree.service("orphans", "while :; do (sleep 0.01 &); sleep 0.01; done");
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    let pid = init.pid();

    let all_up = |dynamic: &[u32]| {
        let live = sleeping_services(pid);
        (0..KILLABLE as u32)
            .map(|i| 1000 + i)
            .chain(dynamic.iter().copied())
            .all(|n| live.get(&n).is_some_and(|p| p.len() == 1))
    };
    wait_for("every service to start", LONG, || all_up(&[]).then_some(()));
    for name in &names {
        wait_lines(&tree, &format!("starts-{name}"), 1, LONG);
    }
    // Let the first restarts' allocations settle before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let (rss_start, fds_start) = footprint(pid);
    let watches_start = common::inotify_watches(pid);

    let mut kills = [0usize; KILLABLE];
    let mut signals_sent = 0usize;
    let mut added = 0usize;
    let mut removed = 0usize;
    let mut dynamic: Vec<u32> = Vec::new();
    let mut samples: Vec<(u64, usize)> = Vec::new();
    let started = Instant::now();
    let mut last_sample = Instant::now();
    let mut last_tree_change = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        // SIGKILL one running service whose last kill has been answered by
        // a restart, so that starts = 1 + kills holds exactly.
        let i = rng.below(KILLABLE);
        let starts = tree.read(&format!("starts-{}", names[i])).lines().count();
        if starts == kills[i] + 1
            && let Some(pids) = sleeping_services(pid).get(&(1000 + i as u32))
            && let [service] = pids[..]
            // SAFETY: kill(2) on a pid found as a child of our baseinit.
            && unsafe { libc::kill(service, libc::SIGKILL) } == 0
        {
            kills[i] += 1;
        }
        // A storm of the signals that must change nothing.
        for _ in 0..rng.below(20) {
            let signal = [libc::SIGCHLD, libc::SIGHUP, libc::SIGUSR1][rng.below(3)];
            send(pid, signal);
            signals_sent += 1;
        }
        // Add or remove a service directory about every 300 ms.
        if last_tree_change.elapsed() > Duration::from_millis(300) {
            last_tree_change = Instant::now();
            if dynamic.len() < 5 && (dynamic.is_empty() || rng.below(2) == 0) {
                let number = 2000 + added as u32;
                let name = format!("d{number}");
                let staging = tree.path().join("staging").join(&name);
                common::write_file(
                    &staging.join("run"),
                    &tree.script(&format!("exec sleep {number}")),
                    0o755,
                );
                fs::rename(&staging, tree.service_dir().join(&name)).expect("add a service");
                dynamic.push(number);
                added += 1;
            } else {
                let number = dynamic.remove(rng.below(dynamic.len()));
                let name = format!("d{number}");
                fs::rename(tree.service_dir().join(&name), tree.path().join("removed").join(&name))
                    .or_else(|_| {
                        fs::create_dir_all(tree.path().join("removed"))?;
                        fs::rename(tree.service_dir().join(&name), tree.path().join("removed").join(&name))
                    })
                    .expect("remove a service");
                removed += 1;
            }
        }
        if last_sample.elapsed() > Duration::from_secs(1) {
            last_sample = Instant::now();
            samples.push(footprint(pid));
        }
        std::thread::sleep(Duration::from_millis(5 + rng.below(15) as u64));
    }

    // Quiet again: every kill answered by exactly one restart, every
    // service that should run runs once, the removed ones are gone.
    for (i, name) in names.iter().enumerate() {
        let file = format!("starts-{name}");
        wait_lines(&tree, &file, kills[i] + 1, LONG);
    }
    wait_for("every service, and only those, to run", LONG, || {
        let live = sleeping_services(pid);
        let expected: Vec<u32> = (0..KILLABLE as u32)
            .map(|i| 1000 + i)
            .chain(dynamic.iter().copied())
            .collect();
        let running: Vec<u32> = live.keys().copied().collect();
        (all_up(&dynamic) && running == expected).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            tree.read(&format!("starts-{name}")).lines().count(),
            kills[i] + 1,
            "{name}: one restart per kill"
        );
    }
    let zombies = lasting_zombies(pid);
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");

    // Back to the starting set of services, then compare the footprint.
    for number in dynamic.drain(..) {
        let name = format!("d{number}");
        fs::rename(tree.service_dir().join(&name), tree.path().join("removed").join(&name)).expect("remove");
        removed += 1;
    }
    wait_for("the added services to be gone", LONG, || {
        let live = sleeping_services(pid);
        (live.len() == KILLABLE).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (rss_end, fds_end) = footprint(pid);
    let watches_end = common::inotify_watches(pid);
    let rss_max = samples.iter().map(|s| s.0).max().unwrap_or(rss_end);
    let fds_max = samples.iter().map(|s| s.1).max().unwrap_or(fds_end);

    let mut init = init;
    init.mark();
    init.signal(libc::SIGTERM);
    let run = init.wait(LONG);
    let reaped = run
        .stderr
        .lines()
        .find_map(|l| {
            l.split_once(" orphans reaped")?
                .0
                .rsplit(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let total_kills: usize = kills.iter().sum();
    eprintln!(
        "chaos soak {secs} s: {total_kills} SIGKILLs, {total_kills} restarts; {signals_sent} signals to PID 1; \
         {added} services added, {removed} removed; {reaped} orphans reaped; \
         RSS {rss_start} kB at start, {rss_max} kB max, {rss_end} kB at end; \
         fds {fds_start} at start, {fds_max} max, {fds_end} at end; \
         inotify watches {watches_start} at start, {watches_end} at end; graceful stop {:?}; crashes 0",
        run.elapsed
    );
    assert_eq!(run.code, 0, "stderr (tail):\n{}", tail(&run.stderr));
    assert!(!run.stderr.contains("panicked"), "{}", tail(&run.stderr));
    assert!(
        !run.stderr.contains("after the stop signal"),
        "a service needed SIGKILL at the stop:\n{}",
        tail(&run.stderr)
    );
    assert_eq!(fds_end, fds_start, "open fds of PID 1 grew");
    assert_eq!(
        watches_end, watches_start,
        "inotify watches of removed services were kept"
    );
    // Allocator slack, not growth: a leak per kill (hundreds of them) or per
    // signal (thousands) would be far larger.
    assert!(
        rss_end <= rss_start + 1024,
        "RSS of PID 1 grew from {rss_start} kB to {rss_end} kB"
    );
    assert!(total_kills > 0 && reaped > 0, "the soak did nothing");
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// True once `pid` runs baseinit and blocks or catches SIGTERM: from then
/// on a SIGTERM cannot be lost. (Before baseinit's first instruction,
/// nothing can catch it: as PID 1 with the default disposition, the kernel
/// discards it. `unshare` itself blocks SIGTERM between its fork and the
/// exec, hence the check of the executable.)
fn listens_for_sigterm(pid: i32) -> bool {
    let runs_baseinit = fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| fs::canonicalize(common::BIN).is_ok_and(|bin| exe == bin));
    if !runs_baseinit {
        return false;
    }
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (libc::SIGTERM - 1);
    ["SigBlk:", "SigCgt:"].iter().any(|key| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & bit != 0)
    })
}

/// Starts baseinit on `tree`, waits until it listens for SIGTERM and `ready`
/// holds, sends SIGTERM after `delay`, and returns how the run ended.
fn sigterm_when(tree: &Tree, extra: &[&str], ready: impl Fn() -> bool, delay: Duration) -> common::Finished {
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(extra));
    let pid = init.pid();
    wait_for("baseinit to listen for SIGTERM", LONG, || {
        listens_for_sigterm(pid).then_some(())
    });
    wait_for("the moment to signal", LONG, || ready().then_some(()));
    std::thread::sleep(delay);
    init.mark();
    init.signal(libc::SIGTERM);
    init.wait(LONG)
}

#[test]
fn sigterm_at_any_moment_of_boot_stops_everything_started_so_far() {
    require!(Capability::Namespaces);
    // From baseinit's first instruction through the environment import,
    // the scan, the startup scripts and the services' start.
    for delay_us in [0u64, 100, 300, 1000, 3000, 10_000, 30_000, 100_000] {
        let tree = Tree::new();
        fs::create_dir_all(tree.env_dir()).unwrap();
        fs::write(tree.env_dir().join("GREETING"), "hi").unwrap();
        tree.startup_script("10_quick", r#"echo 10 >> "$OUT/scripts-run""#);
        tree.startup_script("20_slow", r#"echo 20 >> "$OUT/scripts-run"; sleep 0.05"#);
        for name in ["a", "b", "c"] {
            tree.service(
                name,
                &format!(
                    r#"echo up >> "$OUT/{name}"; trap 'echo stopped >> "$OUT/{name}"; exit 0' TERM; while :; do sleep 0.01; done"#
                ),
            );
        }
        let run = sigterm_when(&tree, &[], || true, Duration::from_micros(delay_us));
        assert_eq!(run.code, 0, "SIGTERM {delay_us} µs in; stderr:\n{}", run.stderr);
        assert!(
            !run.stderr.contains("after the stop signal"),
            "SIGTERM {delay_us} µs in: something needed SIGKILL:\n{}",
            run.stderr
        );
        for name in ["a", "b", "c"] {
            let log = tree.read(name);
            assert!(
                log.is_empty() || log == "up\nstopped\n",
                "SIGTERM {delay_us} µs in: service {name} was started and not stopped gracefully: {log:?}"
            );
        }
        eprintln!(
            "SIGTERM {delay_us:>6} µs after baseinit listens: stopped in {:?}; startup scripts run: {:?}; services started: {}",
            run.elapsed,
            tree.read("scripts-run").lines().collect::<Vec<_>>(),
            ["a", "b", "c"].iter().filter(|n| !tree.read(n).is_empty()).count()
        );
    }
}

#[test]
fn sigterm_during_a_startup_script_stops_it_and_starts_no_service() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.startup_script(
        "10_long",
        r#"trap 'echo stopped >> "$OUT/script"; exit 143' TERM; echo running >> "$OUT/script"; while :; do sleep 0.01; done"#,
    );
    tree.startup_script("20_never", r#"echo ran > "$OUT/never""#);
    tree.service("svc", r#"echo up > "$OUT/svc"; exec sleep 1000"#);
    let run = sigterm_when(&tree, &[], || tree.read("script") == "running\n", Duration::ZERO);
    eprintln!("SIGTERM during a startup script: stopped in {:?}", run.elapsed);
    assert_eq!(run.code, 0, "a requested stop; stderr:\n{}", run.stderr);
    assert_eq!(tree.read("script"), "running\nstopped\n", "the script got SIGTERM");
    assert_eq!(tree.read("never"), "", "no later startup script ran");
    assert_eq!(tree.read("svc"), "", "no service started");
}

#[test]
fn sigterm_during_a_restart_backoff_stops_without_starting_it_again() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("crashy", r#"echo x >> "$OUT/starts"; exit 1"#);
    tree.service_file(
        "crashy",
        "service.toml",
        "[backoff]\ninitial = \"5s\"\nmax = \"5s\"\n",
        0o644,
    );
    tree.service(
        "steady",
        r#"trap 'echo stopped > "$OUT/steady"; exit 0' TERM; while :; do sleep 0.01; done"#,
    );
    // The first death is of a run shorter than reset-after: 5 s of backoff.
    let run = sigterm_when(
        &tree,
        &[],
        || tree.read("starts").lines().count() == 2,
        Duration::from_millis(100),
    );
    eprintln!("SIGTERM during a 5 s backoff: stopped in {:?}", run.elapsed);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "the stop waited for the backoff: {:?}",
        run.elapsed
    );
    assert_eq!(tree.read("starts").lines().count(), 2, "no start after the SIGTERM");
    assert_eq!(tree.read("steady"), "stopped\n");
}

#[test]
fn sigterm_during_a_pre_shutdown_hook_changes_nothing_and_the_stop_completes_in_order() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let pre = tree.path().join("pre_shutdown.d");
    let post = tree.path().join("post_shutdown.d");
    common::write_file(
        &pre.join("10_slow"),
        &tree.script(r#"echo pre-start >> "$OUT/order"; sleep 0.3; echo pre-end >> "$OUT/order""#),
        0o755,
    );
    common::write_file(
        &post.join("10_post"),
        &tree.script(r#"echo post >> "$OUT/order""#),
        0o755,
    );
    tree.service(
        "svc",
        r#"trap 'echo service-stopped >> "$OUT/order"; exit 0' TERM; echo up > "$OUT/up"; while :; do sleep 0.01; done"#,
    );
    let mut init = Baseinit::start(Mode::Pid1, &tree.args(&["--hook-timeout", "2"]));
    wait_lines(&tree, "up", 1, LONG);
    init.mark();
    init.signal(libc::SIGTERM);
    wait_lines(&tree, "order", 1, LONG);
    // Twice more, while the hook runs.
    init.signal(libc::SIGTERM);
    init.signal(libc::SIGINT);
    let run = init.wait(LONG);
    eprintln!(
        "SIGTERM ×3 around a 0.3 s pre-shutdown hook: stopped in {:?}",
        run.elapsed
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(tree.read("order"), "pre-start\npre-end\nservice-stopped\npost\n");
    run.assert_stderr_contains("received SIGTERM again: already shutting down");
}

/// A pids cgroup of its own (v1 or v2), removed on drop. Only after
/// `require!(Capability::Cgroups)`.
struct PidsCgroup(std::path::PathBuf);

impl PidsCgroup {
    fn new() -> Self {
        let parent = common::pids_cgroup_parent().expect("a pids cgroup (probed before)");
        let dir = parent.join(format!("baseinit-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        PidsCgroup(dir)
    }

    fn set_max(&self, max: &str) {
        fs::write(self.0.join("pids.max"), max).expect("write pids.max");
    }

    fn adopt(&self, pid: i32) {
        fs::write(self.0.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Empty once the test's baseinit is gone; retried briefly.
        for _ in 0..100 {
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn when_fork_fails_it_logs_backs_off_keeps_the_rest_and_recovers_when_the_limit_lifts() {
    require!(Capability::Namespaces);
    require!(Capability::Cgroups);
    let cgroup = PidsCgroup::new();
    let tree = Tree::new();
    // Holds boot until baseinit is inside the cgroup, so every service is.
    tree.startup_script("10_wait", r#"while [ ! -e "$OUT/go" ]; do sleep 0.01; done"#);
    tree.service("steady", r#"echo $$ >> "$OUT/steady"; exec sleep 1000"#);
    tree.service("crashy", r#"echo x >> "$OUT/starts"; exit 1"#);
    tree.service_file(
        "crashy",
        "service.toml",
        "max-restarts = 1000000\n[backoff]\ninitial = \"20ms\"\nmax = \"200ms\"\n",
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    cgroup.adopt(init.pid());
    fs::write(tree.out("go"), "").unwrap();
    wait_lines(&tree, "starts", 2, LONG);
    wait_lines(&tree, "steady", 1, LONG);

    // No fork succeeds in the container any more.
    cgroup.set_max("1");
    wait_for("failed starts with backoff", LONG, || {
        (init.stderr_so_far().matches("service crashy: cannot start").count() >= 3).then_some(())
    });
    let starts_while_limited = tree.read("starts").lines().count();
    cgroup.set_max("max");
    wait_lines(&tree, "starts", starts_while_limited + 2, LONG);

    let run = init.stop(LONG);
    assert_eq!(tree.read("steady").lines().count(), 1, "steady was never restarted");
    let failure = run
        .stderr
        .lines()
        .find(|l| l.contains("service crashy: cannot start"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        failure.contains("Resource temporarily unavailable") || failure.contains("EAGAIN"),
        "the error says why: {failure}"
    );
    assert!(
        run.stderr.contains("service crashy: restarting in"),
        "{}",
        tail(&run.stderr)
    );
    eprintln!("fork failure, as logged: {failure}");
}

/// A 64 KiB tmpfs mounted for one test (root only), unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(at: &std::path::Path) -> Option<Self> {
        fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "baseinit-test"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(at.to_owned()))
    }

    fn remount_read_only(&self) {
        let ok = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount read-only");
    }

    fn fill(&self) {
        use std::io::Write;
        let mut f = fs::File::create(self.0.join("filler")).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
        // The last partial block too.
        while f.write_all(&[0u8; 1]).is_ok() {}
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_or_full_run_and_etc_cost_warnings_not_services() {
    require!(Capability::Namespaces);
    // Root, to mount a small file system.
    require!(Capability::Root);
    for broken in ["read-only", "full"] {
        let tree = Tree::new();
        let small = SmallFs::mount(&tree.path().join("small")).expect("mount a tmpfs");
        // The environment directory (/etc/container_environment) and the
        // runtime directory (/run/baseinit) both live on it.
        let env_dir = small.0.join("container_environment");
        fs::create_dir_all(&env_dir).unwrap();
        fs::write(env_dir.join("FROM_FILE"), "yes").unwrap();
        let run_dir = small.0.join("run");
        match broken {
            "read-only" => small.remount_read_only(),
            _ => small.fill(),
        }
        tree.service("svc", r#"echo "$FROM_FILE" > "$OUT/svc"; exec sleep 1000"#);
        let mut args = tree.args(&[]);
        for (flag, value) in [("--env-dir", &env_dir), ("--runtime-dir", &run_dir)] {
            let at = args.iter().position(|a| a == flag).expect(flag);
            args[at + 1] = value.display().to_string();
        }
        let init = Baseinit::start(Mode::Pid1, &args);
        wait_lines(&tree, "svc", 1, LONG);
        std::thread::sleep(Duration::from_millis(200));
        init.signal(libc::SIGTERM);
        let run = init.wait(LONG);
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        eprintln!("{broken} /etc and /run, as reported:\n{}", warnings.join("\n"));
        assert_eq!(run.code, 0, "{broken}: stderr:\n{}", run.stderr);
        assert_eq!(
            tree.read("svc"),
            "yes\n",
            "{broken}: the service ran with the imported environment"
        );
        assert!(!warnings.is_empty(), "{broken}: the failure to write is reported");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        drop(small);
    }
}
