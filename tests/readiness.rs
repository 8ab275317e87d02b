//! Readiness and health that are not a script, as PID 1: `log-line` (a line
//! of the service's output) and `http` (a URL answering 2xx), in `[ready]`
//! (the order of dependents) and `[health]` (restarts); and their errors at
//! `baseinit check` and at load. Every server here listens on loopback.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, require, wait_for, wait_text};

const LONG: Duration = Duration::from_secs(30);

/// A service that records "start NAME t" (ns) and then idles.
fn recorder(tree: &Tree, name: &str) {
    tree.service(
        name,
        &format!(
            r#"echo "start {name} $(date +%s%N)" >> "$OUT/events"
trap 'exit 0' TERM
while :; do sleep 0.05; done"#
        ),
    );
}

/// Every event of the events file: (kind, name) -> times, in order.
fn events(tree: &Tree) -> HashMap<(String, String), Vec<u128>> {
    let mut all: HashMap<(String, String), Vec<u128>> = HashMap::new();
    for line in tree.read("events").lines() {
        let mut f = line.split_whitespace();
        if let (Some(kind), Some(name), Some(Ok(t))) = (f.next(), f.next(), f.next().map(str::parse)) {
            all.entry((kind.to_owned(), name.to_owned())).or_default().push(t);
        }
    }
    all
}

/// The first time of (kind, name).
fn first(e: &HashMap<(String, String), Vec<u128>>, kind: &str, name: &str) -> u128 {
    e.get(&(kind.to_owned(), name.to_owned()))
        .and_then(|times| times.first().copied())
        .unwrap_or_else(|| panic!("no {kind} {name} event in {e:?}"))
}

/// A TCP port on loopback that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn a_log_line_holds_the_dependents_until_it_is_printed() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // The ready line comes 300 ms after the start, in two writes (the
    // reader must join them), after other lines; the time is recorded just
    // before its first half.
    tree.service(
        "server",
        r#"echo "start server $(date +%s%N)" >> "$OUT/events"
echo "starting up"
echo "not yet: listening soon"
sleep 0.3
echo "ready server $(date +%s%N)" >> "$OUT/events"
printf 'listening '
sleep 0.1
printf 'on 8080\n'
trap 'exit 0' TERM
while :; do sleep 0.05; done"#,
    );
    tree.service_file(
        "server",
        "service.toml",
        "[ready]\nlog-line = '^listening on \\d+$'\n",
        0o644,
    );
    recorder(&tree, "client");
    tree.service_file("client", "service.toml", "after = [\"server\"]\n", 0o644);
    // `--output inherit`: a log-line service's lines pass through baseinit
    // all the same.
    let init = Baseinit::start(Mode::Pid1, &tree.args(&["--output", "inherit"]));
    wait_text(&tree, "events", "start client", LONG);
    let run = init.stop(LONG);
    let e = events(&tree);
    assert!(
        first(&e, "ready", "server") < first(&e, "start", "client"),
        "the client started before the line: {e:?}"
    );
    assert!(
        first(&e, "start", "client") - first(&e, "start", "server") >= 300_000_000,
        "not before the 300 ms: {e:?}"
    );
    run.assert_stderr_contains("service server: ready");
    assert!(run.stdout.contains("server | listening on 8080\n"), "{}", run.stdout);
}

#[test]
fn with_a_logger_only_stderr_is_watched() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Its stdout goes to its log/ logger: the line there does not count;
    // the same line on stderr, later, does.
    tree.service(
        "server",
        r#"echo "start server $(date +%s%N)" >> "$OUT/events"
echo "listening"
sleep 0.3
echo "ready server $(date +%s%N)" >> "$OUT/events"
echo "listening" >&2
trap 'exit 0' TERM
while :; do sleep 0.05; done"#,
    );
    tree.service_file("server", "service.toml", "[ready]\nlog-line = \"listening\"\n", 0o644);
    tree.service_file("server", "log/run", &tree.script("exec cat > \"$OUT/logged\""), 0o755);
    recorder(&tree, "client");
    tree.service_file("client", "service.toml", "after = [\"server\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start client", LONG);
    init.stop(LONG);
    let e = events(&tree);
    assert!(
        first(&e, "ready", "server") < first(&e, "start", "client"),
        "the logger's line made it ready: {e:?}"
    );
    assert_eq!(tree.read("logged"), "listening\n", "the logger got stdout");
}

