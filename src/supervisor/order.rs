//! Dependency order, decided: which waiting services may start, which must
//! stop because something they require is going, and in what order services
//! stop (`after` and `requires` in `service.toml`).
//!
//! Pure: each function reads the unit table and returns ids; the supervisor
//! feeds those units their events and sets their [`OrderFlags`]. Cycles never
//! reach here: loading the definitions rejects them (`config`).

use crate::service::State;

use super::units::{Kind, UnitId, Units};

/// Where a unit stands with respect to its dependencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderFlags {
    /// Wanted up, but waiting for its `after` services to be ready.
    pub waiting: bool,
    /// Down because a service it requires went down; back when it is ready.
    pub held: bool,
    /// To be stopped once nothing that depends on it is up (a shutdown, or
    /// `sv down` of something others require).
    pub stop_pending: bool,
}

/// Whether a service named `name` lets what comes after it start: it runs
/// and is ready, or it ran to a successful end (a one-shot job). One about
/// to be stopped (or wanted down) no longer counts.
pub fn satisfies(units: &Units, name: &str) -> bool {
    units.by_name(name).is_some_and(|d| {
        let dep = &units[d];
        let going = dep.order.stop_pending || dep.life.wants_down();
        let up_and_ready = dep.probe.ready && matches!(dep.life.state(), State::Running { .. });
        (!going && up_and_ready) || dep.life.finished_ok()
    })
}

/// A unit whose dependencies are back: `released` when it was held by a
/// `requires` (it waits again, for its `after`), `start` when every `after`
/// is satisfied too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wake {
    pub id: UnitId,
    pub released: bool,
    pub start: bool,
}

/// The waiting and held units whose dependencies are there now. Starting
/// one can make another startable (a service ready as soon as it runs): the
/// supervisor asks again until nothing wakes.
pub fn wakeable(units: &Units) -> Vec<Wake> {
    units
        .live()
        .filter(|(_, u)| u.leaving.is_none())
        .filter_map(|(id, u)| {
            let released = u.order.held && u.requires.iter().all(|r| satisfies(units, r));
            let waiting = u.order.waiting || released;
            let start = waiting && u.after.iter().all(|d| satisfies(units, d));
            (released || start).then_some(Wake { id, released, start })
        })
        .collect()
}

/// The units up (not down) that require `id`: they stop when it goes.
pub fn requirers(units: &Units, id: UnitId) -> Vec<UnitId> {
    let name = &units[id].name;
    if name.is_empty() {
        return Vec::new();
    }
    units
        .live()
        .filter(|(_, u)| !u.life.is_down() && u.requires.contains(name))
        .map(|(j, _)| j)
        .collect()
}

/// The units marked to stop whose dependents are down now: at shutdown,
/// once nothing that comes after them (`after`) runs, the reverse of the
/// start order; otherwise once nothing that requires them does.
pub fn stoppable(units: &Units, shutdown: bool) -> Vec<UnitId> {
    units
        .iter()
        .filter(|(_, u)| u.order.stop_pending)
        .filter(|(_, u)| {
            let name = &u.name;
            name.is_empty()
                || !units.live().any(|(_, other)| {
                    let depends = if shutdown { &other.after } else { &other.requires };
                    other.kind == Kind::Service && !other.life.is_down() && depends.contains(name)
                })
        })
        .map(|(id, _)| id)
        .collect()
}

