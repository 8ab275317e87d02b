//! `service.toml` as written: serde structs with spans, before validation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::service::RestartPolicy;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawService {
    pub command: Option<Spanned<Vec<String>>>,
    pub restart: Option<RestartPolicy>,
    pub backoff: Option<RawBackoff>,
    pub stop_signal: Option<SignalValue>,
    pub stop_timeout: Option<DurationValue>,
    pub finish_timeout: Option<DurationValue>,
    pub working_directory: Option<Spanned<String>>,
    pub environment: Option<BTreeMap<String, Spanned<String>>>,
    pub env_file: Option<Spanned<crate::config::environment::EnvFiles>>,
    pub env_dir: Option<Spanned<String>>,
    pub secrets: Option<BTreeMap<String, Spanned<String>>>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub output: Option<crate::config::OutputMode>,
    pub max_restarts: Option<u32>,
    pub restart_window: Option<DurationValue>,
    pub on_failure: Option<OnFailure>,
    pub retry_after: Option<DurationValue>,
    pub essential: Option<bool>,
    pub after: Option<Spanned<Vec<String>>>,
    pub requires: Option<Spanned<Vec<String>>>,
    /// A cron expression: runs start at its times, not at boot.
    pub schedule: Option<Spanned<String>>,
    pub overlap: Option<Spanned<crate::config::schedule::Overlap>>,
    pub ready: Option<RawReady>,
    pub health: Option<RawHealth>,
    pub log: Option<Spanned<RawLog>>,
    pub limits: Option<crate::config::limits::RawLimits>,
}

/// `[log]`: the service's lines kept in a log directory by baseinit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLog {
    pub dir: Option<Spanned<String>>,
    pub max_size: Option<Spanned<SizeValue>>,
    pub max_files: Option<Spanned<u32>>,
    pub timestamps: Option<bool>,
    pub stdout: Option<bool>,
}

/// A size in bytes: a number, or a string like `"10MB"` (10^6) or
/// `"10MiB"` (2^20), as the `bytesize` crate reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeValue(pub u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"10MB\" or \"64KiB\", or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SizeValue, E> {
                s.parse::<bytesize::ByteSize>()
                    .map(|b| SizeValue(b.as_u64()))
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid size {s:?}: write it like \"10MB\", \"64KiB\" or 1048576"
                        ))
                    })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SizeValue, E> {
                u64::try_from(n)
                    .map(SizeValue)
                    .map_err(|_| E::custom(format!("invalid size {n}: must be 0 or more")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(n))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `[health]`: a probe that keeps running once the service is ready; when it
/// fails `retries` times in a row, the service is restarted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHealth {
    pub command: Option<Spanned<Vec<String>>>,
    pub tcp: Option<Spanned<String>>,
    /// A URL that must answer 2xx (src/http_probe.rs).
    pub http: Option<Spanned<String>>,
    /// A pattern: each output line that matches is a failed probe.
    pub log_line: Option<Spanned<String>>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub retries: Option<u32>,
    /// A scheduled service's failed run makes health unhealthy (or not).
    pub on_failed_run: Option<Spanned<crate::config::schedule::OnFailedRun>>,
}

/// `[ready]`: how to tell the service is ready.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawReady {
    pub command: Option<Spanned<Vec<String>>>,
    pub tcp: Option<Spanned<String>>,
    /// Ready when a URL answers 2xx (src/http_probe.rs).
    pub http: Option<Spanned<String>>,
    /// Ready when an output line matches this pattern.
    pub log_line: Option<Spanned<String>>,
    pub notification_fd: Option<Spanned<u32>>,
    pub sd_notify: Option<bool>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub retries: Option<u32>,
}

/// `on-failure`: what a crash-looping service's failure leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    RestartLater,
    Stop,
    Exit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBackoff {
    pub initial: Option<Spanned<DurationValue>>,
    pub max: Option<Spanned<DurationValue>>,
    pub reset_after: Option<Spanned<DurationValue>>,
}

