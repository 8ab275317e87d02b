//! What a rescan of the service directory changes, decided: which services
//! are new, which changed (and whether an operator's `sv down` carries over
//! to the new definition), which are gone, and which, still stopping from an
//! earlier rescan, now follow the latest definition.
//!
//! Pure: it compares the scan with the unit table; the supervisor adds,
//! stops and retires units accordingly (`rescan`).

use crate::config::{Scan, ServiceSpec};

use super::units::{Kind, Leaving, UnitId, Units};

/// One change a rescan makes.
#[derive(Debug)]
pub enum Change {
    /// A service that was not there: start it.
    New(Box<ServiceSpec>),
    /// A service that a rescan is removing is back: once stopped, it comes
    /// back with this definition.
    Back(UnitId, Box<ServiceSpec>),
    /// A service being replaced changed again: its replacement is this one.
    Newer(UnitId, Box<ServiceSpec>),
    /// The definition changed: stop it, then start this one (down, when an
    /// operator's `sv down` of the old one carries over).
    Changed(UnitId, Box<ServiceSpec>, bool),
    /// Gone from the directory: stop it (what requires it first) and
    /// retire it.
    Gone(UnitId),
}

/// The changes `scan` makes to `units`. The services with a broken
/// definition are left as they are; when the directory could not be listed
/// (`scan.complete` false), nothing is known to be gone.
pub fn changes(units: &Units, scan: Scan) -> Vec<Change> {
    let mut seen: Vec<String> = scan.broken;
    let mut out = Vec::new();
    for spec in scan.services {
        seen.push(spec.name.clone());
        let Some(id) = units.by_name(&spec.name) else {
            out.push(Change::New(Box::new(spec)));
            continue;
        };
        let unit = &units[id];
        match &unit.leaving {
            Some(Leaving::Removed) => out.push(Change::Back(id, Box::new(spec))),
            Some(Leaving::Replaced { .. }) => out.push(Change::Newer(id, Box::new(spec))),
            None if unit.fingerprint != spec.fingerprint => {
                // Only an operator's `sv down` carries over: a service
                // waiting for or held by its dependencies is down only for
                // want of them.
                let down = match &unit.schedule {
                    // Between its runs a scheduled service is down without
                    // being told: only its times turned off (`sv down`) are.
                    Some(timer) => !timer.enabled(),
                    None => unit.life.wants_down() && !unit.order.waiting && !unit.order.held,
                };
                out.push(Change::Changed(id, Box::new(spec), down));
            }
            None => {}
        }
    }
    if scan.complete {
        out.extend(
            units
                .live()
                .filter(|(_, u)| u.kind == Kind::Service && !seen.contains(&u.name))
                .filter(|(_, u)| !matches!(u.leaving, Some(Leaving::Removed)))
                .map(|(id, _)| Change::Gone(id)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::service::Event;
    use crate::supervisor::testing::{service, start, table};

    fn spec(name: &str, fingerprint: u64) -> ServiceSpec {
        let unit = service(name);
        ServiceSpec {
            name: name.to_owned(),
            dir: name.into(),
            run: unit.run,
            finish: None,
            down: false,
            policy: unit.life.policy().clone(),
            log: None,
            log_files: None,
            output: None,
            essential: false,
            after: Vec::new(),
            requires: Vec::new(),
            readiness: unit.readiness,
            health: None,
            fingerprint,
            env_sources: None,
            schedule: None,
        }
    }

    fn scan(specs: Vec<ServiceSpec>, broken: &[&str], complete: bool) -> Scan {
        Scan {
            services: specs,
            errors: Vec::new(),
            broken: broken.iter().map(|b| (*b).to_owned()).collect(),
            complete,
        }
    }

    /// Each change as (kind, name, down).
    fn summary(units: &Units, changes: &[Change]) -> Vec<(&'static str, String, bool)> {
        changes
            .iter()
            .map(|c| match c {
                Change::New(spec) => ("new", spec.name.clone(), false),
                Change::Back(id, _) => ("back", units[*id].name.clone(), false),
                Change::Newer(id, _) => ("newer", units[*id].name.clone(), false),
                Change::Changed(id, _, down) => ("changed", units[*id].name.clone(), *down),
                Change::Gone(id) => ("gone", units[*id].name.clone(), false),
            })
            .collect()
    }

    #[test]
    fn new_changed_unchanged_broken_and_gone() {
        let (units, _) = table(["same", "edited", "broken", "removed"].map(|n| {
            let mut unit = service(n);
            unit.fingerprint = 1;
            unit
        }));
        let scan = scan(
            vec![spec("same", 1), spec("edited", 2), spec("added", 1)],
            &["broken"],
            true,
        );
        assert_eq!(
            summary(&units, &changes(&units, scan)),
            [
                ("changed", "edited".to_owned(), true),
                ("new", "added".to_owned(), false),
                ("gone", "removed".to_owned(), false),
            ],
            "never started: down (as `sv down` left it)"
        );
    }

    #[test]
    fn only_an_operators_down_carries_over_to_the_new_definition() {
        let now = Instant::now();
        let (mut units, ids) = table(["up", "stopped", "waiting", "held"].map(service));
        for (n, id) in ids.iter().enumerate() {
            start(&mut units, *id, 10 + n as i32, now);
        }
        units[ids[1]].life.on(Event::Down, now);
        for id in &ids[2..] {
            units[*id].life.on(Event::Down, now);
        }
        units[ids[2]].order.waiting = true;
        units[ids[3]].order.held = true;
        let specs = ["up", "stopped", "waiting", "held"].map(|n| spec(n, 9)).to_vec();
        let got = summary(&units, &changes(&units, scan(specs, &[], true)));
        let down: Vec<bool> = got.iter().map(|(_, _, down)| *down).collect();
        assert_eq!(down, [false, true, false, false]);
    }

    #[test]
    fn services_still_leaving_follow_the_latest_scan() {
        let (mut units, ids) = table(["removing", "replacing", "again"].map(service));
        units[ids[0]].leaving = Some(Leaving::Removed);
        units[ids[1]].leaving = Some(Leaving::Replaced {
            spec: Box::new(spec("replacing", 5)),
            down: false,
        });
        units[ids[2]].leaving = Some(Leaving::Removed);
        let scan = scan(vec![spec("removing", 0), spec("replacing", 6)], &[], true);
        assert_eq!(
            summary(&units, &changes(&units, scan)),
            [
                ("back", "removing".to_owned(), false),
                ("newer", "replacing".to_owned(), false),
            ],
            "`again` is gone already: not twice"
        );
    }

    #[test]
    fn an_unlistable_directory_removes_nothing() {
        let (units, _) = table([service("a")]);
        assert!(changes(&units, scan(Vec::new(), &[], false)).is_empty());
        assert_eq!(changes(&units, scan(Vec::new(), &[], true)).len(), 1);
    }
}
