//! `[ready]` and `[health]` of `service.toml` (and s6's `notification-fd`
//! and `check` files): how a service tells it is ready, and how it is kept
//! healthy.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::raw;
use super::ready_kinds;
use super::{ConfigError, Listing, Readiness, ReadyCheck, command_argv, is_executable_file};

/// How the service tells it is ready: `[ready] notification-fd` or a
/// `notification-fd` file (s6), then `[ready] sd-notify`, then `[ready]
/// command` or a `check` script, then `[ready] tcp`, `http` or `log-line`
/// (the last two given alone: see `ready_kinds`), else as soon as it runs.
pub(super) fn readiness(
    dir: &Path,
    listing: &Listing,
    raw: Option<&raw::RawReady>,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Readiness {
    let mut readiness = Readiness::started();
    // Checked (and compiled) whatever wins below, so that an error is
    // reported even where a file takes precedence.
    let new_kind = raw.and_then(|r| ready_kinds::ready_check(r, at, errors));
    if let Some(r) = raw {
        readiness.interval = r.interval.map_or(Readiness::INTERVAL, |d| d.0);
        readiness.timeout = r.timeout.map_or(Readiness::TIMEOUT, |d| d.0);
        readiness.retries = r.retries.unwrap_or(Readiness::RETRIES);
    }
    let fd_file = dir.join("notification-fd");
    let notification_fd = match raw.and_then(|r| r.notification_fd.as_ref()) {
        Some(fd) => Some((*fd.get_ref(), Some(fd.span().start))),
        None if !listing.may_have("notification-fd") => None,
        None => match fs::read_to_string(&fd_file) {
            Ok(text) => match text.trim().parse::<u32>() {
                Ok(fd) => Some((fd, None)),
                Err(_) => {
                    errors.push(ConfigError::new(&fd_file, "must hold an fd number (e.g. 3)"));
                    None
                }
            },
            Err(_) => None,
        },
    };
    if let Some((fd, span)) = notification_fd {
        if !(3..=1023).contains(&fd) {
            let message = format!("notification-fd {fd}: must be between 3 and 1023 (0-2 are stdio)");
            errors.push(match span {
                Some(start) => at(start, message),
                None => ConfigError::new(&fd_file, message),
            });
        }
        readiness.check = ReadyCheck::NotificationFd(fd as i32);
    } else if raw.and_then(|r| r.sd_notify) == Some(true) {
        readiness.check = ReadyCheck::SdNotify;
    } else if let Some(command) = raw.and_then(|r| r.command.as_ref()) {
        if let Some(argv) = command_argv(command, dir, at, errors) {
            readiness.check = ReadyCheck::Command(argv);
        }
    } else if listing.may_have("check") && is_executable_file(&dir.join("check")) {
        readiness.check = ReadyCheck::Command(vec![dir.join("check").into_os_string()]);
    } else if let Some(tcp) = raw.and_then(|r| r.tcp.as_ref()) {
        if tcp.get_ref().parse::<std::net::SocketAddr>().is_err() && !tcp.get_ref().contains(':') {
            errors.push(at(
                tcp.span().start,
                format!(
                    "ready.tcp {:?}: write an address with a port, e.g. \"127.0.0.1:5432\"",
                    tcp.get_ref()
                ),
            ));
        }
        readiness.check = ReadyCheck::Tcp(tcp.get_ref().clone());
    } else if let Some(check) = new_kind {
        readiness.check = check;
    }
    readiness
}

/// `[health]`: a command, a TCP address or an HTTP URL, probed every 10 s
/// by default, 3 failures in a row restarting the service; or a `log-line`
/// pattern, each matching line a failure (see `probes::on_line_matched`).
pub(super) fn health(
    dir: &Path,
    raw: &raw::RawHealth,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Readiness> {
    let missing = || {
        ConfigError::new(
            &dir.join("service.toml"),
            "[health] needs a probe: a command, a tcp address, an http URL or a log-line pattern",
        )
    };
    let check = match ready_kinds::health_check(raw, at, errors, missing).ok()? {
        Some(check) => check,
        None => ReadyCheck::Command(command_argv(raw.command.as_ref()?, dir, at, errors)?),
    };
    Some(Readiness {
        check,
        interval: raw.interval.map_or(Duration::from_secs(10), |d| d.0),
        timeout: raw.timeout.map_or(Readiness::TIMEOUT, |d| d.0),
        retries: raw.retries.unwrap_or(3).max(1),
    })
}
