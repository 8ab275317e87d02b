//! The readiness and health kinds that are not a script: `log-line` (a
//! pattern an output line matches) and `http` (a URL that answers 2xx), in
//! `[ready]` and `[health]`: compiled and checked once, at load.

use std::fmt;
use std::sync::Arc;

use memchr::memmem;
use toml::Spanned;

use super::raw::{RawHealth, RawReady, RawService};
use super::{ConfigError, OutputMode, ReadyCheck};
use crate::http_probe::{HttpUrl, binds_locally};

/// The compiled program's limit, in bytes of regex-lite's NFA: some
/// thousands of states, far more than a pattern in a service.toml needs,
/// and a bound on what testing one line costs (time is linear in the line
/// times the program's size).
pub const SIZE_LIMIT: usize = 64 * 1024;
/// How deep groups and repetitions may nest: regex-lite's parser and
/// compiler recurse, and PID 1's stack must not be what a pattern exhausts.
pub const NEST_LIMIT: u32 = 32;

/// A `log-line` pattern, compiled once at load. A pattern without any of
/// the regex syntax's special characters is searched as plain bytes (the
/// common case: `OutOfMemoryError`, `listening on`), at memchr's speed.
/// Shared by the readers of every run (a clone is a reference count).
#[derive(Clone)]
pub struct LinePattern(Arc<Compiled>);

struct Compiled {
    source: String,
    matcher: Matcher,
}

#[derive(Clone)]
enum Matcher {
    Literal(memmem::Finder<'static>),
    /// A regex, and the plain text every matching line must hold, if the
    /// pattern starts with some: a line without it is not matched at all,
    /// which spares most lines the regex (whose PikeVM costs some µs a line).
    Regex(regex_lite::Regex, Option<memmem::Finder<'static>>),
}

/// The characters that are syntax in a regex; a pattern without any is
/// plain text.
const SPECIAL: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];

/// The plain text at the start of `source` that every match must contain:
/// none with an alternation anywhere (`a|b` needs neither), after a `^`,
/// up to the first special or non-ASCII character, less a last character
/// that a `*`, `?` or `{` makes optional; at least 3 bytes to be worth it.
fn required_prefix(source: &str) -> Option<&str> {
    if source.contains('|') {
        return None;
    }
    let body = source.strip_prefix('^').unwrap_or(source);
    let end = body
        .find(|c: char| SPECIAL.contains(&c) || !c.is_ascii())
        .unwrap_or(body.len());
    let optional = body[end..].starts_with(['*', '?', '{']);
    let prefix = &body[..if optional { end.saturating_sub(1) } else { end }];
    (prefix.len() >= 3).then_some(prefix)
}

impl LinePattern {
    /// Compiles `source` within the limits; the message says what is wrong.
    pub fn new(source: &str) -> Result<LinePattern, String> {
        if source.is_empty() {
            return Err("an empty pattern matches every line: write what the line says".into());
        }
        let matcher = if source.contains(SPECIAL) {
            let regex = regex_lite::RegexBuilder::new(source)
                .size_limit(SIZE_LIMIT)
                .nest_limit(NEST_LIMIT)
                .build()
                .map_err(|e| match e.to_string() {
                    // regex-lite's messages for them name neither limit.
                    m if m.contains("size limit") => {
                        format!("{m} (the compiled pattern may take {SIZE_LIMIT} bytes: write a simpler one)")
                    }
                    m if m.contains("nesting") => format!("{m} (at most {NEST_LIMIT} levels)"),
                    m => m,
                })?;
            let prefilter = required_prefix(source).map(|p| memmem::Finder::new(p.as_bytes()).into_owned());
            Matcher::Regex(regex, prefilter)
        } else {
            Matcher::Literal(memmem::Finder::new(source.as_bytes()).into_owned())
        };
        Ok(LinePattern(Arc::new(Compiled {
            source: source.to_owned(),
            matcher,
        })))
    }

    /// True when `line` (without its newline) matches. Plain text is
    /// searched in the bytes; a regex sees a line that is not UTF-8 with
    /// U+FFFD in place of its bad bytes (a copy made only for such a line).
    pub fn is_match(&self, line: &[u8]) -> bool {
        match &self.0.matcher {
            Matcher::Literal(finder) => finder.find(line).is_some(),
            Matcher::Regex(regex, prefilter) => {
                prefilter.as_ref().is_none_or(|p| p.find(line).is_some())
                    && regex.is_match(&String::from_utf8_lossy(line))
            }
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0.source
    }
}

impl PartialEq for LinePattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

impl Eq for LinePattern {}

impl fmt::Debug for LinePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinePattern({:?})", self.0.source)
    }
}

