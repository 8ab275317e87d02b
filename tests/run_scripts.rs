//! runit `run` scripts that use chpst and its daemontools names, run as
//! services of baseinit (PID 1 of a namespace) with no runit in the way:
//! `chpst`, `envdir`, `setuidgid`, `softlimit`, `envuidgid`, `svlogd` and
//! `setuser` on the services' PATH are symlinks to the baseinit binary. Each
//! script execs, at the end of its chain, a shell that writes what it sees
//! of itself (ids, environment, limits, nice value, process group, session,
//! arguments) and sleeps; the test compares that with what runit's programs
//! give.
//!
//! The table is modelled on real scripts: Debian's `runit-services`
//! 0.5.5~deb12u2 (`mariadb/run`, `dhclient/run`: the only two of its 28
//! that call chpst), Debian runit 2.1.2's own (`/etc/sv/svlogd/run`, the
//! `chpst -e` at the end of `/lib/runit/invoke-run`), and the daemontools
//! and phusion styles (`envdir ./env setuidgid … softlimit …`, `setuser`,
//! `chpst -o -n`, `chpst -l`, `chpst -P`).
//!
//! Every process a test starts is stopped by its pid.
#![allow(clippy::disallowed_methods)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::{BIN, Baseinit, Capability, Mode, Tree, require, wait_text, write_file};
use nix::sys::resource::{Resource, getrlimit};

const LONG: Duration = Duration::from_secs(30);

/// The names run scripts call, each a symlink to baseinit.
const APPLETS: [&str; 7] = [
    "chpst",
    "envdir",
    "envuidgid",
    "setuidgid",
    "softlimit",
    "svlogd",
    "setuser",
];

/// What the last program of each chain runs: `/bin/sh OBSERVE NAME ARGS…`
/// writes `NAME.seen` (one `key=value` or `/proc` line each, `end=1` last)
/// with shell builtins only (a low address-space limit must not matter),
/// then sleeps, keeping any lock it was given.
const OBSERVE: &str = r#"name=$1; shift
out="$TREE/$name.seen"
{
  read -r stat < /proc/$$/stat
  rest=${stat##*)}
  set -- $rest -- "$@"
  [ "$3" = "$$" ] && echo pgrp_is_pid=yes || echo pgrp_is_pid=no
  [ "$4" = "$$" ] && echo session_is_pid=yes || echo session_is_pid=no
  echo "nice=${17}"
  while [ "$1" != "--" ]; do shift; done; shift
  echo "args=$*"
  while IFS= read -r line; do
    case "$line" in Uid:*|Gid:*|Groups:*|Umask:*) set -- $line; echo "$*";; esac
  done < /proc/$$/status
  while IFS= read -r line; do
    case "$line" in Max*) set -- $line; echo "$*";; esac
  done < /proc/$$/limits
  echo "GREETING=${GREETING-unset}"
  echo "SET=${SET-unset}"
  echo "UID=${UID-unset} GID=${GID-unset}"
  echo "HOME=${HOME-unset} USER=${USER-unset}"
  echo "chpst=$(command -v chpst)"
  echo "end=1"
} > "$out"
exec sleep 60
"#;

/// One run script: its service's files (`run` among them) and what its
/// program must see (lines of `NAME.seen`).
struct Row {
    name: &'static str,
    /// Where it comes from.
    source: &'static str,
    files: Vec<(&'static str, String, u32)>,
    expect: Vec<String>,
}

/// What the rows' expectations depend on: this machine's limits and ids.
struct Ctx {
    tree: PathBuf,
    observe: String,
    nice: i32,
    nobody: (u32, u32, PathBuf),
}

impl Ctx {
    fn new(tree: &Tree) -> Ctx {
        let nobody = baseinit::accounts::user_by_name("nobody")
            .expect("passwd")
            .expect("a nobody user");
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let nice = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(16)?.parse().ok())
            .expect("nice");
        Ctx {
            tree: tree.path().to_owned(),
            observe: tree.path().join("observe.sh").display().to_string(),
            nice,
            nobody: (nobody.uid.as_raw(), nobody.gid.as_raw(), nobody.dir),
        }
    }

