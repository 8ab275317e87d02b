//! `[limits]` in service.toml, seen from inside real services: each limit
//! in `/proc/self/limits`, the nice value in `/proc/self/stat`, the umask in
//! `/proc/self/status`, the OOM score in `/proc/self/oom_score_adj`; bad
//! values and what baseinit may not grant as errors at load, with the
//! other services running; and baseinit's own OOM score untouched.
//!
//! Every process a test starts is stopped by its pid (`Baseinit`'s).
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, require, service_in, wait_lines};
use nix::sys::resource::{Resource, getrlimit};

const LONG: Duration = Duration::from_secs(30);

/// A `run` that writes what the service sees of itself into `$OUT/NAME`
/// (four files: limits, stat, umask, oom), then sleeps.
fn observer(tree: &Tree, name: &str, toml: &str) {
    tree.service(
        name,
        &format!(
            r#"cat /proc/self/limits > "$OUT/{name}.limits"
cat /proc/self/stat > "$OUT/{name}.stat"
grep Umask /proc/self/status > "$OUT/{name}.umask"
cat /proc/self/oom_score_adj > "$OUT/{name}.oom"
echo done >> "$OUT/{name}.done"
exec sleep 60"#
        ),
    );
    if !toml.is_empty() {
        tree.service_file(name, "service.toml", toml, 0o644);
    }
}

/// What `name`'s service saw, once it has written it all.
struct Seen {
    limits: String,
    stat: String,
    umask: String,
    oom: String,
}

impl Seen {
    fn of(tree: &Tree, name: &str) -> Seen {
        wait_lines(tree, &format!("{name}.done"), 1, LONG);
        Seen {
            limits: tree.read(&format!("{name}.limits")),
            stat: tree.read(&format!("{name}.stat")),
            umask: tree.read(&format!("{name}.umask")),
            oom: tree.read(&format!("{name}.oom")),
        }
    }

    /// (soft, hard) of the `/proc/PID/limits` line starting with `what`
    /// ("Max open files").
    fn limit(&self, what: &str) -> (String, String) {
        let line = self
            .limits
            .lines()
            .find_map(|l| l.strip_prefix(what))
            .unwrap_or_else(|| panic!("no {what:?} in {}", self.limits));
        let mut values = line.split_whitespace();
        let mut next = || values.next().unwrap_or_default().to_owned();
        (next(), next())
    }

    /// The nice value (field 19 of `/proc/PID/stat`).
    fn nice(&self) -> i32 {
        nice_of(&self.stat)
    }
}

fn nice_of(stat: &str) -> i32 {
    let after = stat.rsplit_once(')').expect("stat").1;
    after
        .split_whitespace()
        .nth(16)
        .expect("nice field")
        .parse()
        .expect("a number")
}

fn show(value: u64) -> String {
    if value == nix::libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}

/// This process's hard limit of `resource` (baseinit's, started by it).
fn hard(resource: Resource) -> u64 {
    getrlimit(resource).expect("getrlimit").1
}

fn own_nice() -> i32 {
    nice_of(&std::fs::read_to_string("/proc/self/stat").expect("stat"))
}

fn oom_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .expect("oom_score_adj")
        .trim()
        .parse()
        .expect("a number")
}