/// An HTTP server on `port` that answers `503` for its first 400 ms and
/// `200` after, recording each answer (and the User-Agent it was asked
/// with) before sending it; with `health_file`, it answers 500 while that
/// file is missing.
fn http_server(tree: &Tree, name: &str, port: u16, health_file: bool) {
    let health = if health_file {
        r#"if not os.path.exists(out + "/healthy"): code = 500"#
    } else {
        ""
    };
    tree.service(
        name,
        &format!(
            r#"echo "start {name} $(date +%s%N)" >> "$OUT/events"
export OUT
exec python3 -c '
import http.server, os, time
out = os.environ["OUT"]
began = time.time()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if time.time() - began < 0.4 else 200
        {health}
        agent = self.headers.get("User-Agent", "-").replace(" ", "_")
        with open(out + "/events", "a") as f:
            f.write(f"answer{{code}} {name} {{time.time_ns()}} {{agent}} {{self.path}}\n")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", {port}), Handler).serve_forever()
'"#
        ),
    );
}

#[test]
fn http_readiness_waits_for_a_2xx_answer() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let port = free_port();
    http_server(&tree, "api", port, false);
    tree.service_file(
        "api",
        "service.toml",
        &format!("[ready]\nhttp = \"http://127.0.0.1:{port}/healthz?deep=1\"\ninterval = \"50ms\"\n"),
        0o644,
    );
    recorder(&tree, "client");
    tree.service_file("client", "service.toml", "requires = [\"api\"]\n", 0o644);
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start client", LONG);
    let run = init.stop(LONG);
    let e = events(&tree);
    let ok = first(&e, "answer200", "api");
    assert!(
        ok < first(&e, "start", "client"),
        "the client came before the 200: {e:?}"
    );
    let refused = e
        .get(&("answer503".to_owned(), "api".to_owned()))
        .cloned()
        .unwrap_or_default();
    assert!(!refused.is_empty(), "a 503 was seen first: {e:?}");
    assert!(refused.iter().all(|t| *t < ok), "{e:?}");
    let text = tree.read("events");
    assert!(
        text.contains(" baseinit /healthz?deep=1\n"),
        "user agent and path: {text}"
    );
    run.assert_stderr_contains("service api: ready");
}

#[test]
fn a_failing_http_health_probe_restarts_the_service() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let port = free_port();
    common::write_file(&tree.out("healthy"), "", 0o644);
    http_server(&tree, "web", port, true);
    tree.service_file(
        "web",
        "service.toml",
        &format!(
            "[ready]\nhttp = \"http://localhost:{port}/\"\ninterval = \"50ms\"\n\
             [health]\nhttp = \"http://127.0.0.1:{port}/\"\ninterval = \"100ms\"\nretries = 2\n"
        ),
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    let answers = |code: &str| tree.read("events").matches(code).count();
    // Ready, then healthy: health probes answered 200.
    wait_for("three 200 answers", LONG, || (answers("answer200") >= 3).then_some(()));
    assert_eq!(
        tree.read("events").matches("start web").count(),
        1,
        "healthy: no restart"
    );
    std::fs::remove_file(tree.out("healthy")).expect("rm healthy");
    wait_for("web to be restarted", LONG, || {
        (tree.read("events").matches("start web").count() >= 2).then_some(())
    });
    assert!(answers("answer500") >= 2, "two failures first");
    let run = init.stop(LONG);
    run.assert_stderr_contains("service web: health probe failed (2 of 2)");
    run.assert_stderr_contains("service web: unhealthy: restarting it");
}