    /// `/bin/sh OBSERVE NAME`: the end of a chain.
    fn sh(&self, name: &str) -> String {
        format!("/bin/sh {} {name}", self.observe)
    }

    /// The `/proc/PID/limits` line of `what` with `soft` capped at the hard
    /// limit, as runit's chpst and softlimit set it.
    fn limit(what: &str, resource: Resource, soft: u64) -> String {
        let hard = getrlimit(resource).expect("getrlimit").1;
        format!("{what} {} {}", show(soft.min(hard)), show(hard))
    }

    fn is_nobody(&self) -> Vec<String> {
        let (uid, gid, _) = self.nobody;
        vec![
            format!("Uid: {uid} {uid} {uid} {uid}"),
            format!("Gid: {gid} {gid} {gid} {gid}"),
            // chpst -u and setuidgid: the user's primary group only.
            format!("Groups: {gid}"),
        ]
    }
}

fn show(value: u64) -> String {
    if value == nix::libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}

fn script(body: &str) -> (&'static str, String, u32) {
    ("run", format!("#!/bin/sh\n{body}\n"), 0o755)
}

/// The rows that need no other user: they run under baseinit as PID 1 of a
/// user namespace.
fn rows_in_a_user_namespace(ctx: &Ctx) -> Vec<Row> {
    let mem = 12_000_000;
    vec![
        Row {
            name: "dhclient",
            source: "runit-services 0.5.5 dhclient/run",
            files: vec![
                script(&format!(
                    "exec 2>&1\n\n. ./conf/interfaces || exit 162\n\nexec chpst -m12000000 {} -d ${{INTERFACES:-}}",
                    ctx.sh("dhclient")
                )),
                ("conf/interfaces", "INTERFACES=\"eth0 eth1\"\n".into(), 0o644),
            ],
            expect: vec![
                "args=-d eth0 eth1".into(),
                Ctx::limit("Max data size", Resource::RLIMIT_DATA, mem),
                Ctx::limit("Max stack size", Resource::RLIMIT_STACK, mem),
                Ctx::limit("Max locked memory", Resource::RLIMIT_MEMLOCK, mem),
                Ctx::limit("Max address space", Resource::RLIMIT_AS, mem),
                format!("nice={}", ctx.nice),
            ],
        },
        Row {
            name: "invoke-run",
            source: "runit 2.1.2 /lib/runit/invoke-run (its end) running the service's script",
            files: vec![
                script(
                    "if [ -d \"${PWD}/env\" ] ; then\n\texec chpst -e \"${PWD}/env\" -- /bin/sh \"${PWD}\"/main\nelse\n\texec /bin/sh \"${PWD}\"/main\nfi",
                ),
                ("main", format!("exec {} --from-main", ctx.sh("invoke-run")), 0o644),
                ("env/GREETING", "hello  \nsecond line ignored\n".into(), 0o644),
                ("env/SET", String::new(), 0o644),
            ],
            expect: vec!["args=--from-main".into(), "GREETING=hello".into(), "SET=unset".into()],
        },
        Row {
            name: "limits-nice",
            source: "phusion-style: exec chpst -o 1024 -n 5",
            files: vec![script(&format!("exec chpst -o 1024 -n 5 {}", ctx.sh("limits-nice")))],
            expect: vec![
                Ctx::limit("Max open files", Resource::RLIMIT_NOFILE, 1024),
                format!("nice={}", (ctx.nice + 5).min(19)),
                "SET=old".into(),
            ],
        },
        Row {
            name: "softlimit",
            source: "daemontools: exec softlimit -o 64 -c 0 -p 300",
            files: vec![script(&format!(
                "exec 2>&1\nexec softlimit -o 64 -c 0 -p 300 {}",
                ctx.sh("softlimit")
            ))],
            expect: vec![
                Ctx::limit("Max open files", Resource::RLIMIT_NOFILE, 64),
                Ctx::limit("Max core file size", Resource::RLIMIT_CORE, 0),
                Ctx::limit("Max processes", Resource::RLIMIT_NPROC, 300),
            ],
        },
        Row {
            name: "envuidgid",
            source: "daemontools: exec envuidgid nobody … (the ids as variables only)",
            files: vec![script(&format!("exec envuidgid nobody {}", ctx.sh("envuidgid")))],
            expect: vec![
                format!("UID={} GID={}", ctx.nobody.0, ctx.nobody.1),
                "Uid: 0 0 0 0".into(),
            ],
        },
        Row {
            name: "lock",
            source: "exec chpst -l ./lock (one instance at a time)",
            files: vec![script(&format!("exec chpst -l ./lock {}", ctx.sh("lock")))],
            expect: vec!["session_is_pid=no".into()],
        },
        Row {
            name: "pgrphack",
            source: "exec 2>&1; exec chpst -P (its own process group)",
            files: vec![script(&format!("exec 2>&1\nexec chpst -P {}", ctx.sh("pgrphack")))],
            // Its own group, what -P is for (so that a signal to the group
            // reaches its children). runit's chpst makes it by setsid(),
            // ignoring a failure; under runsv that gives a new session too,
            // but a baseinit service leads its own group already, and a
            // group leader may not start a session: it stays in baseinit's.
            expect: vec!["pgrp_is_pid=yes".into()],
        },
    ]
}

