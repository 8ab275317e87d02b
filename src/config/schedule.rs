//! `schedule` and `overlap` in service.toml, and `[health] on-failed-run`: a
//! service whose run is started by a cron expression (parsed by croner)
//! instead of at boot, and the keys that make no sense for one.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;
use toml::Spanned;

use super::raw::{RawHealth, RawService};
use super::{ConfigError, Scan, ServiceSpec};

/// What a due time does while the last run still goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Nothing: the time is skipped, and the skip logged.
    Skip,
    /// One run waits, and starts when the current one ends (at most one).
    Queue,
}

/// `[health] on-failed-run`: what a failed run means to `baseinit health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailedRun {
    /// Nothing: a job's failure is in its status and log only.
    Ignore,
    /// Unhealthy until a run succeeds.
    Unhealthy,
}

/// A validated `schedule`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// As written in service.toml (`*/5 * * * *`, `@hourly`).
    pub expression: String,
    pub overlap: Overlap,
    pub on_failed_run: OnFailedRun,
}

impl Schedule {
    /// The expression, parsed again: a parsed one holds 5 kB (croner keeps
    /// a byte per year up to 5000), too much for PID 1 to keep per job for
    /// its life; parsing takes microseconds, once per run. None cannot
    /// happen for a schedule that was validated at load.
    pub fn cron(&self) -> Option<Cron> {
        parse(&self.expression).ok()
    }
}

/// The fields of a five-field expression, then of a six-field one (seconds
/// first), for messages.
const FIVE: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const SIX: [&str; 6] = ["second", "minute", "hour", "day-of-month", "month", "day-of-week"];

/// The names croner knows, and one it does not that cron users write.
const NAMES: [(&str, &str); 1] = [("@midnight", "@daily")];

/// Parses a cron expression: five fields (minute hour day-of-month month
/// day-of-week), six (seconds first), or a name (`@hourly`, `@daily`,
/// `@weekly`, `@monthly`, `@yearly`, `@annually`, `@midnight`). A problem
/// comes with the byte offset, in `text`, of the field it is in.
pub fn parse(text: &str) -> Result<Cron, (usize, String)> {
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    let trimmed = text.trim();
    let named = NAMES
        .iter()
        .find(|(name, _)| trimmed.eq_ignore_ascii_case(name))
        .map_or(trimmed, |(_, same)| same);
    let start = text.len() - text.trim_start().len();
    if named.starts_with('@') {
        if named.eq_ignore_ascii_case("@reboot") {
            return Err((
                start,
                "@reboot is not a time: a service without `schedule` starts at boot".into(),
            ));
        }
        if named.contains(char::is_whitespace) {
            return Err((start, format!("{named:?}: a name such as @hourly stands alone")));
        }
        return match parser.parse(named) {
            Ok(cron) => Ok(cron),
            Err(_) => Err((
                start,
                format!("unknown name {named:?}: @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"),
            )),
        };
    }
    let fields: Vec<(usize, &str)> = text
        .split_ascii_whitespace()
        .map(|field| (field.as_ptr() as usize - text.as_ptr() as usize, field))
        .collect();
    let names: &[&str] = match fields.len() {
        5 => &FIVE,
        6 => &SIX,
        n => {
            return Err((
                start,
                format!(
                    "{n} field(s): write five (minute hour day-of-month month day-of-week), six (a second first) or a name such as @hourly"
                ),
            ));
        }
    };
    // croner says what is wrong, not where: each field alone, the others
    // `*`, tells which one it is.
    for (i, (offset, field)) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len()).map(|j| if i == j { *field } else { "*" }).collect();
        if let Err(e) = parser.parse(&alone.join(" ")) {
            return Err((*offset, format!("{} field {field:?}: {}", names[i], describe(&e))));
        }
    }
    parser.parse(text).map_err(|e| (start, describe(&e)))
}