/// Each key, seen from inside a service run by baseinit as PID 1 of a
/// namespace; a service without `[limits]` beside it keeps baseinit's, and
/// so does baseinit itself (an OOM score set in its memory would be its
/// own: such a child starts by fork).
#[test]
fn each_limit_is_seen_from_inside_the_service() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Within this process's hard limits: in a user namespace baseinit may
    // not raise them (the kernel asks for CAP_SYS_RESOURCE in the initial
    // one), nor lower its nice value or OOM score.
    let nofile_hard = hard(Resource::RLIMIT_NOFILE).min(4096);
    let nofile_soft = nofile_hard.min(1024);
    let nproc = hard(Resource::RLIMIT_NPROC).min(512);
    // Sizes as strings where they fit, as numbers where they do not.
    let size = |resource, bytes: u64, text: &str| {
        if hard(resource) >= bytes {
            (bytes, format!("{text:?}"))
        } else {
            (hard(resource), hard(resource).to_string())
        }
    };
    let (memlock, memlock_text) = size(Resource::RLIMIT_MEMLOCK, 64 * 1024, "64KiB");
    let (address_space, as_text) = size(Resource::RLIMIT_AS, 2 << 30, "2GiB");
    let (fsize, fsize_text) = size(Resource::RLIMIT_FSIZE, 1_000_000, "1MB");
    let cpu_hard = hard(Resource::RLIMIT_CPU);
    let cpu_soft = cpu_hard.min(3600);
    let stack_unlimited = hard(Resource::RLIMIT_STACK) == nix::libc::RLIM_INFINITY;
    let nice = own_nice().max(5);
    let oom = oom_of(std::process::id() as i32).max(500);
    let stack = if stack_unlimited {
        "stack = { soft = \"8MiB\", hard = \"unlimited\" }\n"
    } else {
        ""
    };
    observer(
        &tree,
        "limited",
        &format!(
            "[limits]\nnofile = {{ soft = {nofile_soft}, hard = {nofile_hard} }}\nnproc = {nproc}\ncore = 0\n\
             memlock = {memlock_text}\nas = {as_text}\nfsize = {fsize_text}\ncpu = {{ soft = {cpu_soft} }}\n{stack}\
             nice = {nice}\numask = \"027\"\noom-score-adj = {oom}\n"
        ),
    );
    observer(&tree, "plain", "");
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    let limited = Seen::of(&tree, "limited");
    let plain = Seen::of(&tree, "plain");
    let pid1_oom = oom_of(init.pid());
    init.stop(LONG);

    let both = |n: u64| (show(n), show(n));
    assert_eq!(
        limited.limit("Max open files"),
        (show(nofile_soft), show(nofile_hard)),
        "{}",
        limited.limits
    );
    assert_eq!(limited.limit("Max processes"), both(nproc));
    assert_eq!(limited.limit("Max core file size"), both(0));
    assert_eq!(limited.limit("Max locked memory"), both(memlock));
    assert_eq!(limited.limit("Max address space"), both(address_space));
    assert_eq!(limited.limit("Max file size"), both(fsize));
    assert_eq!(limited.limit("Max cpu time"), (show(cpu_soft), show(cpu_hard)));
    if stack_unlimited {
        assert_eq!(limited.limit("Max stack size"), (show(8 << 20), "unlimited".to_owned()));
    }
    assert_eq!(limited.nice(), nice, "{}", limited.stat);
    assert_eq!(limited.umask.trim(), "Umask:\t0027");
    assert_eq!(limited.oom.trim(), oom.to_string());

    // Beside it, a service without [limits] has baseinit's own.
    let me = std::process::id() as i32;
    assert_eq!(plain.limit("Max open files").1, show(hard(Resource::RLIMIT_NOFILE)));
    assert_eq!(plain.nice(), own_nice());
    assert_eq!(plain.oom.trim(), oom_of(me).to_string(), "the OOM score did not spread");
    assert_eq!(pid1_oom, oom_of(me), "baseinit's own OOM score is untouched");
}

