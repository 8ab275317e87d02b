//! Logger draining, decided: when a service's `log/` logger gets end of file
//! and retires, and whether a logger that stopped with lines still in its
//! pipe runs once more to read them.
//!
//! A logger reads its service's stdout through a pipe whose write end
//! baseinit keeps (each run of the service gets a copy). Closing baseinit's
//! copy once the service is down for good lets the logger read to the end and
//! exit by itself: no line is lost at a shutdown or a removal. Pure: these
//! functions read the unit table (and how many bytes a pipe holds, which the
//! supervisor asks the kernel); the supervisor closes pipes and feeds events.

use super::units::{Kind, UnitId, Units};

/// At a shutdown: each service that is down and still holds its logger's
/// pipe, with that logger. Closing the pipe gives the logger end of file,
/// after which it retires.
pub fn loggers_to_retire(units: &Units) -> Vec<(UnitId, UnitId)> {
    units
        .iter()
        .filter(|(_, u)| u.life.is_down() && u.log_pipe.is_some())
        .filter_map(|(id, u)| u.logger.map(|logger| (id, logger)))
        .collect()
}

/// A logger that just settled (down): whether it runs once more, to read
/// the `unread` bytes its pipe still holds. Only when it is meant to stop,
/// its input is closed (nothing more will come), something is left, and
/// its last such run made progress (one that never reads must not loop).
pub fn drain_again(units: &Units, logger: UnitId, unread: i32) -> bool {
    let unit = &units[logger];
    let input_closed = units
        .iter()
        .any(|(_, u)| u.logger == Some(logger) && u.log_pipe.is_none());
    unit.kind == Kind::Logger
        && unit.life.wants_down()
        && input_closed
        && unread > 0
        && unit.drained_from.is_none_or(|before| unread < before)
}

/// Where a service that a rescan stopped stands with its logger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It has no logger (left): it can go now.
    Alone,
    /// Its logger's input is still open: close it (the logger retires).
    CloseInput(UnitId),
    /// Its logger still reads: wait.
    LoggerBusy,
    /// Its logger is down too: both go.
    WithLogger(UnitId),
}

/// The next step in ending `service`, which is down and leaving.
pub fn ending(units: &Units, service: UnitId) -> Ending {
    let unit = &units[service];
    let Some(logger) = unit.logger.filter(|l| units.get(*l).is_some_and(|l| !l.retired)) else {
        return Ending::Alone;
    };
    if unit.log_pipe.is_some() {
        Ending::CloseInput(logger)
    } else if !units[logger].life.is_down() {
        Ending::LoggerBusy
    } else {
        Ending::WithLogger(logger)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::service::Event;
    use crate::supervisor::testing::{self, pipe_end, service, table};

    /// A service "a" with its logger "a/log", both running, the pipe held.
    fn pair() -> (Units, UnitId, UnitId) {
        let now = Instant::now();
        let mut log = service("a/log");
        log.kind = Kind::Logger;
        let (mut units, ids) = table([log, service("a")]);
        let [logger, svc] = ids[..] else { unreachable!() };
        units[svc].logger = Some(logger);
        units[svc].log_pipe = Some(pipe_end());
        units[logger].log_pipe = Some(pipe_end());
        testing::start(&mut units, logger, 10, now);
        testing::start(&mut units, svc, 11, now);
        (units, svc, logger)
    }

    /// Unit `id` is stopped and its run exits.
    fn stop(units: &mut Units, id: UnitId) {
        let now = Instant::now();
        units[id].life.on(Event::Down, now);
        testing::exit(units, id, 0, now);
    }

    #[test]
    fn a_logger_retires_once_its_service_is_down() {
        let (mut units, svc, logger) = pair();
        assert_eq!(loggers_to_retire(&units), [], "the service runs");
        stop(&mut units, svc);
        assert_eq!(loggers_to_retire(&units), [(svc, logger)]);
        units[svc].log_pipe = None;
        assert_eq!(loggers_to_retire(&units), [], "closed once only");
    }

    #[test]
    fn a_leaving_service_closes_its_loggers_input_waits_for_it_then_both_go() {
        let (mut units, svc, logger) = pair();
        stop(&mut units, svc);
        assert_eq!(ending(&units, svc), Ending::CloseInput(logger));
        units[svc].log_pipe = None;
        assert_eq!(ending(&units, svc), Ending::LoggerBusy);
        stop(&mut units, logger);
        assert_eq!(ending(&units, svc), Ending::WithLogger(logger));
        units.retire(logger);
        assert_eq!(ending(&units, svc), Ending::Alone);
    }

    #[test]
    fn a_stopped_logger_runs_again_only_while_it_makes_progress() {
        let (mut units, svc, logger) = pair();
        stop(&mut units, logger);
        // Table: (input closed, unread, drained_from) -> runs again.
        let cases = [
            (false, 100, None, false),
            (true, 0, None, false),
            (true, 100, None, true),
            (true, 100, Some(200), true),
            (true, 100, Some(100), false),
            (true, 100, Some(50), false),
        ];
        for (closed, unread, before, again) in cases {
            units[svc].log_pipe = (!closed).then(pipe_end);
            units[logger].drained_from = before;
            assert_eq!(
                drain_again(&units, logger, unread),
                again,
                "closed {closed}, unread {unread}, before {before:?}"
            );
        }
        units[logger].life.on(Event::Up, Instant::now());
        units[svc].log_pipe = None;
        units[logger].drained_from = None;
        assert!(!drain_again(&units, logger, 100), "wanted up: it restarts anyway");
    }
}
