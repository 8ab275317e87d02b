//! Start and stop order by dependencies, readiness by each mechanism, the
//! `requires` cascade, cycles, and `--wait-for-services`, as PID 1.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Sv, Tree, require, wait_for, wait_text};

const LONG: Duration = Duration::from_secs(30);

/// A service that records "start NAME t" and, on SIGTERM, "stop NAME t" (ns).
fn recorder(tree: &Tree, name: &str, before_loop: &str) {
    tree.service(
        name,
        &format!(
            r#"echo "start {name} $(date +%s%N)" >> "$OUT/events"
trap 'echo "stop {name} $(date +%s%N)" >> "$OUT/events"; exit 0' TERM
{before_loop}
while :; do sleep 0.05; done"#
        ),
    );
}

/// (kind, name) -> time, from the events file.
fn events(tree: &Tree) -> HashMap<(String, String), u128> {
    tree.read("events")
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(((f.next()?.to_owned(), f.next()?.to_owned()), f.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_chain_of_three_starts_in_order_as_each_gets_ready_and_stops_in_reverse() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // db: ready by s6's notification-fd, 300 ms after it starts.
    recorder(
        &tree,
        "db",
        r#"sleep 0.3; echo "ready db $(date +%s%N)" >> "$OUT/events"; echo >&3"#,
    );
    common::write_file(&tree.service_dir().join("db/notification-fd"), "3\n", 0o644);
    // app: after db; ready by its check script, once it made a file.
    recorder(
        &tree,
        "app",
        r#"sleep 0.3; echo "ready app $(date +%s%N)" >> "$OUT/events"; touch "$OUT/app.ready""#,
    );
    tree.service_file(
        "app",
        "service.toml",
        "after = [\"db\"]\n[ready]\ninterval = \"50ms\"\n",
        0o644,
    );
    tree.service_file("app", "check", &tree.script(r#"test -e "$OUT/app.ready""#), 0o755);
    // web: after app; ready as soon as it runs.
    recorder(&tree, "web", "");
    tree.service_file("web", "service.toml", "after = [\"app\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start web", LONG);
    let run = init.stop(LONG);
    let e = events(&tree);
    let t = |kind: &str, name: &str| e[&(kind.to_owned(), name.to_owned())];
    assert!(t("ready", "db") < t("start", "app"), "app started before db was ready");
    assert!(
        t("ready", "app") < t("start", "web"),
        "web started before app was ready"
    );
    assert!(t("stop", "web") < t("stop", "app"), "app stopped before web");
    assert!(t("stop", "app") < t("stop", "db"), "db stopped before app");
    run.assert_stderr_contains("service db: ready");
}

#[test]
fn a_diamond_starts_the_base_first_and_the_top_last() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Ready once each has recorded its start (s6's notification fd): with
    // "ready as soon as it runs", a dependent is only *spawned* after, and
    // its first line may still run first.
    let ready = |name: &str| common::write_file(&tree.service_dir().join(name).join("notification-fd"), "3\n", 0o644);
    recorder(&tree, "base", "echo >&3");
    ready("base");
    for side in ["left", "right"] {
        recorder(&tree, side, "echo >&3");
        ready(side);
        tree.service_file(side, "service.toml", "after = [\"base\"]\n", 0o644);
    }
    recorder(&tree, "top", "");
    tree.service_file("top", "service.toml", "after = [\"left\", \"right\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start top", LONG);
    init.stop(LONG);
    let e = events(&tree);
    let t = |kind: &str, name: &str| e[&(kind.to_owned(), name.to_owned())];
    for side in ["left", "right"] {
        assert!(t("start", "base") < t("start", side));
        assert!(t("start", side) < t("start", "top"));
        assert!(t("stop", "top") < t("stop", side));
        assert!(t("stop", side) < t("stop", "base"));
    }
}

#[test]
fn tcp_readiness_waits_for_a_listening_port() {
    require!(Capability::Namespaces);
    tcp_readiness_waits_for(Tree::new(), "127.0.0.1", 0);
}

#[test]
fn tcp_readiness_resolves_a_host_name() {
    require!(Capability::Namespaces);
    // `localhost` comes from /etc/hosts through libc's resolver, on a
    // blocking thread of tokio's.
    tcp_readiness_waits_for(Tree::new(), "localhost", 1);
}

/// A client that requires a server whose readiness is a TCP connection to
/// `host`: it starts only once the server listens.
fn tcp_readiness_waits_for(tree: Tree, host: &str, port_offset: u32) {
    // Distinct ports for tests that run at the same time.
    let port = 20000 + ((std::process::id() * 2 + port_offset) % 20000);
    tree.service(
        "server",
        &format!(
            r#"echo "start server $(date +%s%N)" >> "$OUT/events"
export OUT
exec python3 -c 'import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
time.sleep(0.4)
s.bind(("127.0.0.1", {port}))
# The time just before listen(): no connection can succeed earlier, and
# the client may start less than a millisecond after it.
t = time.time_ns()
s.listen()
open(os.environ["OUT"] + "/events", "a").write(f"listening x {{t}}\n")
time.sleep(60)'"#
        ),
    );
    tree.service_file(
        "server",
        "service.toml",
        &format!("[ready]\ntcp = \"{host}:{port}\"\ninterval = \"50ms\"\n"),
        0o644,
    );
    recorder(&tree, "client", "");
    tree.service_file("client", "service.toml", "requires = [\"server\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start client", LONG);
    init.stop(LONG);
    let e = events(&tree);
    assert!(
        e[&("listening".to_owned(), "x".to_owned())] < e[&("start".to_owned(), "client".to_owned())],
        "the client started before the port listened"
    );
}

#[test]
fn requires_stops_the_dependent_with_its_dependency_and_brings_it_back() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    recorder(&tree, "db", "");
    recorder(&tree, "app", "");
    tree.service_file("app", "service.toml", "requires = [\"db\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start app", LONG);
    common::wait_supervised(&tree, "db", LONG);
    let sv = |cmd: &str| {
        tree.sv(Sv::Baseinit, &[cmd, "db"]);
    };
    sv("down");
    wait_text(&tree, "events", "stop db", LONG);
    let stops: Vec<String> = tree
        .read("events")
        .lines()
        .filter(|l| l.starts_with("stop "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
        .collect();
    assert_eq!(stops, ["app", "db"], "the dependent stops before what it requires");
    // runit's state is written once per wake-up, after the signals it sent:
    // db's trap can run before `supervise/status` says "want down", and an
    // `sv up` reading "want up" there sends nothing (runit's sv skips what
    // is wanted already). As an operator would, wait for `down` first.
    tree.wait_sv_status(Sv::Baseinit, "db", "down: ", LONG);
    sv("up");
    wait_for("app to come back", LONG, || {
        (tree.read("events").matches("start app").count() == 2).then_some(())
    });
    let run = init.stop(LONG);
    run.assert_stderr_contains("service app: stopping it first: it requires db, which is being stopped");
}

#[test]
fn a_dependency_cycle_keeps_its_services_down_naming_the_cycle() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    for (name, dep) in [("a", "b"), ("b", "c"), ("c", "a")] {
        tree.service(name, "exec sleep 60");
        tree.service_file(name, "service.toml", &format!("after = [\"{dep}\"]\n"), 0o644);
    }
    tree.service("outside", r#"echo ran > "$OUT/outside"; exec sleep 60"#);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_for("the service outside the cycle to start", LONG, || {
        tree.out("outside").exists().then_some(())
    });
    let states = tree.wait_status("the cycle in the status", LONG, |s| {
        let states: Vec<(String, String)> = s["services"]
            .as_array()?
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("").to_owned(),
                    s["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        (states.len() == 4).then_some(states)
    });
    for name in ["a", "b", "c"] {
        assert!(states.contains(&(name.to_owned(), "broken".to_owned())), "{states:?}");
    }
    let run = init.stop(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("dependency cycle: a -> b -> c -> a");
}

#[test]
fn wait_for_services_holds_the_main_command_until_everything_is_ready() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    recorder(
        &tree,
        "slow",
        r#"sleep 0.4; echo "ready slow $(date +%s%N)" >> "$OUT/events"; echo >&3"#,
    );
    common::write_file(&tree.service_dir().join("slow/notification-fd"), "3\n", 0o644);
    let main = r#"echo "start main $(date +%s%N)" >> "$OUT/events""#;
    let args = tree.args(&["--wait-for-services", "--", "sh", "-c", main]);
    let run = Baseinit::start_with(Mode::Pid1, &args, |c| {
        c.env("OUT", tree.path());
    })
    .wait(LONG);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let e = events(&tree);
    assert!(e[&("ready".to_owned(), "slow".to_owned())] < e[&("start".to_owned(), "main".to_owned())]);

    // A service that never gets ready: boot fails at the limit.
    let tree = Tree::new();
    tree.service("never", "exec sleep 60");
    common::write_file(&tree.service_dir().join("never/notification-fd"), "3\n", 0o644);
    let args = tree.args(&["--wait-for-services=0.5", "--", "true"]);
    let run = Baseinit::start(Mode::Pid1, &args).wait(LONG);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    run.assert_stderr_contains("--wait-for-services: not ready in time: never");
    assert!(!run.stderr.contains("main command true: started"), "{}", run.stderr);
}

#[test]
fn sd_notify_readiness_through_notify_socket() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    recorder(
        &tree,
        "daemon",
        r#"sleep 0.3
echo "ready daemon $(date +%s%N)" >> "$OUT/events"
python3 -c 'import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=warming up\nREADY=1\n", os.environ["NOTIFY_SOCKET"])'"#,
    );
    tree.service_file("daemon", "service.toml", "[ready]\nsd-notify = true\n", 0o644);
    recorder(&tree, "client", "");
    tree.service_file("client", "service.toml", "after = [\"daemon\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start client", LONG);
    let run = init.stop(LONG);
    let e = events(&tree);
    assert!(e[&("ready".to_owned(), "daemon".to_owned())] < e[&("start".to_owned(), "client".to_owned())]);
    run.assert_stderr_contains("service daemon: ready");
}

#[test]
fn a_failing_health_probe_restarts_the_service() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    common::write_file(&tree.out("healthy"), "", 0o644);
    let probe = tree.out("probe");
    // Each probe notes that it ran, before it looks.
    common::write_file(
        &probe,
        &tree.script(r#"echo probe >> "$OUT/probes"; test -e "$OUT/healthy""#),
        0o755,
    );
    recorder(&tree, "web", "");
    tree.service_file(
        "web",
        "service.toml",
        &format!(
            "[health]\ncommand = [\"{}\"]\ninterval = \"100ms\"\nretries = 2\n",
            probe.display()
        ),
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start web", LONG);
    let web = five_more_probes_then_web(&tree);
    assert_eq!(web["state"], "run", "healthy: no restart");
    assert_eq!(web["restarts"], 0, "healthy: no restart");
    assert_eq!(
        tree.read("events").matches("start web").count(),
        1,
        "healthy: no restart"
    );
    std::fs::remove_file(tree.out("healthy")).unwrap();
    wait_for("web to be restarted", LONG, || {
        (tree.read("events").matches("start web").count() >= 2).then_some(())
    });
    common::write_file(&tree.out("healthy"), "", 0o644);
    let starts = tree.read("events").matches("start web").count();
    // Every probe from here on runs with `healthy` back.
    let web = five_more_probes_then_web(&tree);
    assert_eq!(web["state"], "run", "healthy again: no more restarts");
    assert_eq!(web["restarts"], starts - 1, "healthy again: no more restarts");
    assert_eq!(
        tree.read("events").matches("start web").count(),
        starts,
        "healthy again: no more restarts"
    );
    let run = init.stop(LONG);
    run.assert_stderr_contains("service web: unhealthy: restarting it");
    assert!(
        tree.read("events").contains("stop web"),
        "the restart stopped it gracefully"
    );
}

/// Waits until five more health probes have run, then gives web's entry in
/// the status snapshot. A probe runs only once the result of the one before
/// it is in, so by then the results of four were taken: a restart they
/// called for shows in `state` and `restarts` (it is counted before the new
/// run is `run` again).
fn five_more_probes_then_web(tree: &Tree) -> serde_json::Value {
    let probes = || tree.read("probes").lines().count();
    let seen = probes();
    wait_for("five more health probes", LONG, || (probes() >= seen + 5).then_some(()));
    tree.wait_status("web in the status snapshot", LONG, |s| {
        common::service_in(s, "web").cloned()
    })
}

#[test]
fn health_restarts_never_override_sv_down_and_ignore_the_restart_policy() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let probe = tree.out("probe");
    common::write_file(&probe, &tree.script(r#"test -e "$OUT/healthy""#), 0o755);
    let health = format!(
        "restart = \"on-failure\"\n[health]\ncommand = [\"{}\"]\ninterval = \"100ms\"\nretries = 1\n",
        probe.display()
    );
    // web exits 0 on SIGTERM: on-failure alone would leave it down.
    recorder(&tree, "web", "");
    tree.service_file("web", "service.toml", &health, 0o644);
    // A healthy service probed as often, whose probes note that they ran:
    // its probes go on while web is down, and mark the time web's would
    // have taken.
    let tick = tree.out("tick");
    common::write_file(&tick, &tree.script(r#"echo tick >> "$OUT/ticks""#), 0o755);
    tree.service("clock", "exec sleep 60");
    tree.service_file(
        "clock",
        "service.toml",
        &format!("[health]\ncommand = [\"{}\"]\ninterval = \"100ms\"\n", tick.display()),
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start web", LONG);
    // Unhealthy (never was healthy: no file): restarted, whatever on-failure says.
    wait_for("a health restart", LONG, || {
        (tree.read("events").matches("start web").count() >= 2).then_some(())
    });
    // sv down: it stays down, failing probes or not.
    tree.sv(Sv::Baseinit, &["down", "web"]);
    tree.wait_sv_status(Sv::Baseinit, "web", "down: web", LONG);
    let starts = tree.read("events").matches("start web").count();
    let web = |s: &serde_json::Value| common::service_in(s, "web").cloned();
    let restarts = tree.wait_status("web in the status snapshot", LONG, web)["restarts"].clone();
    // Three probe rounds later (clock's), a probe of web that was still
    // under way at the down has long been taken, and web is still down.
    let ticks = || tree.read("ticks").lines().count();
    let seen = ticks();
    wait_for("three more probes of clock", LONG, || {
        (ticks() >= seen + 3).then_some(())
    });
    let now = tree.wait_status("web in the status snapshot", LONG, web);
    assert_eq!(now["state"], "down", "sv down was overridden");
    assert_eq!(now["restarts"], restarts, "sv down was overridden");
    assert_eq!(
        tree.read("events").matches("start web").count(),
        starts,
        "sv down was overridden"
    );
    init.stop(LONG);
}

#[test]
fn sv_down_of_a_waiting_service_keeps_it_down() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    recorder(&tree, "db", r#"sleep 0.5; echo >&3"#);
    common::write_file(&tree.service_dir().join("db/notification-fd"), "3\n", 0o644);
    recorder(&tree, "app", "");
    tree.service_file("app", "service.toml", "after = [\"db\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start db", LONG);
    // db can start before the runit state is on disk (written once per
    // wake-up); sv without a `supervise/status` does nothing.
    tree.wait_sv_status(Sv::Baseinit, "app", "down: app", LONG);
    tree.sv(Sv::Baseinit, &["down", "app"]);
    // The down is taken (app waits no more) while db is not ready yet...
    let state = tree.wait_status("app to stop waiting", LONG, |s| {
        let state = common::service_in(s, "app")?["state"].clone();
        (state != "waiting").then_some(state)
    });
    assert_eq!(state, "down", "app started although sv down");
    // ...and the snapshot that shows db ready, what app waited for, is
    // taken after baseinit acted on it: app is still down.
    let app = tree.wait_status("db to be ready", LONG, |s| {
        let ready = common::service_in(s, "db")?["ready"] == true;
        ready.then(|| common::service_in(s, "app").cloned())?
    });
    assert_eq!(app["state"], "down", "app started although sv down");
    init.stop(LONG);
    assert!(
        !tree.read("events").contains("start app"),
        "app started although sv down"
    );
}

#[test]
fn baseinits_sv_check_waits_for_baseinits_readiness() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    recorder(
        &tree,
        "db",
        r#"while [ ! -e "$OUT/go" ]; do sleep 0.05; done; echo >&3"#,
    );
    common::write_file(&tree.service_dir().join("db/notification-fd"), "3\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start db", LONG);
    common::wait_supervised(&tree, "db", LONG);
    let check = |wait: &str| tree.sv(Sv::Baseinit, &["-w", wait, "check", "db"]);
    let out = check("1");
    assert_eq!(out.code, 1, "not ready yet: {out:?}");
    assert!(out.stdout.starts_with("timeout: run: db"), "{out:?}");
    common::write_file(&tree.out("go"), "", 0o644);
    let out = check("5");
    assert_eq!(out.code, 0, "ready: {out:?}");
    init.stop(LONG);
}