/// Each bad `[limits]` keeps its own service down (`broken`, with the
/// message and its line:column) while the others run; in a user namespace
/// (unprivileged for limits), what needs privileges is one of them.
#[test]
fn bad_limits_keep_only_their_service_down() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    tree.service("good", r#"echo up >> "$OUT/good"; exec sleep 60"#);
    let above = hard(Resource::RLIMIT_NOFILE).saturating_add(1);
    let nice_below = own_nice() - 1;
    let oom_below = oom_of(std::process::id() as i32) - 1;
    let cases = [
        (
            "a_unknown",
            "[limits]\nfiles = 5\n".to_owned(),
            "2:1: unknown field `files`".to_owned(),
        ),
        (
            "b_value",
            "[limits]\nnofile = \"lots\"\n".to_owned(),
            "2:10: limits.nofile: \"lots\" is not a number".to_owned(),
        ),
        (
            "c_soft_above_hard",
            "[limits]\ncore = { soft = 2048, hard = 1024 }\n".to_owned(),
            "2:17: limits.core: the soft limit 2048 is above the hard limit 1024".to_owned(),
        ),
        (
            "d_above_hard",
            format!("[limits]\nnofile = {above}\n"),
            format!(
                "2:10: limits.nofile {above} is above baseinit's own hard limit {}: raising it needs CAP_SYS_RESOURCE",
                above - 1
            ),
        ),
        (
            "e_nice",
            format!("[limits]\nnice = {nice_below}\n"),
            format!("2:8: limits.nice {nice_below} is below baseinit's own nice value"),
        ),
        (
            "f_oom",
            format!("[limits]\noom-score-adj = {oom_below}\n"),
            format!("2:17: limits.oom-score-adj {oom_below} is below baseinit's own"),
        ),
        (
            "g_umask",
            "[limits]\numask = 22\n".to_owned(),
            "2:9: umask must be an octal string".to_owned(),
        ),
        (
            "h_range",
            "[limits]\nnice = 40\n".to_owned(),
            "2:8: limits.nice must be from -20 to 19, not 40".to_owned(),
        ),
    ];
    for (name, toml, _) in &cases {
        tree.service(name, "exec sleep 60");
        tree.service_file(name, "service.toml", toml, 0o644);
    }
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_lines(&tree, "good", 1, LONG);
    let status = tree.wait_status("the status", LONG, |s| Some(s.clone()));
    assert_eq!(service_in(&status, "good").expect("good")["state"], "run", "{status:#}");
    let dir = tree.service_dir().display().to_string();
    for (name, _, message) in &cases {
        let service = service_in(&status, name).unwrap_or_else(|| panic!("{name} missing: {status:#}"));
        assert_eq!(service["state"], "broken", "{name}: {status:#}");
        let reason = service["reason"].as_str().unwrap_or_default();
        let want = format!("{dir}/{name}/service.toml:{message}");
        assert!(reason.contains(&want), "{name}: {reason:?} lacks {want:?}");
    }
    let run = init.stop(LONG);
    run.assert_stderr_contains("limits.nofile");
    // Never started, so never a failed start.
    assert!(!run.stderr.contains("cannot start"), "{}", run.stderr);
}