/// The rows that switch to another user: they need a real root.
fn rows_switching_users(ctx: &Ctx) -> Vec<Row> {
    let logdir = ctx.tree.join("svlogd-logs");
    let mut mariadb = ctx.is_nobody();
    mariadb.push("args=--skip-log-error".into());
    let mut qmail = ctx.is_nobody();
    qmail.extend([
        "GREETING=hello".into(),
        Ctx::limit("Max open files", Resource::RLIMIT_NOFILE, 64),
        Ctx::limit("Max data size", Resource::RLIMIT_DATA, 3_000_000),
    ]);
    // setuser: the user's groups from /etc/group, as my_init's did.
    let mut user_env = ctx.is_nobody();
    user_env.extend(["GREETING=hello".into(), "SET=unset".into()]);
    let mut setuser = ctx.is_nobody();
    setuser.truncate(2);
    setuser.push(format!("HOME={} USER=nobody", ctx.nobody.2.display()));
    vec![
        Row {
            name: "mariadb",
            source: "runit-services 0.5.5 mariadb/run (mysql as nobody)",
            files: vec![script(&format!(
                "export HOME=/etc/mysql/\nexec 2>&1\n\nif [ -e /etc/runit/verbose ]; then\n\techo \"invoke-run: starting ${{PWD##*/}}\"\nfi\nexec chpst -u nobody {} --skip-log-error",
                ctx.sh("mariadb")
            ))],
            expect: mariadb,
        },
        Row {
            name: "user-env",
            source: "phusion-style: exec chpst -u nobody -e ./env sh -c …",
            files: vec![
                script("exec chpst -u nobody -e ./env sh -c 'exec /bin/sh \"$TREE/observe.sh\" user-env'"),
                ("env/GREETING", "hello\n".into(), 0o644),
                ("env/SET", String::new(), 0o644),
            ],
            expect: user_env,
        },
        Row {
            name: "qmail",
            source: "daemontools/qmail: exec envdir ./env setuidgid nobody softlimit -d 3000000 -o 64",
            files: vec![
                script(&format!(
                    "exec envdir ./env setuidgid nobody softlimit -d 3000000 -o 64 {}",
                    ctx.sh("qmail")
                )),
                ("env/GREETING", "hello\n".into(), 0o644),
            ],
            expect: qmail,
        },
        Row {
            name: "setuser",
            source: "phusion/baseimage: exec /sbin/setuser memcache … (as nobody)",
            files: vec![script(&format!("exec setuser nobody {}", ctx.sh("setuser")))],
            expect: setuser,
        },
        Row {
            name: "svlogd",
            source: "runit 2.1.2 /etc/sv/svlogd/run as a log/run (svlogd as nobody)",
            files: vec![
                script("echo 'a line for svlogd'\nexec sleep 60"),
                (
                    "log/run",
                    format!(
                        "#!/bin/sh\nexec 2>&1\nLOGDIR={}\nBUFFER=2048\nLOGUSER=nobody\nexec chpst -u ${{LOGUSER}} svlogd -tt -b $BUFFER \"$LOGDIR\"\n",
                        logdir.display()
                    ),
                    0o755,
                ),
            ],
            // Checked in the log directory instead.
            expect: Vec::new(),
        },
    ]
}