/// croner's message, without its own prefixes.
fn describe(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    let text = match e {
        CronError::InvalidPattern(m) | CronError::IllegalCharacters(m) | CronError::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    text.trim_end_matches('.').to_owned()
}

/// Whether `cron` matches any time at all (`0 0 30 2 *` never does): a
/// search from a fixed day, so that the answer does not depend on today.
/// Such a search runs to croner's year limit, some milliseconds: only for
/// an expression that is wrong anyway.
pub fn ever_matches(cron: &Cron) -> bool {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .is_some_and(|from| cron.find_next_occurrence(&from, false).is_ok())
}

/// The keys a scheduled service cannot have, each with why: (table, key).
const NOT_FOR_SCHEDULED: [(Option<&str>, &str, &str); 15] = [
    (None, "restart", RESTARTS),
    (None, "backoff", RESTARTS),
    (None, "max-restarts", RESTARTS),
    (None, "restart-window", RESTARTS),
    (None, "on-failure", RESTARTS),
    (None, "retry-after", RESTARTS),
    (
        None,
        "essential",
        "a scheduled service ends after every run: it cannot be essential",
    ),
    (None, "after", ORDER),
    (None, "requires", ORDER),
    (
        None,
        "ready",
        "a scheduled service is never waited for: it has no readiness",
    ),
    (Some("health"), "command", HEALTH),
    (Some("health"), "tcp", HEALTH),
    (Some("health"), "http", HEALTH),
    (Some("health"), "log-line", HEALTH),
    (Some("health"), "interval", HEALTH),
];
const RESTARTS: &str = "its runs are started by the schedule and never restarted";
const ORDER: &str = "a scheduled service runs at its times, outside the start order";
const HEALTH: &str = "a scheduled service has no health probe: [health] takes only on-failed-run";

/// Validates `schedule`, `overlap` and `[health] on-failed-run` of one
/// service.toml (`text`), adding its problems to `errors`.
pub(super) fn schedule(
    raw: &RawService,
    text: &str,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Schedule> {
    let on_failed_run = raw.health.as_ref().and_then(|h| h.on_failed_run.as_ref());
    let Some(expression) = &raw.schedule else {
        if let Some(overlap) = &raw.overlap {
            errors.push(at(
                overlap.span().start,
                "`overlap` is for a scheduled service: set `schedule` too".into(),
            ));
        }
        if let Some(on) = on_failed_run {
            errors.push(at(
                on.span().start,
                "`on-failed-run` is for a scheduled service: set `schedule` too".into(),
            ));
        }
        return None;
    };
    let before = errors.len();
    match parse(expression.get_ref()) {
        Ok(cron) if !ever_matches(&cron) => {
            errors.push(at(
                value_offset(text, expression, 0),
                format!("schedule {:?} matches no time at all", expression.get_ref()),
            ));
        }
        Ok(_) => {}
        Err((offset, message)) => {
            errors.push(at(
                value_offset(text, expression, offset),
                format!("schedule {:?}: {message}", expression.get_ref()),
            ));
        }
    }
    let present = |table: Option<&str>, key: &str| match table {
        None => match key {
            "restart" => raw.restart.is_some(),
            "backoff" => raw.backoff.is_some(),
            "max-restarts" => raw.max_restarts.is_some(),
            "restart-window" => raw.restart_window.is_some(),
            "on-failure" => raw.on_failure.is_some(),
            "retry-after" => raw.retry_after.is_some(),
            "essential" => raw.essential.is_some(),
            "after" => raw.after.is_some(),
            "requires" => raw.requires.is_some(),
            "ready" => raw.ready.is_some(),
            _ => false,
        },
        Some(_) => raw.health.as_ref().is_some_and(|h| match key {
            "command" => h.command.is_some(),
            "tcp" => h.tcp.is_some(),
            "http" => h.http.is_some(),
            "log-line" => h.log_line.is_some(),
            // The rest of a probe's keys, reported once.
            _ => h.interval.is_some() || h.timeout.is_some() || h.retries.is_some(),
        }),
    };
    let misplaced: Vec<_> = NOT_FOR_SCHEDULED
        .iter()
        .filter(|(table, key, _)| present(*table, key))
        .collect();
    if !misplaced.is_empty() {
        // Where each key is: parsed again only on this error path.
        let document = toml::de::DeTable::parse(text).ok();
        for (table, key, why) in misplaced {
            let offset = document
                .as_ref()
                .and_then(|d| key_offset(d.get_ref(), *table, key))
                .unwrap_or(expression.span().start);
            let name = table.map_or_else(|| format!("`{key}`"), |t| format!("`[{t}] {key}`"));
            errors.push(at(
                offset,
                format!("{name} does not apply to a scheduled service: {why}"),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Schedule {
        expression: expression.get_ref().trim().to_owned(),
        overlap: raw.overlap.as_ref().map_or(Overlap::Skip, |o| *o.get_ref()),
        on_failed_run: on_failed_run.map_or(OnFailedRun::Ignore, |o| *o.get_ref()),
    })
}

/// Across the tree: no service may come `after` (or `requires`) a scheduled
/// one, which is never ready between its runs, and a `log/` logger cannot
/// be scheduled (it reads its service's output for as long as that runs).
/// Services with such a problem are moved from `services` to `broken`.
pub(super) fn check_tree(scan: &mut Scan) {
    let scheduled: Vec<String> = scan
        .services
        .iter()
        .filter(|s| s.schedule.is_some())
        .map(|s| s.name.clone())
        .collect();
    let mut bad = Vec::new();
    for spec in &scan.services {
        let problem = if let Some(dep) = spec.after.iter().find(|d| scheduled.contains(d)) {
            Some((
                spec.dir.join("service.toml"),
                format!("`{dep}` in after/requires is a scheduled service: it is never ready between its runs"),
            ))
        } else {
            spec.log.as_ref().filter(|log| log.schedule.is_some()).map(|log| {
                (
                    log.dir.join("service.toml"),
                    "a log/ logger cannot have a `schedule`: it reads its service's output all along".to_owned(),
                )
            })
        };
        if let Some((path, message)) = problem {
            scan.errors.push(ConfigError {
                service: Some(spec.name.clone()),
                ..ConfigError::new(&path, message)
            });
            bad.push(spec.name.clone());
        }
    }
    if bad.is_empty() {
        return;
    }
    let (broken, services): (Vec<ServiceSpec>, Vec<ServiceSpec>) = std::mem::take(&mut scan.services)
        .into_iter()
        .partition(|s| bad.contains(&s.name));
    scan.services = services;
    scan.broken.extend(broken.into_iter().map(|s| s.name));
}

/// The `[health]` table to make a probe of: none for a scheduled service
/// (its problems are reported by [`schedule`]), nor for a table that holds
/// `on-failed-run` alone.
pub(super) fn health_probe(raw: &RawService) -> Option<&RawHealth> {
    raw.health.as_ref().filter(|h| {
        raw.schedule.is_none()
            && (h.on_failed_run.is_none()
                || h.command.is_some()
                || h.tcp.is_some()
                || h.http.is_some()
                || h.log_line.is_some()
                || h.interval.is_some()
                || h.timeout.is_some()
                || h.retries.is_some())
    })
}

/// The byte offset in `text` of byte `offset` of the string `value`: the
/// same shift when the value is written plainly between quotes, else where
/// the string starts.
fn value_offset(text: &str, value: &Spanned<String>, offset: usize) -> usize {
    let span = value.span();
    let written = text.get(span.clone()).unwrap_or_default();
    let plain = written.len() == value.get_ref().len() + 2
        && (written.starts_with('"') || written.starts_with('\''))
        && written.get(1..written.len() - 1) == Some(value.get_ref().as_str());
    if plain { span.start + 1 + offset } else { span.start }
}

/// Where key `name` of table `t` is written, and its value.
fn find<'a, 'i>(t: &'a toml::de::DeTable<'i>, name: &str) -> Option<(usize, &'a Spanned<toml::de::DeValue<'i>>)> {
    t.iter()
        .find(|(k, _)| k.get_ref() == name)
        .map(|(k, v)| (k.span().start, v))
}

/// Where `key` (of `table`, or of the top level) is written.
fn key_offset(document: &toml::de::DeTable<'_>, table: Option<&str>, key: &str) -> Option<usize> {
    match table {
        None => find(document, key).map(|(offset, _)| offset),
        Some(table) => {
            let (table_at, value) = find(document, table)?;
            let inner = value.get_ref().as_table()?;
            Some(
                find(inner, key)
                    .or_else(|| ["timeout", "retries"].iter().find_map(|k| find(inner, k)))
                    .map_or(table_at, |(offset, _)| offset),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (expression, ok): five and six fields, names, months and days by name.
    #[test]
    fn expressions_that_parse() {
        for text in [
            "*/5 * * * *",
            "0 3 * * *",
            "*/2 * * * * *",
            "30 0 12 * * MON-FRI",
            "0 0 1 JAN,JUL *",
            "@hourly",
            "@DAILY",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "  15 10 * * *  ",
            "0 0 L * *",
        ] {
            assert!(parse(text).is_ok(), "{text:?}: {:?}", parse(text).err());
        }
    }

    /// Each problem with the offset of the field it is in.
    #[test]
    fn problems_name_their_field_and_where_it_is() {
        let cases: [(&str, usize, &str); 10] = [
            ("61 * * * *", 0, "minute field \"61\": Number out of bounds"),
            ("* 24 * * *", 2, "hour field \"24\": Number out of bounds"),
            ("*/5 * * * 8", 10, "day-of-week field \"8\": Number out of bounds"),
            ("* * * 13 *", 6, "month field \"13\""),
            ("*/0 * * * *", 0, "minute field \"*/0\": Step cannot be zero"),
            ("0 61 * * * *", 2, "minute field \"61\""),
            ("60 * * * * *", 0, "second field \"60\""),
            ("* * * *", 0, "4 field(s): write five"),
            ("* * * * * * *", 0, "7 field(s)"),
            ("@fortnightly", 0, "unknown name \"@fortnightly\""),
        ];
        for (text, offset, message) in cases {
            let (at, said) = parse(text).expect_err(text);
            assert_eq!(at, offset, "{text:?}: {said}");
            assert!(
                said.starts_with(message),
                "{text:?}: {said:?} should start with {message:?}"
            );
        }
        assert!(parse("@reboot").expect_err("@reboot").1.contains("starts at boot"));
        assert!(parse("").is_err());
        assert!(
            parse("x y z a b")
                .expect_err("letters")
                .1
                .starts_with("minute field \"x\"")
        );
    }

    #[test]
    fn an_expression_that_never_matches_is_told_from_one_that_rarely_does() {
        let never = parse("0 0 30 2 *").expect("parses");
        assert!(!ever_matches(&never));
        let leap_days = parse("0 0 29 2 *").expect("parses");
        assert!(ever_matches(&leap_days));
    }

    /// A service tree of `command`-defined services, each with `toml`.
    fn scan(services: &[(&str, &str)]) -> (super::super::Scan, String) {
        let tree = tempfile::tempdir().expect("tempdir");
        for (name, toml) in services {
            let dir = tree.path().join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("service.toml"), format!("command = [\"true\"]\n{toml}")).expect("write");
        }
        let scan = super::super::scan_services(tree.path(), &super::super::Defaults::default(), true);
        let root = format!("{}/", tree.path().display());
        (scan, root)
    }

    #[test]
    fn load_reports_each_problem_at_its_line_and_column() {
        let (scan, root) = scan(&[
            ("a", "schedule = \"* 24 * * *\"\n"),
            ("b", "overlap = \"queue\"\n"),
            ("c", "[health]\non-failed-run = \"unhealthy\"\n"),
            (
                "d",
                "schedule = \"@hourly\"\nrestart = \"always\"\n[backoff]\ninitial = 1\n",
            ),
            (
                "e",
                "schedule = \"@hourly\"\n[health]\ncommand = [\"x\"]\non-failed-run = \"unhealthy\"\n",
            ),
            ("f", "schedule = \"0 0 30 2 *\"\n"),
            ("g", "schedule = \"@hourly\"\noverlap = \"both\"\n"),
            ("h", "after = [\"i\"]\n"),
            ("i", "schedule = \"@daily\"\n"),
            (
                "j",
                "schedule = \"@hourly\"\nessential = true\nready = { tcp = \"127.0.0.1:1\" }\n",
            ),
            ("k", "schedule = 5\n"),
        ]);
        let errors: Vec<String> = scan.errors.iter().map(|e| e.to_string().replace(&root, "")).collect();
        let expected = [
            "a/service.toml:2:15: schedule \"* 24 * * *\": hour field \"24\": Number out of bounds",
            "b/service.toml:2:11: `overlap` is for a scheduled service: set `schedule` too",
            "c/service.toml:3:17: `on-failed-run` is for a scheduled service: set `schedule` too",
            "d/service.toml:3:1: `restart` does not apply to a scheduled service: its runs are started",
            "d/service.toml:4:2: `backoff` does not apply to a scheduled service",
            "e/service.toml:4:1: `[health] command` does not apply to a scheduled service: a scheduled service has no health probe",
            "f/service.toml:2:13: schedule \"0 0 30 2 *\" matches no time at all",
            "g/service.toml:3:11: unknown variant `both`, expected `skip` or `queue`",
            "j/service.toml:3:1: `essential` does not apply to a scheduled service",
            "j/service.toml:4:1: `ready` does not apply to a scheduled service",
            "k/service.toml:2:12: invalid type: integer `5`, expected a string",
            // Across the tree, once every service is read.
            "h/service.toml: `i` in after/requires is a scheduled service: it is never ready between its runs",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got:?}\nwant {want:?}...");
        }
        let names: Vec<&str> = scan.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["i"]);
    }

    #[test]
    fn a_scheduled_service_is_loaded_with_its_settings() {
        let (scan, _) = scan(&[
            (
                "job",
                "schedule = \" */5 * * * * \"\noverlap = \"queue\"\n[health]\non-failed-run = \"unhealthy\"\n",
            ),
            ("plain", "schedule = \"@hourly\"\n"),
        ]);
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        let job = scan.services[0].schedule.as_ref().expect("scheduled");
        assert_eq!(job.expression, "*/5 * * * *");
        assert_eq!(
            (job.overlap, job.on_failed_run),
            (Overlap::Queue, OnFailedRun::Unhealthy)
        );
        assert_eq!(scan.services[0].health, None, "no probe");
        let plain = scan.services[1].schedule.as_ref().expect("scheduled");
        assert_eq!(
            (plain.overlap, plain.on_failed_run),
            (Overlap::Skip, OnFailedRun::Ignore)
        );
    }

    #[test]
    fn a_value_offset_follows_plain_strings_only() {
        let text = "schedule = \"* 24 * * *\"\n";
        let value: RawService = toml::from_str(text).expect("parses");
        let schedule = value.schedule.expect("schedule");
        assert_eq!(value_offset(text, &schedule, 2), 14);
        let escaped = "schedule = \"\\u002a 24 * * *\"\n";
        let value: RawService = toml::from_str(escaped).expect("parses");
        assert_eq!(value_offset(escaped, &value.schedule.expect("schedule"), 2), 11);
    }
}
