//! Property tests ("fuzzing") of the parsers that read what users write:
//! service.toml, durations, signal names, the command line, and the
//! container environment's .sh export. Any input gives a value or a clear
//! error, never a panic. Regressions proptest finds are kept in
//! `proptest-regressions/` and replayed first.
#![allow(clippy::disallowed_methods)]

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use baseinit::config::{Defaults, parse_duration, parse_signal, scan_services};
use baseinit::container_env::{ContainerEnv, EnvPaths};
use clap::Parser;
use proptest::prelude::*;

/// TOML-ish text: mostly the keys and shapes of service.toml, plus noise.
fn toml_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "command",
        "restart",
        "stop-signal",
        "stop-timeout",
        "finish-timeout",
        "user",
        "group",
        "working-directory",
        "output",
        "after",
        "requires",
        "essential",
        "max-restarts",
        "[backoff]",
        "[ready]",
        "[health]",
        "[environment]",
        "initial",
        "tcp",
        "http",
        "log-line",
        "bogus",
    ]);
    let value = prop_oneof![
        Just("\"5s\"".to_owned()),
        Just("[\"a\", \"b\"]".to_owned()),
        Just("true".to_owned()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        "\"[^\"\\\\]{0,12}\"",
        "[0-9]{1,22}",
        ".{0,10}",
    ];
    prop::collection::vec((key, value), 0..8)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect())
}

/// Scans a service directory holding one service, `svc`: an executable
/// `run` and `toml` as its `service.toml`.
fn scan_one_service(toml: &[u8]) -> (tempfile::TempDir, baseinit::config::Scan) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("svc");
    std::fs::create_dir(&service).unwrap();
    let run = service.join("run");
    std::fs::write(&run, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(service.join("service.toml"), toml).unwrap();
    let scan = scan_services(dir.path(), &Defaults::default(), true);
    (dir, scan)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn service_toml_never_panics_and_every_error_names_its_file(
        text in prop_oneof![toml_text(), ".{0,200}"],
        raw in prop::collection::vec(any::<u8>(), 0..200),
        use_raw in any::<bool>(),
    ) {
        let (dir, scan) = scan_one_service(if use_raw { &raw } else { text.as_bytes() });
        for e in &scan.errors {
            prop_assert!(e.path.starts_with(dir.path()), "{e}");
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn durations_and_signals_never_panic(text in ".{0,30}") {
        let _ = parse_duration(&text);
        let _ = parse_signal(&text);
    }

    #[test]
    fn the_command_line_parses_or_is_a_usage_error(
        args in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                "--", "--quiet", "-v", "--stop-timeout", "--wait-for-services", "--wait-for-services=1",
                "--output", "json", "--log-format", "--skip-runit", "5", "-1", "nan", "sh",
            ]).prop_map(String::from),
            ".{0,8}",
        ], 0..8),
    ) {
        let _ = baseinit::cli::Cli::try_parse_from(std::iter::once("baseinit".to_owned()).chain(args));
    }
}

proptest! {
    // Each case runs a real shell: fewer of them.
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// `sh -c '. FILE; env -0'` gives back exactly any value without NUL.
    #[test]
    fn any_value_survives_the_sh_export(value in prop::collection::vec(1u8..=255, 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let paths = EnvPaths::beside(&dir.path().join("container_environment"));
        let sh = paths.sh.clone();
        let _env = ContainerEnv::boot(paths, [(OsString::from("FUZZ"), OsString::from_vec(value.clone()))]);
        let found = common::sourced_env(&sh).remove(b"FUZZ".as_slice());
        prop_assert_eq!(found.as_deref(), Some(value.as_slice()));
    }
}

/// The kept corpus, `tests/corpus/service-toml/`: inputs that once needed
/// care (deep nesting, overflow, BOM, CRLF, NUL, binary, duplicates), each
/// replayed as a service's `service.toml`. Each is loaded or reported
/// naming its file; none panics. Add a file here for every new finding.
#[test]
fn the_kept_service_toml_corpus_is_loaded_or_reported() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/service-toml");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for input in entries {
        let (dir, scan) = scan_one_service(&std::fs::read(&input).unwrap());
        let loaded = scan.services.len();
        assert_eq!(
            loaded + usize::from(!scan.errors.is_empty()),
            1,
            "{}: either loaded or reported: {:?}",
            input.display(),
            scan.errors
        );
        for e in &scan.errors {
            assert!(e.path.starts_with(dir.path()), "{}: {e}", input.display());
        }
        eprintln!(
            "{}: {}",
            input.file_name().unwrap().to_string_lossy(),
            scan.errors.first().map_or("loaded".to_owned(), |e| e.message.clone())
        );
        seen += 1;
    }
    assert!(seen >= 20, "the corpus is there");
}
