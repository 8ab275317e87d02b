//! `env-file`, `env-dir`, `${VAR}` and `[secrets]` of service.toml, seen
//! from inside real services run by baseinit as PID 1 of a namespace; their
//! errors from `baseinit check` and at boot; and a secret's value nowhere
//! but in its own service's environment.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Sv, Tree, require, wait_for, wait_lines, write_file};

const LONG: Duration = Duration::from_secs(30);

/// A value to search for everywhere it must not be.
const SECRET: &str = "S3CRET-VALUE-5d41402abc4b2a76";

/// The environment a service wrote with `env -0` to `name` in the tree.
fn env_of(tree: &Tree, name: &str) -> BTreeMap<String, String> {
    common::parse_env0(&fs::read(tree.out(name)).unwrap_or_default())
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// Waits until `name` in the tree is a whole `env -0` dump (written to a
/// temporary file, then renamed).
fn wait_env(tree: &Tree, name: &str) -> BTreeMap<String, String> {
    wait_for(&format!("{name} to be written"), LONG, || {
        tree.out(name).exists().then(|| env_of(tree, name))
    })
}

/// A `command` that writes its working directory to `$OUT/NAME.pwd`, its
/// `DB_PASSWORD` to `$OUT/NAME.starts`, then (last, atomically) its
/// environment to `$OUT/NAME`, and sleeps. `${OUT}` is
/// expanded by baseinit; `$$` is the shell's `$`.
fn dump_command(name: &str) -> String {
    format!(
        r#"command = ["/bin/sh", "-c", "pwd > ${{OUT}}/{name}.pwd; echo \"$${{DB_PASSWORD:-none}}\" >> ${{OUT}}/{name}.starts; env -0 > ${{OUT}}/{name}.tmp && mv ${{OUT}}/{name}.tmp ${{OUT}}/{name}; exec sleep 60"]"#
    )
}

/// Every file under `dir`, by path, with its content.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(content) = fs::read(&path) {
            found.push((path.display().to_string(), content));
        }
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Each key from inside a real service, in its order of precedence:
/// container environment < env-file (a later file winning) < env-dir (an
/// empty file unsets) < [environment] < [secrets]; and `${VAR}` in
/// command, working-directory and [environment] (`user`: below). The
/// secret is in that service's environment and nowhere else: not in
/// baseinit's log (at trace level), `status --json`, the container
/// environment's files and dumps, or another service's environment.
#[test]
fn each_key_is_seen_from_inside_a_service_and_the_secret_nowhere_else() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let root = tree.path().display().to_string();
    fs::create_dir(tree.path().join("work")).unwrap();
    write_file(
        &tree.path().join("shared.env"),
        "# shared by the services\nSHARED=shared\nexport BY_LOCAL=shared\nCONTAINER=\"from env-file\"\nHOME=/from/env-file\nQUOTED=\"two words\"\nBY_DIR=shared\n",
        0o644,
    );
    tree.service_file(
        "app",
        "service.toml",
        &format!(
            "{}\nworking-directory = \"${{WORK:-/nonexistent}}\"\n\
             env-file = [\"{root}/shared.env\", \"./local.env\"]\nenv-dir = \"./env\"\n\
             [environment]\nURL = \"http://${{HOST:-localhost}}:${{PORT}}/x\"\nBY_ENVIRONMENT = \"environment\"\nCOST = \"$$5\"\n\
             [secrets]\nDB_PASSWORD = \"./db_password\"\n",
            dump_command("app")
        ),
        0o644,
    );
    tree.service_file("app", "local.env", "BY_LOCAL=local\nBY_DIR=local\n", 0o644);
    tree.service_file("app", "env/BY_DIR", "dir  \nignored second line\n", 0o644);
    tree.service_file("app", "env/BY_ENVIRONMENT", "dir\n", 0o644);
    tree.service_file("app", "env/UNSET", "", 0o644);
    fs::write(tree.service_dir().join("app/env/MULTI"), b"a\0b\n").unwrap();
    tree.service_file("app", "db_password", &format!("{SECRET}\n"), 0o600);
    // Another service, with the container environment only.
    tree.service_file("other", "service.toml", &dump_command("other"), 0o644);
    // A variable of the container environment directory.
    write_file(&tree.env_dir().join("FROM_ENV_DIR"), "file\n", 0o600);

    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |command| {
        command
            .env("BASEINIT_LOG", "trace")
            .env("OUT", tree.path())
            .env("WORK", tree.path().join("work"))
            .env("PORT", "8080")
            .env("CONTAINER", "container")
            .env("UNSET", "container")
            .env("KEEP", "container");
    });
    let app = wait_env(&tree, "app");
    let other = wait_env(&tree, "other");
    let want = [
        ("KEEP", Some("container")),
        ("FROM_ENV_DIR", Some("file")),
        ("CONTAINER", Some("from env-file")),
        ("SHARED", Some("shared")),
        ("QUOTED", Some("two words")),
        ("BY_LOCAL", Some("local")),
        ("BY_DIR", Some("dir")),
        ("MULTI", Some("a\nb")),
        ("UNSET", None),
        ("HOME", Some("/from/env-file")),
        ("BY_ENVIRONMENT", Some("environment")),
        ("URL", Some("http://localhost:8080/x")),
        ("COST", Some("$5")),
        ("DB_PASSWORD", Some(SECRET)),
    ];
    for (name, value) in want {
        assert_eq!(app.get(name).map(String::as_str), value, "{name} in {app:#?}");
    }
    assert_eq!(
        tree.read("app.pwd").trim(),
        tree.path().join("work").display().to_string()
    );
    assert_eq!(tree.read("app.starts"), format!("{SECRET}\n"));
    // The other service gets the container environment, none of app's.
    for name in ["SHARED", "BY_DIR", "URL", "DB_PASSWORD"] {
        assert!(!other.contains_key(name), "{name} in {other:#?}");
    }
    assert_eq!(other.get("UNSET").map(String::as_str), Some("container"));
    assert_eq!(tree.read("other.starts"), "none\n");

    let status = tree.baseinit(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.text());
    assert!(status.stdout.contains("\"app\""), "{}", status.stdout);
    let table = tree.baseinit(&["status"]);
    let init = {
        let finished = init.stop(LONG);
        assert!(finished.stderr.contains("service app: started"), "{}", finished.stderr);
        finished
    };
    for (what, text) in [
        ("baseinit's stderr", init.stderr.as_bytes()),
        ("baseinit's stdout", init.stdout.as_bytes()),
        ("status --json", status.stdout.as_bytes()),
        ("status", table.stdout.as_bytes()),
    ] {
        assert!(!holds(text, SECRET), "the secret is in {what}");
    }
    let mut exported = files_under(&tree.env_dir());
    for dump in ["container_environment.sh", "container_environment.json"] {
        let path = tree.path().join(dump);
        exported.push((path.display().to_string(), fs::read(&path).expect("the dump")));
    }
    assert!(exported.len() > 2, "{exported:?}");
    for (path, content) in exported {
        assert!(!holds(&content, SECRET), "the secret is in {path}");
        assert!(!holds(&content, "from env-file"), "app's env file is in {path}");
    }
}