/// The tree: the rows' services, `observe.sh`, and `bin/` with each name
/// a symlink to what `target` gives (rows using a name it has none for are
/// left out); everything open to nobody. The rows prepared, and the PATH the
/// services get.
fn prepare(tree: &Tree, rows: Vec<Row>, target: &dyn Fn(&str) -> Option<PathBuf>) -> (Vec<Row>, String) {
    std::fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    write_file(&tree.path().join("observe.sh"), OBSERVE, 0o755);
    let bin = tree.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir bin");
    let mut missing = Vec::new();
    for name in APPLETS {
        match target(name) {
            Some(target) => std::os::unix::fs::symlink(target, bin.join(name)).expect("symlink"),
            None => missing.push(name),
        }
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|row| {
            !row.files
                .iter()
                .any(|(_, body, _)| missing.iter().any(|name| body.contains(&format!("exec {name} "))))
        })
        .collect();
    for row in &rows {
        for (file, body, mode) in &row.files {
            tree.service_file(row.name, file, body, *mode);
        }
    }
    (rows, format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()))
}

/// The environment of baseinit (or runsvdir): the PATH with the applets
/// first, a `SET` for envdirs to remove, `TREE` for `observe.sh`.
fn environment(tree: &Tree, path: &str, command: &mut std::process::Command) {
    command
        .env("PATH", path)
        .env("SET", "old")
        .env("TREE", tree.path())
        .env_remove("GREETING")
        .env_remove("UID")
        .env_remove("GID");
}

/// Waits for each row's `NAME.seen` and checks its lines.
fn check_rows(tree: &Tree, rows: &[Row], who: &str) {
    let chpst = format!("chpst={}", tree.path().join("bin/chpst").display());
    for row in rows.iter().filter(|row| !row.expect.is_empty()) {
        let seen = wait_text(tree, &format!("{}.seen", row.name), "end=1", LONG);
        let lines: Vec<&str> = seen.lines().collect();
        for want in row.expect.iter().chain([&chpst]) {
            // A /proc/PID/limits line ends with its unit.
            let found = lines.iter().any(|line| {
                line == want
                    || line
                        .strip_prefix(want.as_str())
                        .is_some_and(|unit| unit.starts_with(' '))
            });
            assert!(
                found,
                "{who}: {} ({}): no line {want:?} in:\n{seen}",
                row.name, row.source
            );
        }
    }
}

/// baseinit's applets under every name.
fn baseinit_applets(_: &str) -> Option<PathBuf> {
    Some(PathBuf::from(BIN))
}

/// Debian's runit under its names; my_init's `setuser` is not runit's.
fn runit_programs(name: &str) -> Option<PathBuf> {
    match name {
        "svlogd" => common::which("svlogd"),
        "setuser" => None,
        _ => common::which("chpst"),
    }
}

/// Runs the same rows under Debian's runsvdir and runit's own chpst (PID 1
/// of a PID namespace, in a user namespace unless `as_root`), and checks
/// that they see what they saw under baseinit: the expectations are
/// runit's. Its namespace is ended by killing `unshare` (by its pid), which
/// takes PID 1 and all in it along. Without runit, a loud skip.
fn under_runit(rows: fn(&Ctx) -> Vec<Row>, as_root: bool) {
    if !common::require(Capability::Runit, "the same scripts under runit") {
        return;
    }
    let tree = Tree::new();
    let ctx = Ctx::new(&tree);
    let (rows, path) = prepare(&tree, rows(&ctx), &runit_programs);
    if as_root {
        prepare_logdir(&tree, &ctx);
    }
    let mut command = std::process::Command::new(common::which("unshare").expect("unshare"));
    if !as_root {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(common::which("runsvdir").expect("runsvdir"))
        .arg(tree.service_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    environment(&tree, &path, &mut command);
    let mut runsvdir = command.spawn().expect("unshare runsvdir");
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_rows(&tree, &rows, "runit");
        if as_root {
            check_logdir(&tree, &ctx, "runit");
        }
    }));
    let _ = runsvdir.kill();
    let _ = runsvdir.wait();
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
}