#[test]
fn a_health_log_line_restarts_the_service_that_prints_it() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    // Its first run fails loudly once; the next runs stay quiet.
    tree.service(
        "jvm",
        r#"echo "start jvm $(date +%s%N)" >> "$OUT/events"
trap 'exit 0' TERM
if [ ! -e "$OUT/failed-once" ]; then
  touch "$OUT/failed-once"
  sleep 0.2
  echo 'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space' >&2
fi
while :; do sleep 0.05; done"#,
    );
    tree.service_file(
        "jvm",
        "service.toml",
        "[health]\nlog-line = \"OutOfMemoryError\"\nretries = 1\n",
        0o644,
    );
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_for("jvm to be restarted", LONG, || {
        (tree.read("events").matches("start jvm").count() >= 2).then_some(())
    });
    let run = init.stop(LONG);
    run.assert_stderr_contains("service jvm: a line matched \"OutOfMemoryError\" (1 of 1)");
    run.assert_stderr_contains("service jvm: unhealthy: restarting it");
    assert_eq!(tree.read("events").matches("start jvm").count(), 2, "once only");
}

/// The broken definitions of the new keys, and what check says of each.
fn broken(tree: &Tree) -> Vec<&'static str> {
    let toml = |name: &str, body: &str| {
        tree.service(name, "exec sleep 60");
        tree.service_file(name, "service.toml", body, 0o644);
    };
    toml("regex", "restart = \"always\"\n[ready]\nlog-line = \"listening (\"\n");
    toml("url", "[ready]\nhttp = \"http://db.internal:8080/\"\n");
    toml("tls", "[health]\nhttp = \"https://127.0.0.1/\"\n");
    toml("remote", "[health]\nhttp = \"http://192.0.2.1:80/\"\n");
    toml("inherit", "output = \"inherit\"\n[ready]\nlog-line = \"up\"\n");
    toml("two", "[ready]\ntcp = \"127.0.0.1:1\"\nlog-line = \"up\"\n");
    vec![
        "service/inherit/service.toml:3:12: error: [ready] log-line reads the output that passes through baseinit",
        "service/regex/service.toml:3:12: error: ready.log-line \"listening (\": found open group without closing ')'",
        "service/remote/service.toml:2:16: error: health.http \"http://192.0.2.1:80/\": 192.0.2.1 is not an address of this container",
        "service/tls/service.toml:2:9: error: health.http \"https://127.0.0.1/\": https is not supported",
        "service/two/service.toml:3:12: error: [ready] takes one way to tell readiness: `log-line` and `tcp` are both given",
        "service/url/service.toml:2:16: error: ready.http \"http://db.internal:8080/\": host \"db.internal\": write an IP address or `localhost`",
    ]
}

#[test]
fn check_reports_bad_patterns_and_urls_with_line_and_column() {
    let tree = Tree::new();
    let expected = broken(&tree);
    let out = common::run(tree.check_command(&[]));
    assert_eq!(out.code, 1, "{}", out.text());
    let root = format!("{}/", tree.path().display());
    let text = out.stdout.replace(&root, "");
    for line in expected {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}

#[test]
fn a_broken_pattern_keeps_its_service_down_and_the_others_start() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    broken(&tree);
    recorder(&tree, "fine");
    let init = Baseinit::start(Mode::Pid1, &tree.args(&[]));
    wait_text(&tree, "events", "start fine", LONG);
    let regex = tree.wait_status("the status", LONG, |s| common::service_in(s, "regex").cloned());
    assert_eq!(regex["state"], "broken", "{regex}");
    let run = init.stop(LONG);
    run.assert_stderr_contains("ready.log-line \"listening (\": found open group without closing ')'");
    assert!(!tree.read("events").contains("start regex"));
}