/// Secrets and env files are read again at each start: a rotated secret
/// applies at the next `sv restart`; an edited env file is a change of the
/// definition at the next rescan (SIGHUP here), which restarts the service;
/// a secret gone is a failed start whose reason (the variable and the
/// file, not the value) is in the log and in `status`, and putting it back
/// brings the service back by itself.
#[test]
fn a_rotated_secret_applies_at_the_next_restart_and_a_missing_one_fails_the_start() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let root = tree.path().display().to_string();
    let secret = tree.path().join("db_password");
    write_file(&secret, "first\n", 0o600);
    write_file(&tree.path().join("app.env"), "VERSION=1\n", 0o644);
    tree.service_file(
        "app",
        "service.toml",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"echo \\\"$$DB_PASSWORD $$VERSION\\\" >> ${{OUT}}/starts; exec sleep 60\"]\n\
             env-file = \"{root}/app.env\"\nretry-after = \"200ms\"\n[backoff]\ninitial = \"50ms\"\nmax = \"200ms\"\n\
             [secrets]\nDB_PASSWORD = \"{root}/db_password\"\n"
        ),
        0o644,
    );
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |command| {
        command.env("OUT", tree.path());
    });
    wait_lines(&tree, "starts", 1, LONG);
    common::wait_supervised(&tree, "app", LONG);
    // Kubernetes rewrites a mounted secret in place.
    write_file(&secret, &format!("{SECRET}\n"), 0o600);
    let out = tree.sv(Sv::Baseinit, &["restart", "app"]);
    assert_eq!(out.code, 0, "{}", out.text());
    assert_eq!(wait_lines(&tree, "starts", 2, LONG), format!("first 1\n{SECRET} 1\n"));

    write_file(&tree.path().join("app.env"), "VERSION=2\n", 0o644);
    init.signal(nix::libc::SIGHUP);
    let starts = wait_lines(&tree, "starts", 3, LONG);
    assert!(starts.ends_with(&format!("{SECRET} 2\n")), "{starts}");
    assert!(
        init.stderr_so_far()
            .contains("service app: definition changed, restarting it")
    );

    fs::remove_file(&secret).unwrap();
    // The replaced unit opens its supervise/ control a wake-up after it
    // starts: until then sv says so and fails.
    // It waits for the run, which cannot start: the exit code says
    // "timeout"; only a refusal means it was not taken.
    wait_for("sv restart to be taken", LONG, || {
        let out = tree.sv(Sv::Baseinit, &["-w", "1", "restart", "app"]);
        (!out.text().contains("runsv not running")).then_some(out)
    });
    let reason = tree.wait_status("app's start to fail", LONG, |status| {
        let app = common::service_in(status, "app")?;
        app["reason"].as_str().map(str::to_owned)
    });
    let want = format!("secret DB_PASSWORD: {root}/db_password: does not exist");
    assert!(reason.contains(&want), "{reason}");
    let log = wait_for("the failed start in the log", LONG, || {
        let log = init.stderr_so_far();
        log.contains(&want).then_some(log)
    });
    assert!(log.contains("service app: cannot start"), "{log}");
    // Back in place: the next retry starts it, and the reason is gone.
    write_file(&secret, "third\n", 0o600);
    let starts = wait_lines(&tree, "starts", 4, LONG);
    assert_eq!(starts, format!("first 1\n{SECRET} 1\n{SECRET} 2\nthird 2\n"));
    tree.wait_status("the reason to go", LONG, |status| {
        let app = common::service_in(status, "app")?;
        (app["state"] == "run" && app.get("reason").is_none()).then_some(())
    });
    let finished = init.stop(LONG);
    assert!(!finished.stderr.contains(SECRET), "{}", finished.stderr);
}