/// The svlogd row's log directory, nobody's.
fn prepare_logdir(tree: &Tree, ctx: &Ctx) {
    let logdir = tree.path().join("svlogd-logs");
    std::fs::create_dir(&logdir).expect("mkdir");
    nix::unistd::chown(&logdir, Some(nix::unistd::Uid::from_raw(ctx.nobody.0)), None).expect("chown");
}

/// The svlogd row's line is in its log directory, written by nobody.
fn check_logdir(tree: &Tree, ctx: &Ctx, who: &str) {
    let current = tree.path().join("svlogd-logs/current");
    common::wait_for(&format!("{who}: svlogd's line"), LONG, || {
        std::fs::read_to_string(&current)
            .ok()
            .filter(|text| text.contains("a line for svlogd"))
    });
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&current).expect("current").uid();
    assert_eq!(owner, ctx.nobody.0, "{who}: svlogd ran as nobody");
}

#[test]
fn run_scripts_with_chpst_behave_as_under_runit() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let ctx = Ctx::new(&tree);
    let (rows, path) = prepare(&tree, rows_in_a_user_namespace(&ctx), &baseinit_applets);
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |c| environment(&tree, &path, c));
    check_rows(&tree, &rows, "baseinit");
    // chpst -l holds its lock while the service runs.
    let lock = tree.service_dir().join("lock/lock");
    let mut flock = std::process::Command::new("flock");
    flock.arg("-n").arg(&lock).arg("true");
    let out = common::run(flock);
    assert_eq!(out.code, 1, "the lock is free: {out:?}");
    let run = init.stop(LONG);
    assert!(!run.stderr.contains("cannot start"), "{}", run.stderr);
    under_runit(rows_in_a_user_namespace, false);
}

/// Starts baseinit as PID 1 of a PID namespace of its own, as the real root
/// (no user namespace: it may switch users).
fn start_root_pid1(tree: &Tree, path: &str) -> Baseinit {
    let unshare = common::which("unshare").expect("unshare");
    let mut args: Vec<String> = ["--pid", "--fork", "--mount-proc", "--kill-child", BIN]
        .into_iter()
        .map(String::from)
        .collect();
    args.extend(tree.args(&[]));
    Baseinit::start_named(Mode::Subreaper, &unshare, &args, |c| environment(tree, path, c))
}

/// Stops the baseinit `start_root_pid1` started: SIGTERM to it, by its pid
/// (unshare's child), then its exit.
fn stop_root_pid1(init: Baseinit) -> common::Finished {
    let unshare = init.pid();
    let pid1 = common::wait_for("baseinit under unshare", LONG, || {
        common::children_of(unshare).first().map(|(pid, _)| *pid)
    });
    // SAFETY: kill(2) on a pid of a child we started, alive until it exits.
    assert_eq!(unsafe { nix::libc::kill(pid1, nix::libc::SIGTERM) }, 0);
    init.wait(LONG)
}

#[test]
fn run_scripts_that_switch_users_behave_as_under_runit() {
    require!(Capability::Namespaces);
    require!(Capability::Root);
    let tree = Tree::new();
    let ctx = Ctx::new(&tree);
    let (rows, path) = prepare(&tree, rows_switching_users(&ctx), &baseinit_applets);
    prepare_logdir(&tree, &ctx);
    let init = start_root_pid1(&tree, &path);
    check_rows(&tree, &rows, "baseinit");
    check_logdir(&tree, &ctx, "baseinit");
    let run = stop_root_pid1(init);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("cannot start"), "{}", run.stderr);
    under_runit(rows_switching_users, true);
}
