//! baseinit in a real Docker engine: the images of `images/` under `docker
//! run`, `docker stop`, `docker logs` and `docker exec`.
//!
//! Skipped loudly when no engine answers (`docker info`); with
//! BASEINIT_REQUIRE_DOCKER=1 (CI) that is a failure. The first test to run
//! calls `images/build.sh` once (seconds when nothing changed; it rebuilds
//! the static binary and the images when the source did), so the tests see
//! the current source; BASEINIT_DOCKER_SKIP_BUILD=1 uses the images as they
//! are. Small test images are built here from Dockerfiles in a temporary
//! directory, FROM baseinit/debian:test, with `--network none`, and tagged
//! `baseinit-test/NAME:test`.
//!
//! Every container runs with `--network none` under a unique name and is
//! removed (`docker rm -f`) by a guard, even when the test fails. Every
//! docker command has a watchdog.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{Capability, Output as Out, require, try_run, write_file};
use nix::libc;

const BASE: &str = "baseinit/debian:test";
const EXAMPLE: &str = "baseinit/example:test";
const SCRATCH: &str = "baseinit/scratch:test";
/// How long one docker command may take before its watchdog kills it.
const COMMAND: Duration = Duration::from_secs(60);
/// How long a container may take to show an expected log line.
const BOOT: Duration = Duration::from_secs(30);
/// images/build.sh from nothing: a release build, debootstrap, apt-get.
const BUILD: Duration = Duration::from_secs(30 * 60);

// ---------------------------------------------------------------------------
// Running commands with a watchdog (common::try_run)

fn try_docker(args: &[&str], timeout: Duration) -> Result<Out, String> {
    let mut command = Command::new("docker");
    command.args(args);
    try_run(command, timeout)
}