impl super::ServiceSpec {
    /// Its run's output lines are watched (`log-line`): they must pass
    /// through baseinit, whatever `--output` says.
    pub fn watches_output(&self) -> bool {
        let log_line = |check: &ReadyCheck| matches!(check, ReadyCheck::LogLine(_));
        log_line(&self.readiness.check) || self.health.as_ref().is_some_and(|h| log_line(&h.check))
    }
}

/// The byte offset in service.toml of byte `offset` of the string `value`:
/// that far into it when it is written plainly between quotes (its span is
/// two bytes longer than the value), else where the string starts.
fn value_offset(value: &Spanned<String>, offset: usize) -> usize {
    let span = value.span();
    if span.end - span.start == value.get_ref().len() + 2 {
        span.start + 1 + offset
    } else {
        span.start
    }
}

fn pattern(
    table: &str,
    value: &Spanned<String>,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<LinePattern> {
    LinePattern::new(value.get_ref())
        .map_err(|message| {
            let message = format!("{table}.log-line {:?}: {message}", value.get_ref());
            errors.push(at(value.span().start, message));
        })
        .ok()
}

fn url(
    table: &str,
    value: &Spanned<String>,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<HttpUrl> {
    HttpUrl::parse(value.get_ref(), &binds_locally)
        .map_err(|e| {
            let message = format!("{table}.http {:?}: {}", value.get_ref(), e.message);
            errors.push(at(value_offset(value, e.offset), message));
        })
        .ok()
}

/// `[ready] http` or `[ready] log-line`, if given (None also after an
/// error, which is recorded). Either is the only way of telling readiness
/// in its table: given with another kind, it is an error (the older kinds
/// keep their order among themselves, as before these two existed).
pub(super) fn ready_check(
    raw: &RawReady,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<ReadyCheck> {
    let new = [("http", raw.http.as_ref()), ("log-line", raw.log_line.as_ref())];
    let (key, value) = new.into_iter().find_map(|(key, value)| Some((key, value?)))?;
    let others = [
        ("notification-fd", raw.notification_fd.as_ref().map(|v| v.span().start)),
        ("sd-notify", raw.sd_notify.filter(|on| *on).map(|_| value.span().start)),
        ("command", raw.command.as_ref().map(|v| v.span().start)),
        ("tcp", raw.tcp.as_ref().map(|v| v.span().start)),
        (
            "log-line",
            raw.log_line.as_ref().filter(|_| key == "http").map(|v| v.span().start),
        ),
    ];
    if let Some((other, offset)) = others.into_iter().find_map(|(k, o)| Some((k, o?))) {
        errors.push(at(
            offset.max(value.span().start),
            format!("[ready] takes one way to tell readiness: `{key}` and `{other}` are both given"),
        ));
        return None;
    }
    match key {
        "http" => url("ready", value, at, errors).map(ReadyCheck::Http),
        _ => pattern("ready", value, at, errors).map(ReadyCheck::LogLine),
    }
}

/// `[health]`'s probe: exactly one of `command` (made by the caller, which
/// resolves its program), `tcp`, `http` and `log-line`. Ok(None): it is the
/// command. Err: an error was recorded.
pub(super) fn health_check(
    raw: &RawHealth,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
    missing: impl FnOnce() -> ConfigError,
) -> Result<Option<ReadyCheck>, ()> {
    let given: Vec<(&str, usize)> = [
        ("command", raw.command.as_ref().map(|v| v.span().start)),
        ("tcp", raw.tcp.as_ref().map(|v| v.span().start)),
        ("http", raw.http.as_ref().map(|v| v.span().start)),
        ("log-line", raw.log_line.as_ref().map(|v| v.span().start)),
    ]
    .into_iter()
    .filter_map(|(key, offset)| Some((key, offset?)))
    .collect();
    match given[..] {
        [] => {
            errors.push(missing());
            Err(())
        }
        [("command", _)] => Ok(None),
        [("tcp", _)] => Ok(raw.tcp.as_ref().map(|tcp| ReadyCheck::Tcp(tcp.get_ref().clone()))),
        [("http", _)] => match raw.http.as_ref().and_then(|v| url("health", v, at, errors)) {
            Some(url) => Ok(Some(ReadyCheck::Http(url))),
            None => Err(()),
        },
        [("log-line", _)] => match raw.log_line.as_ref().and_then(|v| pattern("health", v, at, errors)) {
            Some(pattern) => Ok(Some(ReadyCheck::LogLine(pattern))),
            None => Err(()),
        },
        [(first, _), (second, offset), ..] => {
            errors.push(at(
                offset,
                format!("[health] takes one probe: `{first}` and `{second}` are both given"),
            ));
            Err(())
        }
        _ => Err(()),
    }
}

/// `log-line` reads the lines that pass through baseinit: a service whose
/// own `output = "inherit"` has none.
pub(super) fn check_output(raw: &RawService, at: &dyn Fn(usize, String) -> ConfigError, errors: &mut Vec<ConfigError>) {
    if raw.output != Some(OutputMode::Inherit) {
        return;
    }
    let ready = raw.ready.as_ref().and_then(|r| r.log_line.as_ref());
    let health = raw.health.as_ref().and_then(|h| h.log_line.as_ref());
    for (table, value) in [("ready", ready), ("health", health)] {
        if let Some(value) = value {
            errors.push(at(
                value.span().start,
                format!(
                    "[{table}] log-line reads the output that passes through baseinit: not with output = \"inherit\" (drop one)"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_lines_as_written() {
        let table: [(&str, &[u8], bool); 12] = [
            ("listening", b"server listening on :80", true),
            ("listening", b"LISTENING", false),
            ("(?i)listening", b"LISTENING", true),
            ("^ready$", b"ready", true),
            ("^ready$", b"not ready", false),
            (r"port \d+", b"bound port 8080", true),
            (r"port \d+", b"bound port x", false),
            ("a.c", b"abc", true),
            ("OutOfMemoryError", b"java.lang.OutOfMemoryError: heap", true),
            ("Out Of", b"Out\xffOf Out Of", true),
            ("caf.", b"caf\xc3\xa9", true),
            (r"\xff", b"\xff", false),
        ];
        for (source, line, want) in table {
            let pattern = LinePattern::new(source).unwrap();
            assert_eq!(pattern.is_match(line), want, "{source:?} on {line:?}");
        }
        // A bad byte is one character (U+FFFD) to a regex.
        assert!(LinePattern::new("^x.y$").unwrap().is_match(b"x\xffy"));
    }

    #[test]
    fn plain_text_is_searched_as_bytes_and_the_rest_compiled() {
        let literal = |s: &str| matches!(LinePattern::new(s).unwrap().0.matcher, Matcher::Literal(_));
        assert!(literal("OutOfMemoryError"));
        assert!(!literal("listening on 0.0.0.0:80"), "a dot is a regex");
        assert!(literal("Server started, pid="));
        assert!(!literal("^ready"));
    }

    #[test]
    fn the_required_prefix_is_only_what_every_match_holds() {
        let table = [
            ("status=5\\d\\d", Some("status=5")),
            ("^listening on \\d+$", Some("listening on ")),
            ("OutOfMemory.*heap", Some("OutOfMemory")),
            ("abcd*", Some("abc")),
            ("abcd?e", Some("abc")),
            ("abcd{2}", Some("abc")),
            ("abcd+", Some("abcd")),
            ("ab.", None),
            ("(?i)error", None),
            ("error|fatal", None),
            ("errors? (x|y)", None),
            ("[Ee]rror", None),
            ("café.", Some("caf")),
        ];
        for (source, want) in table {
            assert_eq!(required_prefix(source), want, "{source:?}");
        }
        // With or without it, the same answers.
        for (source, line) in [
            ("status=5\\d\\d", &b"x status=503 y"[..]),
            ("status=5\\d\\d", b"x status=200 y"),
            ("abcd*x", b"abcx"),
            ("^listening on \\d+$", b"listening on 80"),
            ("^listening on \\d+$", b"not listening on 80"),
        ] {
            let regex = regex_lite::Regex::new(source).unwrap();
            let want = regex.is_match(&String::from_utf8_lossy(line));
            assert_eq!(
                LinePattern::new(source).unwrap().is_match(line),
                want,
                "{source:?} {line:?}"
            );
        }
    }

    #[test]
    fn bad_and_oversized_patterns_are_refused() {
        for (source, message) in [
            ("", "an empty pattern"),
            ("(", "without closing ')'"),
            ("a{", ""),
            ("[z-a]", ""),
            ("*a", ""),
            (r"\p{Greek}", ""),
            ("(?<", ""),
        ] {
            let e = LinePattern::new(source).map(|_| ()).expect_err(source);
            assert!(e.contains(message), "{source:?}: {e}");
        }
        // Past the compiled size: a counted repetition of a class.
        let e = LinePattern::new("[a-z]{1000}[0-9]{1000}").map(|_| ()).unwrap_err();
        assert!(e.contains(&SIZE_LIMIT.to_string()), "{e}");
        assert!(LinePattern::new("[a-z]{100}").is_ok(), "a reasonable one fits");
        // Past the nesting depth.
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        let e = LinePattern::new(&deep).map(|_| ()).unwrap_err();
        assert!(e.contains("at most 32 levels"), "{e}");
        let fine = format!("{}a{}", "(".repeat(10), ")".repeat(10));
        assert!(LinePattern::new(&fine).is_ok());
    }

    /// Loads a tree of services, each `(name, service.toml)` with a `run`:
    /// the readiness and health of the good ones, and every error as
    /// "name/service.toml:line:column: message".
    #[allow(clippy::type_complexity)]
    fn load(services: &[(&str, &str)]) -> (Vec<(String, ReadyCheck, Option<ReadyCheck>)>, Vec<String>) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        for (name, toml) in services {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("run"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(dir.join("service.toml"), toml).unwrap();
        }
        let scan = super::super::scan_services(tmp.path(), &super::super::Defaults::default(), true);
        let root = format!("{}/", tmp.path().display());
        let good = scan
            .services
            .into_iter()
            .map(|s| (s.name, s.readiness.check, s.health.map(|h| h.check)))
            .collect();
        (
            good,
            scan.errors.iter().map(|e| e.to_string().replace(&root, "")).collect(),
        )
    }

    #[test]
    fn the_new_kinds_are_read_and_their_errors_placed() {
        let (good, errors) = load(&[
            (
                "web",
                "[ready]\nhttp = \"http://127.0.0.1:8080/healthz\"\n[health]\nhttp = \"http://localhost:8080/\"\n",
            ),
            (
                "app",
                "[ready]\nlog-line = \"^listening on\"\n[health]\nlog-line = \"OutOfMemoryError\"\nretries = 1\n",
            ),
            ("regex", "[ready]\nlog-line = \"ready (\"\n"),
            ("dns", "[ready]\nhttp = \"http://example.com/\"\n"),
            ("tls", "ready = { http = 'https://127.0.0.1/' }\n"),
            ("far", "[health]\nhttp = \"http://203.0.113.7:80/\"\n"),
            ("two", "[ready]\ntcp = \"127.0.0.1:80\"\nhttp = \"http://127.0.0.1/\"\n"),
            ("both", "[ready]\nlog-line = \"x\"\nhttp = \"http://127.0.0.1/\"\n"),
            ("probes", "[health]\ncommand = [\"true\"]\nlog-line = \"x\"\n"),
            ("inherit", "output = \"inherit\"\n[health]\nlog-line = \"x\"\n"),
            ("empty", "[health]\nlog-line = \"\"\n"),
            ("none", "[health]\nretries = 2\n"),
        ]);
        let check = |name: &str| {
            good.iter()
                .find(|(n, ..)| n == name)
                .map(|(_, r, h)| (r.clone(), h.clone()))
        };
        let (ready, health) = check("web").unwrap();
        assert!(matches!(ready, ReadyCheck::Http(u) if u.addr().to_string() == "127.0.0.1:8080"));
        assert!(matches!(health, Some(ReadyCheck::Http(u)) if u.to_string() == "http://localhost:8080/"));
        let (ready, health) = check("app").unwrap();
        assert_eq!(ready, ReadyCheck::LogLine(LinePattern::new("^listening on").unwrap()));
        assert_eq!(
            health,
            Some(ReadyCheck::LogLine(LinePattern::new("OutOfMemoryError").unwrap()))
        );
        let expected = [
            "both/service.toml:3:8: [ready] takes one way to tell readiness: `http` and `log-line` are both given",
            "dns/service.toml:2:16: ready.http \"http://example.com/\": host \"example.com\": write an IP address or `localhost`",
            "empty/service.toml:2:12: health.log-line \"\": an empty pattern matches every line",
            "far/service.toml:2:16: health.http \"http://203.0.113.7:80/\": 203.0.113.7 is not an address of this container",
            "inherit/service.toml:3:12: [health] log-line reads the output that passes through baseinit: not with output = \"inherit\"",
            "none/service.toml: [health] needs a probe: a command, a tcp address, an http URL or a log-line pattern",
            "probes/service.toml:3:12: [health] takes one probe: `command` and `log-line` are both given",
            "regex/service.toml:2:12: ready.log-line \"ready (\": found open group without closing ')'",
            "tls/service.toml:1:19: ready.http \"https://127.0.0.1/\": https is not supported",
            "two/service.toml:3:8: [ready] takes one way to tell readiness: `http` and `tcp` are both given",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got:?}\nwant {want:?}...");
        }
    }

    proptest::proptest! {
        /// Any pattern compiles or is refused with a message, and any line
        /// is tested without a panic.
        #[test]
        fn any_pattern_and_line_never_panic(
            source in "[a-z()\\[\\]{}|*+?.^$\\\\0-9,-]{0,24}",
            line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            match LinePattern::new(&source) {
                Ok(pattern) => {
                    let _ = pattern.is_match(&line);
                }
                Err(message) => proptest::prop_assert!(!message.is_empty()),
            }
        }
    }

    #[test]
    fn equal_by_their_text() {
        assert_eq!(LinePattern::new("a+").unwrap(), LinePattern::new("a+").unwrap());
        assert_ne!(LinePattern::new("a+").unwrap(), LinePattern::new("a*").unwrap());
        assert_eq!(format!("{:?}", LinePattern::new("x").unwrap()), "LinePattern(\"x\")");
    }
}