/// Each bad input, as `baseinit check` reports it (file, line, column) and
/// at boot: only its own service is broken, with the reason in `status`;
/// the good service runs.
#[test]
fn each_bad_input_is_reported_by_check_and_breaks_only_its_service() {
    require!(Capability::Namespaces);
    let tree = Tree::new();
    let toml = |service: &str, body: &str| {
        tree.service(service, "exec sleep 60");
        tree.service_file(service, "service.toml", body, 0o644);
    };
    tree.service("good", r#"echo up > "$OUT/good"; exec sleep 60"#);
    toml("missing-env-file", "env-file = \"./nope.env\"\n");
    toml("syntax", "env-file = [\"./app.env\"]\n");
    tree.service_file(
        "syntax",
        "app.env",
        &format!("# ok\nA=1\nPASSWORD={SECRET} unquoted\n"),
        0o644,
    );
    toml("missing-secret", "[secrets]\nDB = \"./db\"\n");
    toml("huge-secret", "[secrets]\nDB = \"./db\"\n");
    fs::File::create(tree.service_dir().join("huge-secret/db"))
        .unwrap()
        .set_len((1 << 20) + 1)
        .unwrap();
    toml("unknown-var", "\nworking-directory = \"/srv/${NOT_SET_HERE}\"\n");
    toml("bad-dollar", "[environment]\nA = \"${HOME-x}\"\n");
    toml("env-dir", "env-dir = \"./env\"\n");
    fs::create_dir_all(tree.service_dir().join("env-dir/env/SUB")).unwrap();
    let svc = tree.service_dir().display().to_string();
    let want = [
        format!("{svc}/bad-dollar/service.toml:2:6: error: [environment] A: `${{HOME-x}}`: write `${{NAME}}`"),
        format!("{svc}/env-dir/service.toml:1:11: error: env-dir: {svc}/env-dir/env/SUB: not a regular file"),
        format!("{svc}/huge-secret/service.toml:2:6: error: secret DB: {svc}/huge-secret/db: too large"),
        format!(
            "{svc}/missing-env-file/service.toml:1:12: error: env-file: {svc}/missing-env-file/nope.env: does not exist"
        ),
        format!("{svc}/missing-secret/service.toml:2:6: error: secret DB: {svc}/missing-secret/db: does not exist"),
        format!("{svc}/syntax/app.env:3:40: error: not valid dotenv syntax"),
        format!("{svc}/unknown-var/service.toml:2:27: error: working-directory: unknown variable `NOT_SET_HERE`"),
    ];
    let check = tree.baseinit(&[
        "check",
        "--service-dir",
        &svc,
        "--startup-dir",
        &tree.startup_dir().display().to_string(),
        "--env-dir",
        &tree.env_dir().display().to_string(),
    ]);
    assert_eq!(check.code, 1, "{}", check.text());
    for line in &want {
        assert!(
            check.stdout.lines().any(|l| l.starts_with(line.as_str())),
            "{line:?} not in\n{}",
            check.stdout
        );
    }
    assert!(check.stdout.contains("7 error(s)"), "{}", check.stdout);
    assert!(!check.text().contains(SECRET), "{}", check.text());

    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&[]), |command| {
        command.env("OUT", tree.path());
    });
    wait_lines(&tree, "good", 1, LONG);
    let broken = tree.wait_status("the broken services", LONG, |status| {
        let broken: Vec<(String, String)> = status["services"]
            .as_array()?
            .iter()
            .filter(|s| s["state"] == "broken")
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default().to_owned(),
                    s["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (broken.len() == 7).then_some(broken)
    });
    let status = tree.baseinit(&["status", "--json"]);
    assert_eq!(
        common::service_in(&tree.status().unwrap(), "good").unwrap()["state"],
        "run"
    );
    for ((name, reason), line) in broken.iter().zip(&want) {
        let (place, message) = line.split_once(": error: ").unwrap();
        assert!(
            reason.contains(message) && reason.contains(place),
            "{name}: {reason}\nwant {line}"
        );
    }
    let finished = init.stop(LONG);
    finished.assert_stderr_contains("7 service(s) not started, for problems in their definitions");
    for text in [&finished.stderr, &finished.stdout, &status.stdout] {
        assert!(!text.contains(SECRET), "{text}");
    }
}