fn docker(args: &[&str], timeout: Duration) -> Out {
    try_docker(args, timeout).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// The engine and the images

/// True when a Docker engine answers ([`Capability::Docker`]: a loud skip
/// without one, or a failure with BASEINIT_REQUIRE_DOCKER=1) and the
/// images are built; a failing images/build.sh fails the test.
fn docker_ready(test: &str) -> bool {
    if !common::require(Capability::Docker, test) {
        return false;
    }
    static IMAGES: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = IMAGES.get_or_init(build_images) {
        panic!("{test}: the images could not be built: {why}");
    }
    true
}

/// `require_docker!()`: returns from the test unless [`docker_ready`].
macro_rules! require_docker {
    () => {
        if !docker_ready(common::function_name!()) {
            return;
        }
    };
}

fn build_images() -> Result<(), String> {
    let have = |tag: &str| try_docker(&["image", "inspect", tag], COMMAND).is_ok_and(|o| o.code == 0);
    if std::env::var("BASEINIT_DOCKER_SKIP_BUILD").as_deref() == Ok("1")
        && [BASE, EXAMPLE, SCRATCH].iter().all(|t| have(t))
    {
        eprintln!("docker tests: BASEINIT_DOCKER_SKIP_BUILD=1: using the images as they are");
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/build.sh");
    let started = Instant::now();
    let mut command = Command::new("bash");
    command.arg(&script);
    let out = try_run(command, BUILD)?;
    eprintln!(
        "images/build.sh took {:.1} s:\n{}",
        started.elapsed().as_secs_f64(),
        out.stdout
    );
    if out.code != 0 {
        return Err(format!(
            "images/build.sh exited {}:\n{}\n{}",
            out.code, out.stdout, out.stderr
        ));
    }
    Ok(())
}

/// Builds `baseinit-test/NAME:test` from `files` (paths relative to the
/// build context, with their modes; one of them is the Dockerfile), once per
/// test process, with no network.
fn test_image(name: &str, files: &[(&str, &str, u32)]) -> String {
    static BUILT: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(tag) = built.get(name) {
        return tag.clone();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, body, mode) in files {
        write_file(&dir.path().join(path), body, *mode);
    }
    let tag = format!("baseinit-test/{name}:test");
    let context = dir.path().display().to_string();
    let out = docker(
        &["build", "--network", "none", "-t", &tag, &context],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, 0, "docker build of {tag} failed:\n{}", out.text());
    built.insert(name.to_owned(), tag.clone());
    tag
}

// ---------------------------------------------------------------------------
// Containers

/// A container name, and the promise that the container is removed.
struct Container {
    name: String,
}

impl Container {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "baseinit-test-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Container { name }
    }

    /// `docker run -d --network none --name NAME ARGS...`.
    fn start(test: &str, args: &[&str]) -> Self {
        let container = Container::new(test);
        let mut all = vec!["run", "-d", "--network", "none", "--name", &container.name];
        all.extend_from_slice(args);
        let out = docker(&all, COMMAND);
        assert_eq!(out.code, 0, "docker {all:?}:\n{}", out.text());
        container
    }

    /// `docker run --network none --name NAME ARGS...` in the foreground:
    /// its exit code is the container's.
    fn run(&self, args: &[&str]) -> Out {
        let mut all = vec!["run", "--network", "none", "--name", &self.name];
        all.extend_from_slice(args);
        docker(&all, COMMAND)
    }

    fn logs(&self) -> String {
        docker(&["logs", &self.name], COMMAND).text()
    }

    /// Waits until every one of `needles` is in the logs; returns them.
    fn wait_logs(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + BOOT;
        loop {
            let logs = self.logs();
            if needles.iter().all(|n| logs.contains(n)) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "{}: after {BOOT:?}, the logs still lack one of {needles:?}:\n{logs}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exec(&self, args: &[&str]) -> Out {
        let mut all = vec!["exec", &self.name];
        all.extend_from_slice(args);
        docker(&all, COMMAND)
    }

    /// `docker stop -t 10` (Docker's default grace): how long it took.
    fn stop(&self) -> Duration {
        let started = Instant::now();
        let out = docker(&["stop", "-t", "10", &self.name], COMMAND);
        let took = started.elapsed();
        assert_eq!(out.code, 0, "docker stop:\n{}", out.text());
        took
    }

    fn inspect(&self, format: &str) -> String {
        let out = docker(&["inspect", "-f", format, &self.name], COMMAND);
        assert_eq!(out.code, 0, "docker inspect:\n{}", out.text());
        out.stdout.trim().to_owned()
    }

    fn exit_code(&self) -> i32 {
        assert_eq!(self.inspect("{{.State.Running}}"), "false", "{} still runs", self.name);
        self.inspect("{{.State.ExitCode}}").parse().expect("exit code")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        if let Err(e) = try_docker(&["rm", "-f", &self.name], COMMAND) {
            eprintln!("could not remove container {}: {e}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Reading baseinit's log

/// Seconds since midnight of a baseinit log line's UTC timestamp
/// (`2026-11-29T01:11:30.478994Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let clock = line.get(11..26)?;
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn line_with<'a>(logs: &'a str, needles: &[&str]) -> &'a str {
    logs.lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with all of {needles:?} in:\n{logs}"))
}

/// The "N orphans reaped" figure of baseinit's last line.
fn orphans_reaped(logs: &str) -> u64 {
    let line = line_with(logs, &[" orphans reaped"]);
    let (before, _) = line.split_once(" orphans reaped").expect("split");
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

/// A shell service that says it is up, and says goodbye on SIGTERM.
fn greeter(name: &str) -> String {
    format!(
        r#"#!/bin/sh
trap 'echo "{name}: got SIGTERM as uid $(id -u), goodbye"; exit 0' TERM
echo "{name}: up as uid $(id -u)"
while :; do
    sleep 30 &
    wait $!
done
"#
    )
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn example_image_docker_stop_stops_every_service_with_its_own_signal() {
    require_docker!();
    let c = Container::start("example-stop", &["-e", "GREETING=from-docker-run", EXAMPLE]);
    c.wait_logs(&[
        "startup: wrote /var/www/html/index.html",
        "heartbeat: up as root",
        "start worker process",
        "service minutely: runs at `* * * * *` (UTC); next at ",
    ]);
    let status = c.exec(&["sv", "status", "nginx", "heartbeat"]);
    for name in ["nginx", "heartbeat"] {
        assert!(
            status.stdout.contains(&format!("run: {name}: (pid ")),
            "sv status:\n{}",
            status.text()
        );
    }
    // The job in place of cron: not started at boot, run now by `sv once`
    // (it would be at the next minute anyway) as nobody, with the
    // container's environment, its line in the logs; then scheduled again.
    let once = c.exec(&["sv", "once", "minutely"]);
    assert_eq!(once.code, 0, "sv once:\n{}", once.text());
    c.wait_logs(&["minutely | minutely: ran as nobody at ", "GREETING=from-docker-run"]);
    // Its syslog line, through baseinit's /dev/log: no syslog daemon.
    c.wait_logs(&["syslog:minutely | ran, said through syslog"]);
    let deadline = Instant::now() + BOOT;
    let job = loop {
        let json = c.exec(&["baseinit", "status", "--json"]).stdout;
        let snapshot: serde_json::Value = serde_json::from_str(&json).expect("status --json");
        let job = common::service_in(&snapshot, "minutely")
            .expect("minutely in status")
            .clone();
        if job["state"] == "scheduled" || Instant::now() >= deadline {
            break job;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["state"], "scheduled", "{job}");
    assert_eq!(job["last_exit"]["code"], 0, "{job}");
    assert_eq!(job["schedule"]["expression"], "* * * * *", "{job}");
    assert!(
        job["schedule"]["next_run"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00Z")),
        "{job}"
    );
    let job_status = c.exec(&["sv", "status", "minutely"]).stdout;
    assert!(job_status.starts_with("down: minutely: "), "{job_status}");
    // nginx serves the page the startup script wrote (loopback of the
    // container's own network namespace).
    let page = c.exec(&[
        "bash",
        "-c",
        r#"exec 3<>/dev/tcp/127.0.0.1/80; printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3"#,
    ]);
    assert!(
        page.stdout.starts_with("HTTP/1.1 200 OK") && page.stdout.contains("Hello from"),
        "{}",
        page.text()
    );

    let took = c.stop();
    eprintln!(
        "docker stop of the example image (nginx, heartbeat, redis, visits, a job) took {} ms",
        took.as_millis()
    );
    let logs = c.logs();
    assert_eq!(
        c.exit_code(),
        0,
        "a services-only container exits 0 after docker stop:\n{logs}"
    );
    // baseinit sent each its stop signal...
    line_with(&logs, &["service nginx: stopping: SIGQUIT to process group"]);
    line_with(&logs, &["service heartbeat: stopping: SIGTERM to process group"]);
    // ...and each got it, in its own words: nginx's log, the shell's trap,
    // and finish scripts that report how their run ended. Had PID 1 exited
    // first, the kernel's SIGKILL would have left none of these lines.
    line_with(&logs, &["signal 3 (SIGQUIT) received from 1", "shutting down"]);
    line_with(&logs, &["nginx: finished (exit code 0, signal 0)"]);
    line_with(&logs, &["heartbeat: got SIGTERM, goodbye"]);
    assert!(!logs.contains("SIGKILL"), "nothing needed SIGKILL:\n{logs}");
    line_with(&logs, &["exiting with code 0"]);
}

#[test]
fn a_service_ignoring_sigterm_is_killed_at_its_timeout_before_dockers_own_sigkill() {
    require_docker!();
    let image = test_image(
        "stubborn",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY service/ /etc/service/\n"),
                0o644,
            ),
            // SIG_IGN survives exec: sleep ignores SIGTERM too.
            (
                "service/stubborn/run",
                "#!/bin/sh\ntrap '' TERM\necho 'stubborn: up, ignoring SIGTERM'\nexec sleep 1000\n",
                0o755,
            ),
            ("service/polite/run", &greeter("polite"), 0o755),
        ],
    );
    let c = Container::start("stubborn", &[&image]);
    c.wait_logs(&["stubborn: up", "polite: up"]);
    let took = c.stop();
    let logs = c.logs();
    let code = c.exit_code();
    eprintln!(
        "docker stop with a service ignoring SIGTERM (default stop timeout 5 s) took {} ms",
        took.as_millis()
    );
    // Docker SIGKILLs PID 1 at 10 s: the container would then exit 137.
    assert_ne!(code, 137, "Docker had to SIGKILL the container:\n{logs}");
    assert_eq!(code, 0, "{logs}");
    let term = line_with(&logs, &["service stubborn: stopping: SIGTERM"]);
    let kill = line_with(
        &logs,
        &["service stubborn: still running 5000 ms after the stop signal: SIGKILL"],
    );
    let gap = log_time(kill).expect("time") - log_time(term).expect("time");
    eprintln!("baseinit's SIGKILL came {gap:.3} s after its SIGTERM");
    assert!(gap >= 4.9, "killed before its 5 s timeout ({gap:.3} s):\n{logs}");
    line_with(&logs, &["polite: got SIGTERM"]);
    line_with(&logs, &["exiting with code 0"]);
}

#[test]
fn double_forked_orphans_never_linger_as_zombies() {
    require_docker!();
    // Every 50 ms, 20 orphans: subshells that start a process in the
    // background and exit at once, so PID 1 inherits it.
    let leaky = r#"#!/bin/sh
echo "leaky: up"
n=0
while :; do
    for i in 1 2 3 4 5 6 7 8 9 10; do
        (sleep 0.2 &)
        (true &)
    done
    n=$((n + 20))
    echo "$n" >/tmp/leaked
    sleep 0.05
done
"#;
    let image = test_image(
        "leaky",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY service/ /etc/service/\n"),
                0o644,
            ),
            ("service/leaky/run", leaky, 0o755),
        ],
    );
    let c = Container::start("leaky", &[&image]);
    c.wait_logs(&["leaky: up"]);
    // From inside: 150 looks at every /proc/PID/stat, 20 ms apart, with
    // shell builtins only (no child that could itself show up as a zombie).
    let scan = r#"
i=0
while [ $i -lt 150 ]; do
    echo "sample $i"
    for f in /proc/[0-9]*/stat; do
        read -r line <"$f" || continue
        rest=${line##*) }
        case $rest in
            Z*) r=${rest#Z }; echo "Z ${line%% *} ppid ${r%% *} ${line#* }" ;;
        esac
    done 2>/dev/null
    i=$((i + 1))
    sleep 0.02
done
echo "leaked $(cat /tmp/leaked)"
"#;
    let out = c.exec(&["sh", "-c", scan]);
    assert_eq!(out.code, 0, "{}", out.text());
    let mut samples: Vec<HashSet<String>> = Vec::new();
    let mut sightings = Vec::new();
    let mut leaked = 0u64;
    for line in out.stdout.lines() {
        if line.starts_with("sample ") {
            samples.push(HashSet::new());
        } else if let Some(z) = line.strip_prefix("Z ") {
            let mut fields = z.split(' ');
            let pid = fields.next().unwrap_or_default().to_owned();
            let ppid = fields.nth(1).unwrap_or_default();
            sightings.push(z.to_owned());
            // Only PID 1's children are baseinit's to reap: a subshell the
            // service's own shell has not waited for yet (on a loaded
            // machine, for more than one look) is the shell's.
            if ppid == "1" {
                samples.last_mut().expect("a sample").insert(pid);
            }
        } else if let Some(n) = line.strip_prefix("leaked ") {
            leaked = n.trim().parse().expect("leak count");
        }
    }
    assert_eq!(samples.len(), 150, "{}", out.text());
    // A process is a zombie between its exit and its parent's wait: a look
    // can catch that instant. An orphan's zombie still there at the next
    // look (20 ms and more later) is one baseinit does not reap.
    let lingering: Vec<&String> = samples.windows(2).flat_map(|w| w[0].intersection(&w[1])).collect();
    eprintln!(
        "{leaked} orphans leaked; 150 looks at /proc: {} zombie(s) caught in their instant of exit, {} lingering",
        sightings.len(),
        lingering.len()
    );
    assert!(leaked >= 400, "the service leaked only {leaked} orphans");
    assert!(
        lingering.is_empty(),
        "zombies left unreaped: {lingering:?}\n{sightings:#?}"
    );
    c.stop();
    let logs = c.logs();
    assert_eq!(c.exit_code(), 0, "{logs}");
    let reaped = orphans_reaped(&logs);
    assert!(
        reaped >= leaked,
        "baseinit reaped {reaped} orphans, the service leaked {leaked}"
    );
}

#[test]
fn docker_logs_keep_startup_output_and_every_line_of_a_burst_at_stop() {
    require_docker!();
    const EARLY: usize = 20_000;
    const LATE: usize = 50_000;
    let burst = format!(
        r#"#!/bin/sh
trap 'seq -f "late %g" 1 {LATE}; exit 0' TERM
seq -f "early %g" 1 {EARLY}
echo "burst: ready"
while :; do
    sleep 30 &
    wait $!
done
"#
    );
    let image = test_image(
        "burst",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY my_init.d/ /etc/my_init.d/\nCOPY service/ /etc/service/\n"),
                0o644,
            ),
            (
                "my_init.d/10_hello",
                "#!/bin/sh\necho 'startup: hello from my_init.d'\n",
                0o755,
            ),
            ("service/burst/run", &burst, 0o755),
        ],
    );
    let c = Container::start("burst", &[&image]);
    // docker stop as soon as the service says it is ready: the last of the
    // early burst was written just before.
    c.wait_logs(&["burst: ready"]);
    let took = c.stop();
    eprintln!(
        "docker stop while a service writes {LATE} lines took {} ms",
        took.as_millis()
    );
    let out = docker(&["logs", &c.name], COMMAND);
    assert_eq!(c.exit_code(), 0, "{}", out.stderr);
    line_with(
        &out.stderr,
        &["startup script /etc/my_init.d/10_hello: exited with exit code 0"],
    );
    // Every line, once, in order, on the container's stdout.
    let lines: Vec<&str> = out.stdout.lines().collect();
    // The startup script writes straight through; the service's lines come
    // prefixed with its name (see docs/logging.md).
    let expected: Vec<String> = ["startup: hello from my_init.d".to_owned()]
        .into_iter()
        .chain((1..=EARLY).map(|i| format!("burst | early {i}")))
        .chain(["burst | burst: ready".to_owned()])
        .chain((1..=LATE).map(|i| format!("burst | late {i}")))
        .collect();
    let seen: HashSet<&str> = lines.iter().copied().collect();
    let missing = expected.iter().filter(|e| !seen.contains(e.as_str())).count();
    assert_eq!(
        lines.len(),
        expected.len(),
        "{missing} lines missing; stdout ends with {:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
    assert!(lines.iter().zip(&expected).all(|(a, b)| a == b), "lines out of order");
}

#[test]
fn main_command_exit_code_and_signal_death_become_the_containers() {
    require_docker!();
    let c = Container::new("main-exit-3");
    let out = c.run(&[BASE, "--", "sh", "-c", "echo main: exiting 3; exit 3"]);
    assert_eq!(out.code, 3, "{}", out.text());
    assert_eq!(c.exit_code(), 3);
    assert!(out.stdout.contains("main: exiting 3"), "{}", out.text());

    let c = Container::new("main-sigkill");
    let out = c.run(&[BASE, "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, 137, "{}", out.text());
    assert_eq!(c.exit_code(), 137);

    // The same through my_init's name.
    let c = Container::new("main-my-init");
    let out = c.run(&["--entrypoint", "/sbin/my_init", BASE, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "{}", out.text());
}

#[test]
fn docker_run_e_reaches_services_and_the_container_environment() {
    require_docker!();
    let value = "hello from 'docker run' $HOME";
    let env = format!("GREETING={value}");
    let c = Container::start("env", &["-e", &env, EXAMPLE]);
    c.wait_logs(&[&format!("heartbeat: up as root, GREETING={value}")]);
    let file = c.exec(&["cat", "/etc/container_environment/GREETING"]);
    assert_eq!(file.stdout, value, "{}", file.text());
    // A login shell with an empty environment gets it from the .sh dump, by
    // way of /etc/profile.d.
    let login = c.exec(&["env", "-i", "bash", "-lc", "printf %s \"$GREETING\""]);
    assert_eq!(login.stdout, value, "{}", login.text());
    let json = c.exec(&["cat", "/etc/container_environment.json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(json["GREETING"], value);
    c.stop();
    assert_eq!(c.exit_code(), 0);
}

#[test]
fn base_image_has_my_init_sv_setuser_man_pages_and_phusions_layout() {
    require_docker!();
    let checks = r#"
stat -c '%n %a %U %G' /etc/container_environment /etc/container_environment.sh \
    /etc/container_environment.json /etc/service /etc/my_init.d \
    /etc/my_init.pre_shutdown.d /etc/my_init.post_shutdown.d
for l in /sbin/my_init /sbin/setuser /usr/local/bin/sv /usr/local/bin/setuser \
        /usr/local/bin/chpst /usr/local/bin/envdir /usr/local/bin/svlogd \
        /etc/profile.d/container_environment.sh; do
    echo "$l -> $(readlink "$l")"
done
getent group docker_env
echo "setuser: $(setuser nobody id -un)"
/usr/sbin/policy-rc.d; echo "policy-rc.d: $?"
echo "install_clean: $(command -v install_clean)"
echo "LANG=$LANG"
if ls /etc/*/.gitkeep 2>/dev/null; then echo "a .gitkeep was copied"; fi
for page in baseinit sv setuser chpst svlogd baseinit-check baseinit-status baseinit-health; do
    echo "man $page: $(man "$page" 2>&1 | head -n 1 | tr -s ' ')"
done
man baseinit | grep -q KILL_PROCESS_TIMEOUT && echo "man baseinit: has KILL_PROCESS_TIMEOUT"
man sv | grep -q SVWAIT && echo "man sv: has SVWAIT"
for c in baseinit sv setuser chpst svlogd; do
    grep -q "complete -F .* $c" "/usr/share/bash-completion/completions/$c" && echo "bash completion: $c"
done
"#;
    let c = Container::new("layout");
    let out = c.run(&["--entrypoint", "/sbin/my_init", BASE, "--", "sh", "-c", checks]);
    assert_eq!(out.code, 0, "{}", out.text());
    for want in [
        "/etc/container_environment 700 root root",
        "/etc/container_environment.sh 640 root docker_env",
        "/etc/container_environment.json 640 root docker_env",
        "/etc/service 755 root root",
        "/etc/my_init.d 755 root root",
        "/etc/my_init.pre_shutdown.d 755 root root",
        "/etc/my_init.post_shutdown.d 755 root root",
        "/sbin/my_init -> /usr/local/bin/baseinit",
        "/sbin/setuser -> /usr/local/bin/baseinit",
        "/usr/local/bin/sv -> baseinit",
        "/usr/local/bin/setuser -> baseinit",
        "/usr/local/bin/chpst -> baseinit",
        "/usr/local/bin/envdir -> baseinit",
        "/usr/local/bin/svlogd -> baseinit",
        "/etc/profile.d/container_environment.sh -> /etc/container_environment.sh",
        "docker_env:x:8377:",
        "setuser: nobody",
        "policy-rc.d: 101",
        "install_clean: /usr/local/bin/install_clean",
        "LANG=C.UTF-8",
        "man baseinit: BASEINIT(8) System Manager's Manual BASEINIT(8)",
        "man sv: SV(8) System Manager's Manual SV(8)",
        "man setuser: SETUSER(8) System Manager's Manual SETUSER(8)",
        "man chpst: CHPST(8) System Manager's Manual CHPST(8)",
        "man svlogd: SVLOGD(8) System Manager's Manual SVLOGD(8)",
        "man baseinit-check: BASEINIT-CHECK(8) System Manager's Manual BASEINIT-CHECK(8)",
        "man baseinit-status: BASEINIT-STATUS(8) System Manager's Manual BASEINIT-STATUS(8)",
        "man baseinit-health: BASEINIT-HEALTH(8) System Manager's Manual BASEINIT-HEALTH(8)",
        "man baseinit: has KILL_PROCESS_TIMEOUT",
        "man sv: has SVWAIT",
        "bash completion: baseinit",
        "bash completion: sv",
        "bash completion: setuser",
        "bash completion: chpst",
        "bash completion: svlogd",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == want),
            "no line {want:?} in:\n{}",
            out.text()
        );
    }
    assert!(!out.stdout.contains(".gitkeep"), "{}", out.text());
}

/// The image of the three variant tests: a startup script and a service
/// that report their uid.
fn variants_image() -> String {
    test_image(
        "variants",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY my_init.d/ /etc/my_init.d/\nCOPY service/ /etc/service/\n"),
                0o644,
            ),
            (
                "my_init.d/10_hello",
                "#!/bin/sh\necho \"startup: ran as uid $(id -u)\"\n",
                0o755,
            ),
            ("service/greeter/run", &greeter("greeter"), 0o755),
        ],
    )
}

/// Runs the variants image with `docker_args`, checks that it boots and
/// runs its service (and whatever `while_running` checks), then that it
/// stops cleanly; returns the logs.
fn boots_runs_and_stops(test: &str, docker_args: &[&str], uid: u32, while_running: impl FnOnce(&Container)) -> String {
    let image = variants_image();
    let mut args = docker_args.to_vec();
    args.push(&image);
    let c = Container::start(test, &args);
    c.wait_logs(&[
        &format!("startup: ran as uid {uid}"),
        &format!("greeter: up as uid {uid}"),
    ]);
    while_running(&c);
    let took = c.stop();
    eprintln!("{test}: docker stop took {} ms", took.as_millis());
    let logs = c.logs();
    assert_eq!(c.exit_code(), 0, "{logs}");
    line_with(&logs, &[&format!("greeter: got SIGTERM as uid {uid}, goodbye")]);
    line_with(&logs, &["exiting with code 0"]);
    assert!(!logs.contains(" ERROR "), "{logs}");
    logs
}

#[test]
fn boots_runs_and_stops_under_docker_run_init() {
    require_docker!();
    boots_runs_and_stops("init", &["--init"], 0, |c| {
        // docker-init is PID 1; baseinit is its child, a subreaper.
        let one = c.exec(&["cat", "/proc/1/comm"]);
        assert_eq!(one.stdout.trim(), "docker-init", "{}", one.text());
        let status = c.exec(&["sv", "status", "greeter"]);
        assert!(status.stdout.starts_with("run: greeter: (pid "), "{}", status.text());
    });
}

#[test]
fn boots_runs_and_stops_with_a_read_only_root_and_a_tmpfs_run() {
    require_docker!();
    let logs = boots_runs_and_stops("read-only", &["--read-only", "--tmpfs", "/run"], 0, |c| {
        // The service directory is read-only: runit's state is under
        // /run/baseinit, where baseinit's sv finds it.
        let status = c.exec(&["sv", "status", "greeter"]);
        assert!(status.stdout.starts_with("run: greeter: (pid "), "{}", status.text());
    });
    // /etc is read-only: the environment cannot be exported; one warning.
    line_with(
        &logs,
        &[" WARN ", "container environment not fully imported or exported"],
    );
}

#[test]
fn boots_runs_and_stops_as_a_non_root_user() {
    require_docker!();
    let logs = boots_runs_and_stops("user", &["--user", "1000:1000"], 1000, |c| {
        // Neither /etc/service/greeter nor /run is writable: runit's state
        // goes to /tmp/baseinit-1000, where the same user's sv finds it.
        let sv = c.exec(&["sv", "status", "greeter"]);
        assert_eq!(sv.code, 0, "{}", sv.text());
        assert!(sv.stdout.starts_with("run: greeter: (pid "), "{}", sv.text());
    });
    // The container environment is root's: expected as uid 1000, so one
    // line at info level, and no warning at all.
    line_with(
        &logs,
        &[
            " INFO ",
            "container environment: not all of it can be read or written as uid 1000",
        ],
    );
    assert!(!logs.contains(" WARN "), "{logs}");
}

#[test]
fn scratch_image_with_busybox_runs_the_same_binary() {
    require_docker!();
    let c = Container::start("scratch", &[SCRATCH]);
    c.wait_logs(&["hello: up on scratch as root"]);
    // No distribution: no libc, no loader; only busybox and baseinit.
    let lib = c.exec(&["ls", "/lib", "/lib64", "/usr/lib"]);
    assert_ne!(lib.code, 0, "{}", lib.text());
    let status = c.exec(&["sv", "status", "hello"]);
    assert!(status.stdout.starts_with("run: hello: (pid "), "{}", status.text());
    let who = c.exec(&["setuser", "nobody", "id"]);
    assert_eq!(
        who.stdout.trim(),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)",
        "{}",
        who.text()
    );
    let took = c.stop();
    eprintln!("docker stop of the scratch image took {} ms", took.as_millis());
    let logs = c.logs();
    assert_eq!(c.exit_code(), 0, "{logs}");
    line_with(&logs, &["hello: got SIGTERM, goodbye"]);
    line_with(&logs, &["exiting with code 0"]);
}

/// runit images write `log/run` as `exec svlogd -tt ./main`: on an image
/// with no runit at all (scratch, busybox), `svlogd` is baseinit's applet
/// and the service's lines land in `main/current`, stamped, rotated by the
/// directory's `config` (`s`, `n`).
#[test]
fn svlogd_log_run_scripts_work_on_scratch_without_runit() {
    require_docker!();
    let tag = test_image(
        "svlogd-scratch",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {SCRATCH}\nCOPY chatty /etc/service/chatty/\nRUN ln -s baseinit /usr/local/bin/svlogd && mkdir -p /etc/service/chatty/log/main && printf 's4096\\nn3\\n' > /etc/service/chatty/log/main/config\n"
                ),
                0o644,
            ),
            (
                "chatty/run",
                "#!/bin/sh\ni=0\nwhile [ $i -lt 400 ]; do echo \"line $i of a chatty service\"; i=$((i+1)); done\ntouch /tmp/done\nexec sleep 1000\n",
                0o755,
            ),
            ("chatty/log/run", "#!/bin/sh\nexec svlogd -tt ./main\n", 0o755),
        ],
    );
    let c = Container::start("svlogd-scratch", &[&tag]);
    let deadline = Instant::now() + BOOT;
    while c.exec(&["test", "-e", "/tmp/done"]).code != 0 {
        assert!(Instant::now() < deadline, "the service never finished:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let which = c.exec(&["ls", "-l", "/usr/bin/svlogd", "/usr/bin/runsv"]);
    assert_ne!(which.code, 0, "no runit on this image: {}", which.text());
    // svlogd writes as lines come: wait for the last one.
    let deadline = Instant::now() + BOOT;
    let all = loop {
        let out = c.exec(&[
            "sh",
            "-c",
            "cat /etc/service/chatty/log/main/@* /etc/service/chatty/log/main/current",
        ]);
        if out.stdout.contains("line 399 of") {
            break out.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "line 399 never reached the log:\n{}",
            out.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let files = c.exec(&["sh", "-c", "ls /etc/service/chatty/log/main | grep -c '^@'"]);
    assert_eq!(
        files.stdout.trim(),
        "3",
        "n3 keeps three rotated files: {}",
        files.text()
    );
    let current = c.exec(&["head", "-n", "1", "/etc/service/chatty/log/main/current"]);
    // -tt: YYYY-MM-DD_HH:MM:SS.xxxxx before each line.
    let (stamp, _) = current.stdout.split_once(' ').expect("a stamped line");
    assert_eq!((stamp.len(), &stamp[10..11]), (25, "_"), "{}", current.text());
    // What is kept is the end of the stream, in order and whole.
    let numbers: Vec<u32> = all
        .lines()
        .map(|l| {
            let text = l.split_once(' ').map_or(l, |(_, t)| t);
            text.strip_prefix("line ")
                .and_then(|t| t.strip_suffix(" of a chatty service"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a torn line: {l:?}"))
        })
        .collect();
    assert_eq!(numbers.last(), Some(&399));
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "lost or repeated lines");
    let took = c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
    assert!(took < Duration::from_secs(9), "docker stop took {took:?}");
}

/// The base image relays /dev/log (BASEINIT_SYSLOG=1): `logger` from a
/// service and from `docker exec` lands in `docker logs` once each, with
/// its tag; `status` counts them.
#[test]
fn base_image_relays_dev_log_into_docker_logs() {
    require_docker!();
    let tag = test_image(
        "syslog",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY talker /etc/service/talker/\n"),
                0o644,
            ),
            (
                "talker/run",
                "#!/bin/sh\nlogger -t talker -p daemon.warning \"from a service\"\nexec sleep 1000\n",
                0o755,
            ),
        ],
    );
    let c = Container::start("syslog", &[&tag]);
    c.wait_logs(&["syslog:talker | from a service"]);
    let sent = c.exec(&["logger", "-t", "exec", "from docker exec"]);
    assert_eq!(sent.code, 0, "{}", sent.text());
    let logs = c.wait_logs(&["syslog:exec | from docker exec"]);
    assert_eq!(logs.matches("syslog:talker | from a service").count(), 1, "{logs}");
    assert_eq!(logs.matches("syslog:exec | from docker exec").count(), 1, "{logs}");
    let status = c.exec(&["baseinit", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json");
    assert_eq!(json["syslog"]["received"], 2, "{json:#}");
    assert_eq!(json["syslog"]["dropped"], 0, "{json:#}");
    c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
}

/// Waits until `docker inspect` says the container's health is `want`.
fn wait_health(c: &Container, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let status = c.inspect("{{.State.Health.Status}}");
        if status == want {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{}: health is still {status:?}, not {want:?}; last probe: {}",
            c.name,
            c.inspect("{{json .State.Health.Log}}")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_base_images_healthcheck_turns_unhealthy_in_a_crash_loop() {
    require_docker!();
    // The base image declares the health check; the runs below only make
    // Docker probe it more often than every 10 s.
    let declared = docker(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", BASE], COMMAND);
    assert_eq!(declared.stdout.trim(), r#"["CMD","/usr/local/bin/baseinit","health"]"#);
    let fast = [
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--health-start-period",
        "0s",
    ];
    let image = test_image(
        "health",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY service/ /etc/service/\n"),
                0o644,
            ),
            ("service/web/run", "#!/bin/sh\nexec sleep 600\n", 0o755),
            ("service/crashy/run", "#!/bin/sh\nsleep 2\nexit 3\n", 0o755),
            ("service/crashy/down", "", 0o644),
        ],
    );
    // Healthy: every service that should be up is up.
    let mut args: Vec<&str> = fast.to_vec();
    args.push(&image);
    let c = Container::start("healthy", &args);
    wait_health(&c, "healthy");
    // A service stuck in a crash loop: `sv up` the one that keeps exiting.
    let out = c.exec(&["sv", "up", "crashy"]);
    assert_eq!(out.code, 0, "{}", out.text());
    wait_health(&c, "unhealthy");
    let log = c.inspect("{{json .State.Health.Log}}");
    assert!(log.contains("unhealthy: crashy"), "{log}");
    c.stop();
    assert_eq!(c.exit_code(), 0);

    // As a non-root user too: the check finds that user's baseinit.
    let mut args: Vec<&str> = fast.to_vec();
    args.extend_from_slice(&["--user", "1000:1000", &image]);
    let c = Container::start("healthy-user", &args);
    wait_health(&c, "healthy");
    c.stop();
}

#[test]
fn example_image_starts_the_redis_client_only_once_redis_is_ready_and_stops_it_first() {
    require_docker!();
    let c = Container::start("example-order", &[EXAMPLE]);
    c.wait_logs(&["visits | visits: redis answered, counting", "visits | visits: 1"]);
    c.stop();
    let logs = c.logs();
    assert_eq!(c.exit_code(), 0, "{logs}");
    let at = |needle: &str| {
        logs.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the logs:\n{logs}"))
    };
    // Started only once redis answered PING (its readiness probe)...
    assert!(at("service redis: ready") < at("service visits: started"), "{logs}");
    assert!(!logs.contains("giving up"), "visits started too early:\n{logs}");
    // ...and stopped before it.
    assert!(
        at("service visits: stopping") < at("service redis: stopping"),
        "redis stopped before its client:\n{logs}"
    );
}

/// The chaos soak's short variant in a real container: random SIGKILLs of
/// services from the host, signal storms through `docker kill -s` and
/// straight to the container's PID 1, services added and removed with
/// `docker exec`, orphans nonstop; then `docker stop`.
#[test]
fn chaos_in_a_container_loses_nothing_and_docker_stop_still_takes_milliseconds() {
    require_docker!();
    const SERVICES: usize = 10;
    let mut files: Vec<(String, String, u32)> = vec![(
        "Dockerfile".into(),
        format!("FROM {BASE}\nCOPY service/ /etc/service/\n"),
        0o644,
    )];
    let toml = "max-restarts = 1000000\n[backoff]\ninitial = \"10ms\"\nmax = \"50ms\"\n";
    for i in 0..SERVICES {
        let name = format!("s{i:02}");
        files.push((
            format!("service/{name}/run"),
            format!("#!/bin/sh\necho x >> /tmp/starts-{name}\nexec sleep {}\n", 1000 + i),
            0o755,
        ));
        files.push((format!("service/{name}/service.toml"), toml.into(), 0o644));
    }
    files.push((
        "service/orphans/run".into(),
        "#!/bin/sh\nwhile :; do (sleep 0.01 &); sleep 0.01; done\n".into(),
        0o755,
    ));
    let borrowed: Vec<(&str, &str, u32)> = files.iter().map(|(p, b, m)| (p.as_str(), b.as_str(), *m)).collect();
    let image = test_image("chaos", &borrowed);
    let c = Container::start("chaos", &[&image]);
    let init: i32 = c
        .inspect("{{.State.Pid}}")
        .parse()
        .expect("the container's PID 1 on the host");
    let wait_until = |what: &str, probe: &dyn Fn() -> bool| {
        let deadline = Instant::now() + BOOT;
        while !probe() {
            assert!(Instant::now() < deadline, "{what}; logs:\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let all_up = || {
        let live = common::sleeping_services(init);
        (0..SERVICES as u32).all(|i| live.get(&(1000 + i)).is_some_and(|p| p.len() == 1))
    };
    wait_until("every service to start", &all_up);
    std::thread::sleep(Duration::from_millis(500));
    let (rss_start, fds_start) = common::footprint(init);
    let starts = |i: usize| -> usize {
        let out = c.exec(&["sh", "-c", &format!("cat /tmp/starts-s{i:02} 2>/dev/null || true")]);
        out.stdout.lines().count()
    };

    let mut rng = common::Rng(0x5eed_0000_0000_0001 ^ std::process::id() as u64);
    let mut kills = [0usize; SERVICES];
    let mut signals = 0usize;
    let mut changes = 0usize;
    let started = Instant::now();
    let mut last_change = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        let i = rng.below(SERVICES);
        // Kill only a run whose previous kill was answered by a restart,
        // looking for its pid after that: the old one is reaped by then.
        if starts(i) == kills[i] + 1
            && let Some([pid]) = common::sleeping_services(init).get(&(1000 + i as u32)).map(|p| &p[..])
            // SAFETY: kill(2) on a pid found as a child of the container's init.
            && unsafe { libc::kill(*pid, libc::SIGKILL) } == 0
        {
            kills[i] += 1;
        }
        for _ in 0..rng.below(20) {
            let signal = [libc::SIGCHLD, libc::SIGHUP, libc::SIGUSR1][rng.below(3)];
            // SAFETY: kill(2) on the container's PID 1, found by docker inspect.
            unsafe { libc::kill(init, signal) };
            signals += 1;
        }
        if last_change.elapsed() > Duration::from_secs(1) {
            last_change = Instant::now();
            let _ = try_docker(&["kill", "-s", "HUP", &c.name], COMMAND);
            signals += 1;
            let script = "if [ -d /etc/service/extra ]; then mv /etc/service/extra /tmp/extra-$$; \
                          else mkdir -p /tmp/x/extra && printf '#!/bin/sh\\nexec sleep 3000\\n' > /tmp/x/extra/run \
                          && chmod +x /tmp/x/extra/run && mv /tmp/x/extra /etc/service/extra; fi";
            let out = c.exec(&["sh", "-c", script]);
            assert_eq!(out.code, 0, "{}", out.text());
            changes += 1;
        }
    }
    // The last change may have left `extra` in: take it out for the count.
    let _ = c.exec(&[
        "sh",
        "-c",
        "[ -d /etc/service/extra ] && mv /etc/service/extra /tmp/extra-end || true",
    ]);
    for (i, &killed) in kills.iter().enumerate() {
        wait_until(&format!("s{i:02}: one restart per kill ({killed})"), &|| {
            starts(i) == killed + 1
        });
    }
    wait_until("every service up, the added one gone", &|| {
        all_up() && common::sleeping_services(init).len() == SERVICES
    });
    std::thread::sleep(Duration::from_millis(300));
    for (i, &killed) in kills.iter().enumerate() {
        assert_eq!(starts(i), killed + 1, "s{i:02}: restarts must match kills");
    }
    let zombies = common::lasting_zombies(init);
    assert!(zombies.is_empty(), "zombies in the container: {zombies:?}");
    let (rss_end, fds_end) = common::footprint(init);
    let took = c.stop();
    let logs = c.logs();
    let total: usize = kills.iter().sum();
    eprintln!(
        "chaos in a container, 15 s: {total} SIGKILLs and restarts, {signals} signals to PID 1, \
         {changes} service-directory changes, {} orphans reaped; RSS {rss_start} → {rss_end} kB, \
         fds {fds_start} → {fds_end}; docker stop {took:?}",
        orphans_reaped(&logs)
    );
    assert_eq!(c.exit_code(), 0, "{}", tail_of(&logs));
    assert_eq!(fds_end, fds_start, "open fds of PID 1 grew");
    assert!(
        rss_end <= rss_start + 1024,
        "RSS grew from {rss_start} kB to {rss_end} kB"
    );
    assert!(
        !logs.contains("after the stop signal"),
        "a service needed SIGKILL:\n{}",
        tail_of(&logs)
    );
}

fn tail_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// baseinit in a second container that shares a pause-like container's PID
/// namespace (Kubernetes' `shareProcessNamespace`, `docker run --pid
/// container:X`): not PID 1 there, it is a subreaper, reaps what its
/// services orphan, and `docker stop` stops its tree, leaving no zombie for
/// the other container's PID 1 (which reaps nothing) and the other
/// container running.
#[test]
fn in_a_shared_pid_namespace_baseinit_reaps_its_orphans_and_stops_only_its_tree() {
    require_docker!();
    let pause = Container::start("pause", &["--entrypoint", "sleep", BASE, "infinity"]);
    let tag = test_image(
        "sharedpid",
        &[
            (
                "Dockerfile",
                "FROM baseinit/debian:test\nCOPY orphans /etc/service/orphans/run\n",
                0o644,
            ),
            // A double fork every 50 ms: each `sleep` is orphaned at once.
            (
                "orphans",
                "#!/bin/sh\necho orphans: up\nwhile :; do (sleep 0.1 &); sleep 0.05; done\n",
                0o755,
            ),
        ],
    );
    let shared = format!("container:{}", pause.name);
    let c = Container::start("shared", &["--pid", &shared, &tag]);
    c.wait_logs(&["orphans | orphans: up"]);
    // PID 1 is the pause container's sleep; baseinit is not it.
    let ids = c.exec(&[
        "sh",
        "-c",
        "cat /proc/1/comm; for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = baseinit ] && echo ${p#/proc/}; done",
    ]);
    let mut lines = ids.stdout.lines();
    assert_eq!(lines.next(), Some("sleep"), "{}", ids.text());
    assert_ne!(lines.next(), Some("1"), "{}", ids.text());
    // Orphans come and go for a while: wait until some have been reaped.
    std::thread::sleep(Duration::from_millis(500));
    let took = c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
    assert!(took < Duration::from_secs(9), "docker stop took {took:?}");
    let logs = c.logs();
    assert!(orphans_reaped(&logs) > 0, "baseinit reaped no orphan:\n{logs}");
    // Nothing of baseinit's tree is left, not even a zombie; the pause
    // container runs on.
    assert_eq!(pause.inspect("{{.State.Running}}"), "true");
    let zombies = pause.exec(&[
        "sh",
        "-c",
        "n=0; for s in /proc/[0-9]*/stat; do case \"$(cut -d' ' -f3 \"$s\" 2>/dev/null)\" in Z) n=$((n+1));; esac; done; echo $n",
    ]);
    assert_eq!(zombies.stdout.trim(), "0", "{}", zombies.text());
    let left = pause.exec(&["sh", "-c", "ls -d /proc/[0-9]* | wc -l"]);
    assert!(
        left.stdout.trim().parse::<u32>().is_ok_and(|n| n <= 4),
        "processes left beside the pause container's: {}",
        left.text()
    );
}

/// The image of the restricted runs: `web` runs as the container's own uid
/// (given in service.toml), `crashy` crash-loops once /tmp/crash exists.
fn restricted_image() -> String {
    test_image(
        "restricted",
        &[
            (
                "Dockerfile",
                "FROM baseinit/debian:test\nCOPY web /etc/service/web/\nCOPY crashy /etc/service/crashy/\n",
                0o644,
            ),
            (
                "web/run",
                "#!/bin/sh\necho \"web: up as $(id -u):$(id -g)\"\nexec sleep 1000\n",
                0o755,
            ),
            ("web/service.toml", "user = \"1000780000\"\n", 0o644),
            (
                "crashy/run",
                "#!/bin/sh\nif [ -e /tmp/crash ]; then echo crashing; exit 3; fi\necho crashy: up\nexec sleep 1000\n",
                0o755,
            ),
        ],
    )
}

/// Waits until `baseinit health`, run in the container, exits `want`.
fn wait_health_code(c: &Container, want: i32) {
    let deadline = Instant::now() + BOOT;
    loop {
        let out = c.exec(&["baseinit", "health"]);
        if out.code == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "baseinit health still exits {} (want {want}):\n{}\n{}",
            out.code,
            out.text(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// As Kubernetes' restricted profile and OpenShift run it: a uid with no
/// passwd entry, gid 0, a read-only root with a tmpfs /run and /tmp, no
/// capabilities, no new privileges. The service whose `user` is that uid
/// runs as it, `health` answers, `sv restart` (as the same uid) restarts a
/// service, a crash loop turns the health unhealthy, and `docker stop` is
/// graceful, exit 0.
#[test]
fn a_restricted_container_runs_answers_health_and_sv_and_stops_gracefully() {
    require_docker!();
    let tag = restricted_image();
    let c = Container::start(
        "restricted",
        &[
            "--user",
            "1000780000:0",
            "--read-only",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            &tag,
        ],
    );
    c.wait_logs(&["web | web: up as 1000780000:0", "crashy | crashy: up"]);
    wait_health_code(&c, 0);
    let restart = c.exec(&["sv", "restart", "web"]);
    assert_eq!(restart.code, 0, "{}", restart.text());
    assert!(restart.stdout.starts_with("ok: run: web"), "{}", restart.text());
    let logs = c.wait_logs(&["web | web: up as 1000780000:0"]);
    let ups = || c.logs().matches("web | web: up as").count();
    let deadline = Instant::now() + BOOT;
    while ups() < 2 {
        assert!(Instant::now() < deadline, "web did not come back:\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let touched = c.exec(&["touch", "/tmp/crash"]);
    assert_eq!(touched.code, 0, "{}", touched.text());
    let crash = c.exec(&["sv", "restart", "crashy"]);
    assert!(crash.code == 0 || crash.code == 1, "{}", crash.text());
    wait_health_code(&c, 1);
    let took = c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
    assert!(took < Duration::from_secs(9), "docker stop took {took:?}");
    // Services' exits aside, nothing was worth a warning: not the
    // environment (root's files: one info line), not the runit state, no
    // failed start.
    let logs = c.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" WARN ") && !l.contains(": exited with "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(!logs.contains("cannot start"), "{logs}");
}

/// The same with nothing writable at all (no tmpfs): `health` is answered
/// over the abstract socket, baseinit's `sv` controls services over it
/// (no `supervise/` can be made anywhere), and the stop is still graceful.
#[test]
fn a_container_with_nothing_writable_still_answers_health() {
    require_docker!();
    let tag = restricted_image();
    let c = Container::start(
        "readonly",
        &[
            "--user",
            "1000780000:0",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            &tag,
        ],
    );
    c.wait_logs(&["web | web: up as 1000780000:0", "answered over an abstract socket"]);
    wait_health_code(&c, 0);
    let status = c.exec(&["baseinit", "status"]);
    assert_eq!(status.code, 0, "{}", status.text());
    assert!(status.stdout.contains("web"), "{}", status.text());
    let restart = c.exec(&["sv", "restart", "web"]);
    assert_eq!(restart.code, 0, "{}", restart.text());
    assert!(restart.stdout.starts_with("ok: run: web"), "{}", restart.text());
    let ups = || c.logs().matches("web | web: up as").count();
    let deadline = Instant::now() + BOOT;
    while ups() < 2 {
        assert!(Instant::now() < deadline, "web did not come back:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let down = c.exec(&["sv", "down", "web"]);
    assert_eq!(down.code, 0, "{}", down.text());
    let status = c.exec(&["sv", "status", "web"]);
    assert!(status.stdout.starts_with("down: web: "), "{}", status.text());
    let took = c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
    assert!(took < Duration::from_secs(9), "docker stop took {took:?}");
}

// ---------------------------------------------------------------------------
// Rootless Podman

/// The unprivileged user the rootless Podman test runs as (created here,
/// with subordinate ids).
const PODMAN_USER: &str = "baseinit-podman";

/// `podman ARGS` as [`PODMAN_USER`], through a login shell (`su -`), so
/// that Podman finds its rootless storage and runtime directory.
fn podman(args: &[&str], timeout: Duration) -> Out {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let mut command = Command::new("su");
    command.args(["-", PODMAN_USER, "-c", &format!("podman {}", quoted.join(" "))]);
    try_run(command, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Makes [`PODMAN_USER`] (with subordinate uids and gids for its user
/// namespace) unless it exists.
fn podman_user() {
    let exists = Command::new("id")
        .arg(PODMAN_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let mut command = Command::new("useradd");
        command.args(["-m", "-s", "/bin/sh", PODMAN_USER]);
        let out = try_run(command, COMMAND).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.code, 0, "useradd: {}", out.text());
    }
    let has = |file: &str| {
        std::fs::read_to_string(file).is_ok_and(|t| t.lines().any(|l| l.starts_with(&format!("{PODMAN_USER}:"))))
    };
    if !has("/etc/subuid") || !has("/etc/subgid") {
        let mut command = Command::new("usermod");
        command.args([
            "--add-subuids",
            "300000-365535",
            "--add-subgids",
            "300000-365535",
            PODMAN_USER,
        ]);
        let out = try_run(command, COMMAND).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.code, 0, "usermod: {}", out.text());
    }
}

/// Waits until `podman logs NAME` holds `needle`.
fn wait_podman_logs(name: &str, needle: &str) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let logs = podman(&["logs", name], COMMAND).text();
        if logs.contains(needle) {
            return logs;
        }
        assert!(Instant::now() < deadline, "{name}: no {needle:?} in:\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rootless Podman, as an unprivileged user with its own user namespace:
/// the example image runs, `podman healthcheck run` says healthy, `podman
/// stop` is graceful and quick with exit 0, a main command's exit code
/// passes through; `podman kube play` of the manual's Pod manifest runs it
/// with the liveness probe on `baseinit health`, and stopping the pod is
/// graceful too.
#[test]
fn rootless_podman_runs_the_example_checks_health_stops_and_plays_the_pod() {
    require_docker!();
    require!(Capability::Root);
    require!(Capability::Podman);
    podman_user();
    // Leftovers of an earlier, failed run.
    podman(&["pod", "rm", "-af"], COMMAND);
    podman(&["rm", "-af"], COMMAND);
    let work = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tar = work.path().join("example.tar");
    let saved = docker(&["save", "-o", &tar.display().to_string(), EXAMPLE], BUILD);
    assert_eq!(saved.code, 0, "{}", saved.text());
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = podman(&["load", "-q", "-i", &tar.display().to_string()], BUILD);
    assert_eq!(loaded.code, 0, "{}", loaded.text());
    let image = "localhost/baseinit/example:test";

    let run = podman(&["run", "-d", "--network", "none", "--name", "example", image], COMMAND);
    assert_eq!(run.code, 0, "{}", run.text());
    wait_podman_logs("example", "heartbeat | heartbeat: up as root");
    let health = podman(&["healthcheck", "run", "example"], COMMAND);
    assert_eq!(health.code, 0, "{}", health.text());
    let started = Instant::now();
    let stop = podman(&["stop", "-t", "10", "example"], COMMAND);
    let took = started.elapsed();
    assert_eq!(stop.code, 0, "{}", stop.text());
    assert!(took < Duration::from_secs(9), "podman stop took {took:?}");
    let code = podman(&["inspect", "-f", "{{.State.ExitCode}}", "example"], COMMAND);
    assert_eq!(code.stdout.trim(), "0", "{}", code.text());
    let logs = podman(&["logs", "example"], COMMAND).text();
    assert!(logs.contains("exiting with code 0"), "{logs}");
    podman(&["rm", "example"], COMMAND);

    let main = podman(
        &["run", "--rm", "--network", "none", image, "--", "sh", "-c", "exit 3"],
        COMMAND,
    );
    assert_eq!(main.code, 3, "{}", main.text());

    // The manual's Pod (docs/status-and-health.md), as written there, with
    // this image: the test and the manual cannot drift apart.
    let manual = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-and-health.md"))
        .expect("docs/status-and-health.md");
    let pod = manual
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml))
        .find(|yaml| yaml.contains("kind: Pod"))
        .expect("the manual's Pod manifest");
    assert!(pod.contains("image: example/app"), "{pod}");
    let manifest = work.path().join("pod.yaml");
    write_file(
        &manifest,
        &pod.replace("image: example/app", &format!("image: {image}")),
        0o644,
    );
    let manifest = manifest.display().to_string();
    let play = podman(&["kube", "play", "--network", "none", &manifest], COMMAND);
    assert_eq!(play.code, 0, "{}", play.text());
    wait_podman_logs("app-app", "heartbeat | heartbeat: up as root");
    let health = podman(&["healthcheck", "run", "app-app"], COMMAND);
    assert_eq!(health.code, 0, "{}", health.text());
    // The Pod's terminationGracePeriodSeconds; the manual's delay (5 s) is
    // spent first, then the ordered stop.
    let stop = podman(&["pod", "stop", "-t", "20", "app"], COMMAND);
    assert_eq!(stop.code, 0, "{}", stop.text());
    let code = podman(&["inspect", "-f", "{{.State.ExitCode}}", "app-app"], COMMAND);
    assert_eq!(code.stdout.trim(), "0", "{}", code.text());
    let logs = podman(&["logs", "app-app"], COMMAND).text();
    assert!(logs.contains("exiting with code 0"), "{logs}");
    assert!(
        logs.contains("shutdown delay: the services keep running for 5000 ms"),
        "the manual's BASEINIT_SHUTDOWN_DELAY: {logs}"
    );
    let down = podman(&["kube", "down", &manifest], COMMAND);
    assert_eq!(down.code, 0, "{}", down.text());
}

/// `[limits]` seen from inside a container's service, under `docker run
/// --ulimit nofile=1024:2048`: lower limits, a higher nice value and OOM
/// score and a umask apply; a limit above the container's hard one is
/// refused at load (Docker drops CAP_SYS_RESOURCE), the service `broken`
/// with the reason while the other runs; PID 1's own OOM score stays.
#[test]
fn limits_are_seen_from_inside_a_container_service() {
    require_docker!();
    let image = test_image(
        "limits",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY service/ /etc/service/\n"),
                0o644,
            ),
            (
                "service/limited/run",
                "#!/bin/sh\n{ grep -E '^Max (open files|processes|core file size)' /proc/self/limits; grep Umask /proc/self/status; \
                 echo \"oom $(cat /proc/self/oom_score_adj)\"; echo \"nice $(cut -d' ' -f19 /proc/self/stat)\"; } > /tmp/seen.part\n\
                 mv /tmp/seen.part /tmp/seen\nexec sleep 1000\n",
                0o755,
            ),
            (
                "service/limited/service.toml",
                "[limits]\nnofile = { soft = 512, hard = 1024 }\nnproc = 100\ncore = 0\nnice = 5\numask = \"027\"\noom-score-adj = 500\n",
                0o644,
            ),
            ("service/too-high/run", "#!/bin/sh\nexec sleep 1000\n", 0o755),
            ("service/too-high/service.toml", "[limits]\nnofile = 4096\n", 0o644),
        ],
    );
    let c = Container::start(
        "limits",
        &["--ulimit", "nofile=1024:2048", "--ulimit", "nproc=1000:1000", &image],
    );
    let deadline = Instant::now() + BOOT;
    let seen = loop {
        let out = c.exec(&["cat", "/tmp/seen"]);
        if out.code == 0 {
            break out.stdout;
        }
        assert!(Instant::now() < deadline, "no /tmp/seen:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let squeezed: Vec<String> = seen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "Max processes 100 100 processes",
        "Max open files 512 1024 files",
        "Max core file size 0 0 bytes",
        "Umask: 0027",
        "oom 500",
        "nice 5",
    ] {
        assert!(squeezed.iter().any(|l| l == want), "no {want:?} in:\n{seen}");
    }
    let status = c.exec(&["baseinit", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json parses");
    let too_high = common::service_in(&json, "too-high").unwrap_or_else(|| panic!("too-high missing: {json:#}"));
    assert_eq!(too_high["state"], "broken", "{json:#}");
    let reason = too_high["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(
            "limits.nofile 4096 is above baseinit's own hard limit 2048: raising it needs CAP_SYS_RESOURCE, which baseinit lacks"
        ),
        "{reason}"
    );
    assert_eq!(
        c.exec(&["cat", "/proc/1/oom_score_adj"]).stdout.trim(),
        "0",
        "PID 1's own"
    );
    c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
}

/// `env-file`, `env-dir`, `${VAR}` and `[secrets]` seen from inside a
/// container's service: the secret a bind mount of a file (as Compose's
/// `secrets:` are), `${VAR}` from `docker run -e`; the secret's value in
/// that service's environment only, not in `docker logs`, `status --json`
/// or the container environment's files.
#[test]
fn environment_files_and_secrets_are_seen_from_inside_a_container_service() {
    require_docker!();
    const SECRET: &str = "S3CRET-IN-DOCKER-7c4a8d09ca";
    let image = test_image(
        "environment",
        &[
            (
                "Dockerfile",
                &format!("FROM {BASE}\nCOPY service/ /etc/service/\nCOPY app.env /etc/app.env\nRUN mkdir /srv/app\n"),
                0o644,
            ),
            (
                "app.env",
                "SHARED=shared\nBY_LOCAL=shared\nHOME=/from/env-file\n",
                0o644,
            ),
            (
                "service/app/service.toml",
                "command = [\"/bin/sh\", \"-c\", \"pwd > /tmp/pwd; env -0 > /tmp/env.part && mv /tmp/env.part /tmp/env; exec sleep 1000\"]\n\
                 working-directory = \"${APP_DIR:-/nonexistent}\"\n\
                 env-file = [\"/etc/app.env\", \"./local.env\"]\nenv-dir = \"./env\"\n\
                 [environment]\nURL = \"http://${DB_HOST}:5432\"\n\
                 [secrets]\nDB_PASSWORD = \"/run/secrets/db_password\"\n",
                0o644,
            ),
            ("service/app/local.env", "BY_LOCAL=local\n", 0o644),
            ("service/app/env/FROM_DIR", "dir\n", 0o644),
            (
                "service/other/run",
                "#!/bin/sh\nenv -0 > /tmp/other.part && mv /tmp/other.part /tmp/other\nexec sleep 1000\n",
                0o755,
            ),
        ],
    );
    let secrets = tempfile::tempdir().expect("tempdir");
    let secret = secrets.path().join("db_password");
    write_file(&secret, &format!("{SECRET}\n"), 0o644);
    let mount = format!("{}:/run/secrets/db_password:ro", secret.display());
    let c = Container::start(
        "environment",
        &[
            "-v",
            &mount,
            "-e",
            "DB_HOST=db.internal",
            "-e",
            "APP_DIR=/srv/app",
            &image,
        ],
    );
    let read = |file: &str| {
        let deadline = Instant::now() + BOOT;
        loop {
            let out = c.exec(&["cat", file]);
            if out.code == 0 {
                break common::parse_env0(out.stdout.as_bytes());
            }
            assert!(Instant::now() < deadline, "no {file}:\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let app = read("/tmp/env");
    let other = read("/tmp/other");
    let get = |env: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>, name: &str| {
        env.get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    for (name, value) in [
        ("SHARED", "shared"),
        ("BY_LOCAL", "local"),
        ("FROM_DIR", "dir"),
        ("HOME", "/from/env-file"),
        ("URL", "http://db.internal:5432"),
        ("DB_HOST", "db.internal"),
        ("DB_PASSWORD", SECRET),
    ] {
        assert_eq!(get(&app, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(c.exec(&["cat", "/tmp/pwd"]).stdout.trim(), "/srv/app");
    for name in ["SHARED", "FROM_DIR", "URL", "DB_PASSWORD"] {
        assert_eq!(get(&other, name), None, "{name} reached another service");
    }
    let status = c.exec(&["baseinit", "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.text());
    let dumps = c.exec(&[
        "sh",
        "-c",
        "cat /etc/container_environment/* /etc/container_environment.sh /etc/container_environment.json",
    ]);
    assert!(dumps.stdout.contains("db.internal"), "{}", dumps.text());
    c.stop();
    assert_eq!(c.exit_code(), 0, "{}", c.logs());
    for (what, text) in [
        ("status --json", status.text()),
        ("the container environment", dumps.text()),
        ("docker logs", c.logs()),
    ] {
        assert!(!text.contains(SECRET), "the secret is in {what}:\n{text}");
    }
}
