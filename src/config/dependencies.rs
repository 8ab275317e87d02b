//! `after` and `requires` across a service tree: every name known, and no
//! cycle.

use std::collections::HashMap;

use super::{ConfigError, Scan, ServiceSpec};

/// Every `after`/`requires` name must be a service of the tree, and the
/// dependencies must form no cycle. Services with a problem are moved from
/// `services` to `broken`, each problem reported at its service.toml.
pub(super) fn check_dependencies(scan: &mut Scan) {
    let known: std::collections::HashSet<String> = scan
        .services
        .iter()
        .map(|s| s.name.clone())
        .chain(scan.broken.iter().cloned())
        .collect();
    let mut bad: Vec<String> = Vec::new();
    for spec in &scan.services {
        for dep in &spec.after {
            if !known.contains(dep) {
                scan.errors.push(ConfigError {
                    service: Some(spec.name.clone()),
                    ..ConfigError::new(
                        &spec.dir.join("service.toml"),
                        format!("`{dep}` in after/requires is not a service of this directory"),
                    )
                });
                bad.push(spec.name.clone());
            } else if dep == &spec.name {
                scan.errors.push(ConfigError {
                    service: Some(spec.name.clone()),
                    ..ConfigError::new(
                        &spec.dir.join("service.toml"),
                        format!("`{dep}` cannot come after itself"),
                    )
                });
                bad.push(spec.name.clone());
            }
        }
    }
    // Cycles: a depth-first walk, reporting each cycle once, by its path.
    let graph: HashMap<&str, &[String]> = scan
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.after.as_slice()))
        .collect();
    let mut done: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for start in graph.keys().copied().collect::<std::collections::BTreeSet<_>>() {
        let mut path: Vec<&str> = Vec::new();
        find_cycle(start, &graph, &mut path, &mut done, &mut |cycle: &[&str]| {
            let first = cycle[0];
            let dir = scan
                .services
                .iter()
                .find(|s| s.name == first)
                .map(|s| s.dir.join("service.toml"));
            let shown: Vec<&str> = cycle.iter().copied().chain(std::iter::once(first)).collect();
            if let Some(path) = dir {
                scan.errors.push(ConfigError {
                    service: Some(first.to_owned()),
                    ..ConfigError::new(&path, format!("dependency cycle: {}", shown.join(" -> ")))
                });
            }
            bad.extend(cycle.iter().map(|s| s.to_string()));
        });
    }
    bad.sort();
    bad.dedup();
    let (broken, services): (Vec<ServiceSpec>, Vec<ServiceSpec>) = std::mem::take(&mut scan.services)
        .into_iter()
        .partition(|s| bad.contains(&s.name));
    scan.services = services;
    scan.broken.extend(broken.into_iter().map(|s| s.name));
}

fn find_cycle<'a>(
    node: &'a str,
    graph: &HashMap<&'a str, &'a [String]>,
    path: &mut Vec<&'a str>,
    done: &mut std::collections::HashSet<&'a str>,
    report: &mut dyn FnMut(&[&'a str]),
) {
    if done.contains(node) {
        return;
    }
    if let Some(at) = path.iter().position(|n| *n == node) {
        report(&path[at..]);
        return;
    }
    path.push(node);
    for dep in graph.get(node).copied().unwrap_or_default() {
        if let Some((name, _)) = graph.get_key_value(dep.as_str()) {
            find_cycle(name, graph, path, done, report);
        }
    }
    path.pop();
    done.insert(node);
}