/// `${VAR}` in `user`, and the user's HOME, USER and LOGNAME over what the
/// env files say. Not PID 1 (a user namespace maps only root, and forbids
/// setgroups): as root on the host, to switch users.
#[test]
fn user_is_expanded_and_its_identity_wins_over_the_env_files() {
    require!(Capability::Root);
    let tree = Tree::new();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tree.path(), fs::Permissions::from_mode(0o777)).unwrap();
    tree.service_file(
        "app",
        "service.toml",
        &format!(
            "{}\nuser = \"${{RUN_AS}}\"\nenv-file = \"./app.env\"\n",
            dump_command("app")
        ),
        0o644,
    );
    tree.service_file(
        "app",
        "app.env",
        "HOME=/from/env-file\nUSER=env-file\nFROM_FILE=1\n",
        0o644,
    );
    let init = Baseinit::start_with(Mode::Subreaper, &tree.args(&[]), |command| {
        command.env("OUT", tree.path()).env("RUN_AS", "nobody");
    });
    let app = wait_env(&tree, "app");
    init.stop(LONG);
    let nobody = baseinit::accounts::user_by_name("nobody").unwrap().unwrap();
    let home = nobody.dir.display().to_string();
    for (name, value) in [
        ("HOME", home.as_str()),
        ("USER", "nobody"),
        ("LOGNAME", "nobody"),
        ("FROM_FILE", "1"),
    ] {
        assert_eq!(app.get(name).map(String::as_str), Some(value), "{name} in {app:#?}");
    }
    // An unknown user after expansion names the expanded value.
    let mut check = std::process::Command::new(common::BIN);
    check
        .args(["check", "--service-dir"])
        .arg(tree.service_dir())
        .args(["--env-dir"])
        .arg(tree.env_dir())
        .env("RUN_AS", "no-such-user-here");
    let out = common::run(check);
    assert_eq!(out.code, 1, "{}", out.text());
    assert!(
        out.stdout
            .contains("app/service.toml:2:8: error: unknown user `no-such-user-here`"),
        "{}",
        out.stdout
    );
}