/// A duration: a string like `"5s"`, `"250ms"`, `"1m 30s"`, or a number of
/// seconds (`5`, `0.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"5s\" or \"250ms\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationValue, E> {
                parse_duration(s).map(DurationValue).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationValue, E> {
                self.visit_f64(n as f64)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationValue, E> {
                self.visit_f64(n as f64)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<DurationValue, E> {
                seconds(n).map(DurationValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The longest duration accepted anywhere: a year. Deadlines are computed as
/// `now + duration`; the cap keeps that arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `"5s"`, `"250ms"`, `"1m 30s"`, or plain (fractional) seconds `"2.5"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let duration = match s.parse::<f64>() {
        Ok(n) => Duration::try_from_secs_f64(n)
            .map_err(|_| format!("invalid duration {s:?}: must be a finite number of seconds, 0 or more"))?,
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. \"5s\" or \"250ms\")"))?,
    };
    if duration > MAX_DURATION {
        return Err(format!("duration {s:?} is too long: at most a year (\"365d\")"));
    }
    Ok(duration)
}

fn seconds(n: f64) -> Result<Duration, String> {
    parse_duration(&n.to_string())
}

/// A signal: `"SIGQUIT"`, `"QUIT"` (any case) or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalValue(pub Signal);

impl<'de> Deserialize<'de> for SignalValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SignalValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name like \"SIGTERM\" or \"QUIT\", or a signal number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SignalValue, E> {
                parse_signal(s).map(SignalValue).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SignalValue, E> {
                i32::try_from(n)
                    .ok()
                    .and_then(|n| Signal::try_from(n).ok())
                    .map(SignalValue)
                    .ok_or_else(|| E::custom(format!("unknown signal number {n}")))
            }
        }
        deserializer.deserialize_any(V)
    }
}

pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.trim().to_ascii_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse()
        .map_err(|_| format!("unknown signal {s:?} (write e.g. \"SIGTERM\" or \"QUIT\")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("5s", 5000),
            ("250ms", 250),
            ("1m 30s", 90_000),
            ("2.5", 2500),
            ("0", 0),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        assert_eq!(parse_duration("365d"), Ok(super::MAX_DURATION));
        for bad in [
            "",
            "five",
            "-1",
            "5 parsecs",
            "NaN",
            "inf",
            "1e19",
            "300000000000y",
            "366d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn signals() {
        for (text, signal) in [
            ("SIGQUIT", Signal::SIGQUIT),
            ("QUIT", Signal::SIGQUIT),
            ("quit", Signal::SIGQUIT),
            ("sigterm", Signal::SIGTERM),
            ("9", Signal::SIGKILL),
        ] {
            assert_eq!(parse_signal(text), Ok(signal), "{text}");
        }
        for bad in ["SIGFOO", "", "999", "TERM2"] {
            assert!(parse_signal(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// The keys serde accepts where `table` is (None: the top level), read
    /// from its "unknown field" error, which lists them; None when `table`
    /// is not a table of named keys.
    fn keys_of(table: Option<&str>) -> Option<Vec<String>> {
        let text = match table {
            Some(table) => format!("[{table}]\nzz-not-a-key = 1\n"),
            None => "zz-not-a-key = 1\n".to_owned(),
        };
        let error = toml::from_str::<RawService>(&text).unwrap_err().to_string();
        let (_, list) = error.split_once("unknown field `zz-not-a-key`, expected one of ")?;
        let list = list.lines().next().unwrap_or_default();
        Some(list.split(", ").map(|key| key.trim_matches('`').to_owned()).collect())
    }

    /// Every key the parser accepts is in the manual's service.toml
    /// reference, written `key` (and each table as `[table]`).
    #[test]
    fn every_key_is_in_the_manual() {
        let page = "docs/service-directories.md";
        let manual =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/service-directories.md")).unwrap();
        let top = keys_of(None).unwrap();
        assert!(top.len() >= 20 && top.contains(&"stop-timeout".to_owned()), "{top:?}");
        let mut missing = Vec::new();
        for key in &top {
            if !manual.contains(&format!("`{key}`")) {
                missing.push(key.clone());
            }
            let inner_keys = keys_of(Some(key)).unwrap_or_default();
            if !inner_keys.is_empty() && !manual.contains(&format!("`[{key}]`")) {
                missing.push(format!("[{key}]"));
            }
            for inner in inner_keys {
                if !manual.contains(&format!("`{inner}`")) {
                    missing.push(format!("{key}.{inner}"));
                }
            }
        }
        assert!(missing.is_empty(), "service.toml keys missing from {page}: {missing:?}");
    }
}