/// The longest chain of `after` among the services still up: how many
/// levels an ordered stop has (each level waits for the one above it).
pub fn stop_levels(units: &Units) -> u32 {
    crate::shutdown::stop_levels(
        units
            .live()
            .filter(|(_, u)| u.kind == Kind::Service && !u.life.is_down())
            .map(|(_, u)| (u.name.as_str(), u.after.as_slice())),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::service::Event;
    use crate::supervisor::testing::{exit, service, start, table};

    /// A table of services by name, each `after` (and, with `!`, also
    /// `requires`) the listed ones: "web: db !cache".
    fn units(lines: &[&str]) -> (Units, Vec<UnitId>) {
        table(lines.iter().map(|line| {
            let (name, deps) = line.split_once(':').unwrap_or((line, ""));
            let mut unit = service(name.trim());
            for dep in deps.split_whitespace() {
                let dep_name = dep.trim_start_matches('!');
                unit.after.push(dep_name.to_owned());
                if dep.starts_with('!') {
                    unit.requires.push(dep_name.to_owned());
                }
            }
            unit
        }))
    }

    /// Runs unit `id` (pid `pid`) and, if `ready`, marks it ready.
    fn run(units: &mut Units, id: UnitId, pid: i32, ready: bool, now: Instant) {
        start(units, id, pid, now);
        units[id].probe.ready = ready;
    }

    fn woken(units: &Units) -> Vec<(&str, bool, bool)> {
        wakeable(units)
            .into_iter()
            .map(|w| (units[w.id].name.as_str(), w.released, w.start))
            .collect()
    }

    #[test]
    fn a_chain_starts_one_level_at_a_time_as_each_becomes_ready() {
        let now = Instant::now();
        let (mut units, ids) = units(&["db", "app: db", "web: app"]);
        let [db, app, _web] = ids[..] else { unreachable!() };
        for id in &ids[1..] {
            units[*id].order.waiting = true;
        }
        assert_eq!(woken(&units), [], "db is not running yet");
        run(&mut units, db, 10, false, now);
        assert_eq!(woken(&units), [], "db runs but is not ready");
        units[db].probe.ready = true;
        assert_eq!(woken(&units), [("app", false, true)]);
        units[app].order.waiting = false;
        run(&mut units, app, 11, true, now);
        assert_eq!(woken(&units), [("web", false, true)]);
    }

    #[test]
    fn a_dependency_going_down_no_longer_satisfies() {
        let now = Instant::now();
        let (mut units, ids) = units(&["db", "app: db"]);
        let [db, app] = ids[..] else { unreachable!() };
        units[app].order.waiting = true;
        run(&mut units, db, 10, true, now);
        assert!(satisfies(&units, "db"));
        units[db].order.stop_pending = true;
        assert!(!satisfies(&units, "db"), "about to stop");
        units[db].order.stop_pending = false;
        units[db].life.on(Event::Down, now);
        assert!(!satisfies(&units, "db"), "wanted down");
        assert_eq!(woken(&units), []);
        assert!(!satisfies(&units, "nosuch"), "an unknown name never satisfies");
        let _ = app;
    }

    #[test]
    fn a_one_shot_job_satisfies_once_it_ended_well() {
        let now = Instant::now();
        let (mut units, ids) = units(&["migrate", "app: migrate"]);
        let [job, app] = ids[..] else { unreachable!() };
        units[app].order.waiting = true;
        let mut once = crate::supervisor::testing::policy();
        once.restart = crate::service::RestartPolicy::Never;
        units[job].life = crate::service::Lifecycle::new(once);
        run(&mut units, job, 10, true, now);
        exit(&mut units, job, 3, now);
        assert_eq!(woken(&units), [], "it failed: app keeps waiting");
        run(&mut units, job, 11, true, now);
        exit(&mut units, job, 0, now);
        assert_eq!(woken(&units), [("app", false, true)]);
    }

    #[test]
    fn a_held_unit_is_released_when_what_it_requires_is_back_and_starts_if_its_after_allow() {
        let now = Instant::now();
        let (mut units, ids) = units(&["db", "cache", "app: !db cache"]);
        let [db, cache, app] = ids[..] else { unreachable!() };
        units[app].order.held = true;
        run(&mut units, db, 10, true, now);
        assert_eq!(woken(&units), [("app", true, false)], "back, but cache is not ready");
        run(&mut units, cache, 11, true, now);
        assert_eq!(woken(&units), [("app", true, true)]);
        units[app].leaving = Some(super::super::units::Leaving::Removed);
        assert_eq!(woken(&units), [], "one being removed never wakes");
    }

    #[test]
    fn requirers_are_the_running_units_that_require_it() {
        let now = Instant::now();
        let (mut units, ids) = units(&["db", "app: !db", "web: db", "admin: !db"]);
        let [db, app, web, admin] = ids[..] else { unreachable!() };
        for (n, id) in ids.iter().enumerate() {
            run(&mut units, *id, 10 + n as i32, true, now);
        }
        assert_eq!(requirers(&units, db), [app, admin], "web only comes after db");
        units[admin].life.on(Event::Down, now);
        assert_eq!(requirers(&units, db), [app, admin], "stopping is not down yet");
        units.retire(app);
        assert_eq!(requirers(&units, db), [admin], "a retired unit is nobody");
        assert_eq!(requirers(&units, web), []);
    }

    #[test]
    fn at_shutdown_units_stop_in_the_reverse_of_the_start_order() {
        let now = Instant::now();
        let (mut units, ids) = units(&["db", "cache", "app: db cache", "web: app"]);
        let [db, cache, app, web] = ids[..] else { unreachable!() };
        for (n, id) in ids.iter().enumerate() {
            run(&mut units, *id, 10 + n as i32, true, now);
            units[*id].order.stop_pending = true;
        }
        assert_eq!(stop_levels(&units), 3);
        assert_eq!(stoppable(&units, true), [web], "only what nothing comes after");
        units[web].order.stop_pending = false;
        units[web].life.on(Event::Down, now);
        assert_eq!(stoppable(&units, true), [], "web is stopping, not down");
        exit(&mut units, web, 143, now);
        assert_eq!(stoppable(&units, true), [app]);
        units[app].order.stop_pending = false;
        units[app].life.on(Event::Down, now);
        exit(&mut units, app, 143, now);
        assert_eq!(stoppable(&units, true), [db, cache], "both at once");
        assert_eq!(stop_levels(&units), 1);
    }

    #[test]
    fn outside_a_shutdown_only_requires_holds_a_stop_back() {
        let now = Instant::now();
        let (mut units, ids) = units(&["db", "app: !db", "web: db"]);
        let [db, app, _web] = ids[..] else { unreachable!() };
        for (n, id) in ids.iter().enumerate() {
            run(&mut units, *id, 10 + n as i32, true, now);
        }
        units[db].order.stop_pending = true;
        assert_eq!(stoppable(&units, false), [], "app requires it and runs");
        assert_eq!(stoppable(&units, true), [], "at shutdown web blocks it too");
        units[app].life.on(Event::Down, now);
        exit(&mut units, app, 143, now);
        assert_eq!(stoppable(&units, false), [db], "web only comes after it");
    }
}