/// baseinit as an ordinary user without capabilities (OpenShift's random
/// uid): a limit above its own hard limit is an error at load, from
/// `baseinit check` and at boot, naming the key; lower limits and a higher
/// nice value apply.
#[test]
fn as_a_user_a_limit_above_the_hard_limit_is_a_load_error() {
    require!(Capability::Root);
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const UID: u32 = 1_000_780_000;
    let tree = Tree::new();
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let runtime = tree.runtime_dir();
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let nofile = hard(Resource::RLIMIT_NOFILE);
    let lower = nofile.min(2048) / 2;
    observer(
        &tree,
        "fits",
        &format!("[limits]\nnofile = {lower}\nnice = {}\n", own_nice().max(7)),
    );
    tree.service("above", "exec sleep 60");
    tree.service_file(
        "above",
        "service.toml",
        &format!("[limits]\nnofile = {{ soft = 64, hard = {} }}\n", nofile + 1),
        0o644,
    );
    let expected = format!(
        "above/service.toml:2:30: error: limits.nofile {} is above baseinit's own hard limit {nofile}: raising it needs CAP_SYS_RESOURCE, which baseinit lacks",
        nofile + 1
    );
    let check = std::process::Command::new(common::BIN)
        .args(["check", "--service-dir"])
        .arg(tree.service_dir())
        .uid(UID)
        .gid(0)
        .output()
        .expect("run baseinit check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains(&expected), "{report}");
    // The same tree checked by root with CAP_SYS_RESOURCE is fine: it may
    // raise the limit.
    let as_root = common::run({
        let mut c = std::process::Command::new(common::BIN);
        c.args(["check", "--service-dir"]).arg(tree.service_dir());
        c
    });
    assert_eq!(as_root.code == 0, holds(24), "{}", as_root.text());

    let init = Baseinit::start_with(Mode::Subreaper, &tree.args(&[]), |c| {
        c.uid(UID).gid(0);
    });
    let fits = Seen::of(&tree, "fits");
    let mut ask = std::process::Command::new(common::BIN);
    ask.args(["status", "--json"]).uid(UID).gid(0);
    tree.point_at(&mut ask);
    let status = common::run(ask);
    let boot = init.stop(LONG);
    assert_eq!(
        fits.limit("Max open files"),
        (show(lower), show(lower)),
        "{}",
        fits.limits
    );
    assert_eq!(fits.nice(), own_nice().max(7));
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json parses");
    let above = service_in(&json, "above").unwrap_or_else(|| panic!("above missing: {json:#}"));
    assert_eq!(above["state"], "broken", "{json:#}");
    assert!(
        above["reason"].as_str().is_some_and(|r| r.contains("limits.nofile")),
        "{json:#}"
    );
    boot.assert_stderr_contains("limits.nofile");
}

/// Whether this process holds capability `cap` (CapEff).
fn holds(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let set = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapEff");
    set & (1 << cap) != 0
}

/// baseinit as root outside any user namespace: with CAP_SYS_RESOURCE it
/// may raise a hard limit past its own and lower the OOM score, with
/// CAP_SYS_NICE lower the nice value; without them (root in a container
/// with the capabilities dropped, as Docker drops CAP_SYS_RESOURCE), each is
/// a load error saying which it lacks. A higher OOM score needs nothing, and
/// baseinit's own stays as it was.
#[test]
fn as_root_what_its_capabilities_allow() {
    require!(Capability::Root);
    let tree = Tree::new();
    let nofile = hard(Resource::RLIMIT_NOFILE);
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1 << 20);
    let raised = (nofile + 1000).min(nr_open);
    let nice = own_nice() - 3;
    let mine = oom_of(std::process::id() as i32);
    let (lower, higher) = (mine - 300, (mine + 300).min(1000));
    observer(
        &tree,
        "raised",
        &format!("[limits]\nnofile = {raised}\noom-score-adj = {lower}\n"),
    );
    observer(&tree, "nicer", &format!("[limits]\nnice = {nice}\n"));
    observer(&tree, "higher", &format!("[limits]\noom-score-adj = {higher}\n"));
    observer(&tree, "plain", "");
    let (sys_nice, sys_resource) = (holds(23), holds(24));
    let init = Baseinit::start(Mode::Subreaper, &tree.args(&[]));
    let higher_seen = Seen::of(&tree, "higher");
    let plain = Seen::of(&tree, "plain");
    let raised_seen = sys_resource.then(|| Seen::of(&tree, "raised"));
    let nicer = sys_nice.then(|| Seen::of(&tree, "nicer"));
    let status = tree.wait_status("the status", LONG, |s| Some(s.clone()));
    let baseinit_oom = oom_of(init.pid());
    init.stop(LONG);

    assert_eq!(higher_seen.oom.trim(), higher.to_string());
    assert_eq!(baseinit_oom, mine, "baseinit's own OOM score");
    assert_eq!(plain.oom.trim(), mine.to_string(), "another service's");
    assert_eq!(plain.nice(), own_nice());
    match raised_seen {
        Some(raised_seen) => {
            assert_eq!(raised_seen.limit("Max open files"), (show(raised), show(raised)));
            assert_eq!(raised_seen.oom.trim(), lower.to_string());
        }
        None => {
            eprintln!("*** no CAP_SYS_RESOURCE here: raising a hard limit is checked as refused ***");
            let reason = service_in(&status, "raised").expect("raised")["reason"].clone();
            let reason = reason.as_str().unwrap_or_default();
            assert!(
                reason.contains("needs CAP_SYS_RESOURCE, which baseinit lacks"),
                "{reason}"
            );
        }
    }
    match nicer {
        Some(nicer) => assert_eq!(nicer.nice(), nice),
        None => {
            eprintln!("*** no CAP_SYS_NICE here: a lower nice value is checked as refused ***");
            let reason = service_in(&status, "nicer").expect("nicer")["reason"].clone();
            assert!(reason.as_str().unwrap_or_default().contains("CAP_SYS_NICE"), "{reason}");
        }
    }
}
