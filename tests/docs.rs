//! The manual stays whole and true to the command line: every internal link
//! of `docs/` and the README resolves (file and heading), every page is in
//! the book's `SUMMARY.md`, and every long flag and environment variable of
//! the clap definitions is documented. (Every `service.toml` key: the test
//! beside the parser, `src/config/raw.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown pages checked: the book's and the README.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.push(root().join("README.md"));
    pages.push(root().join("bench/results/HISTORY.md"));
    pages.retain(|page| page.exists());
    pages.sort();
    pages
}

/// The text outside fenced code blocks and inline code spans, line by line
/// (links and headings there are not links and headings).
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        if line.starts_with("    ") && !trimmed.starts_with(['-', '*', '|']) && !trimmed.is_empty() {
            // An indented code block (or a list's continuation: no links
            // are lost by skipping either, the pages use fences).
            if out.last().is_none_or(|(_, l): &(usize, String)| l.trim().is_empty()) {
                continue;
            }
        }
        let mut kept = String::new();
        let mut in_code = false;
        for ch in line.chars() {
            if ch == '`' {
                in_code = !in_code;
            } else if !in_code {
                kept.push(ch);
            }
        }
        out.push((number + 1, kept));
    }
    out
}

/// mdBook's heading id: lowercased, whitespace to `-`, only letters,
/// digits, `-` and `_` kept; a repeated id gets `-1`, `-2`…
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim().replace('`', "");
        let id: String = heading
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_lowercase().next().unwrap_or(c))
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let count = seen.entry(id.clone()).or_default();
        ids.insert(if *count == 0 {
            id.clone()
        } else {
            format!("{id}-{count}")
        });
        *count += 1;
    }
    ids
}

/// The `(target)` of every `[text](target)` in a line.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        targets.push(after[..end].trim().to_owned());
        rest = &after[end..];
    }
    targets
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_internal_link_resolves() {
    let docs = root().join("docs");
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for (line, prose) in prose(&text) {
            for target in link_targets(&prose) {
                if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                    continue;
                }
                checked += 1;
                let (file, anchor) = match target.split_once('#') {
                    Some((file, anchor)) => (file, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let file = if file.is_empty() {
                    page.clone()
                } else {
                    normalize(&page.parent().unwrap().join(file))
                };
                // The book holds only docs/: a link out of it breaks there.
                if page.starts_with(&docs) && !file.starts_with(&docs) {
                    broken.push(format!(
                        "{name}:{line}: {target}: leaves docs/ (write the path as code)"
                    ));
                    continue;
                }
                if !file.exists() {
                    broken.push(format!("{name}:{line}: {target}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    let ids = heading_ids(&fs::read_to_string(&file).unwrap_or_default());
                    if !ids.contains(anchor) {
                        broken.push(format!("{name}:{line}: {target}: no heading with the id {anchor:?}"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found: is the link scanner broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_in_the_summary() {
    let summary = fs::read_to_string(root().join("docs/SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = prose(&summary)
        .iter()
        .flat_map(|(_, line)| link_targets(line))
        .collect();
    for page in pages() {
        let Ok(relative) = page.strip_prefix(root().join("docs")) else {
            continue;
        };
        let relative = relative.display().to_string();
        if relative != "SUMMARY.md" {
            assert!(listed.contains(&relative), "docs/{relative} is not in docs/SUMMARY.md");
        }
    }
}

#[test]
fn heading_ids_are_mdbooks() {
    let ids = heading_ids("# Exit codes\n## runit's sv and supervise/\n## `service.toml`\n## Exit codes\n");
    let expected = ["exit-codes", "exit-codes-1", "runits-sv-and-supervise", "servicetoml"];
    assert_eq!(ids, expected.iter().map(|s| s.to_string()).collect());
}

/// Every long flag and environment variable of `baseinit`, `check`,
/// `status` and `health` appears in the manual.
#[test]
fn every_flag_and_variable_is_documented() {
    let manual: String = pages()
        .iter()
        .filter(|page| page.starts_with(root().join("docs")))
        .map(|page| fs::read_to_string(page).unwrap())
        .collect();
    let names = baseinit::manual::flags_and_variables();
    assert!(names.len() > 25, "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|name| !mentions(&manual, name)).collect();
    assert!(missing.is_empty(), "not in docs/: {missing:?}");
}

/// `name` occurs as a whole word (`--output` is not found in `--output-x`).
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(|c| word(c) && !name.starts_with('-')) && !after.is_some_and(word)
    })
}

/// The performance page shows the latest run: the text between its markers
/// is `bench/results/latest.md` (bench/bench.py writes both).
#[test]
fn the_performance_page_shows_the_latest_run() {
    let page = fs::read_to_string(root().join("docs/performance.md")).unwrap();
    let latest = fs::read_to_string(root().join("bench/results/latest.md")).unwrap();
    let begin = page
        .find("<!-- bench/results/latest.md, verbatim")
        .expect("docs/performance.md has no start marker");
    let end = page
        .find("<!-- end of bench/results/latest.md -->")
        .expect("docs/performance.md has no end marker");
    let shown = &page[page[begin..].find('\n').map_or(end, |n| begin + n + 1)..end];
    assert_eq!(
        shown.trim(),
        latest.trim(),
        "docs/performance.md does not show bench/results/latest.md: run `python3 bench/bench.py --render bench/results/latest.json`"
    );
}
