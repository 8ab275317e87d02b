//! svlogd's line selection: its patterns (not regular expressions) and the
//! `+`/`-`/`e`/`E` rules of a log directory's `config`, applied in order.
//!
//! The matcher is runit 2.1.2's `pmatch`, quirks included, so that a config
//! selects the same lines under baseinit as under runit: a character other
//! than `*` and `+` matches itself; `*` before the end of the pattern skips
//! to the first occurrence of the pattern's next character (it cannot cross
//! it: `*pid*` does not match `tcpsvd: pid 1`); a `*` at the end matches
//! anything; `+x` matches one or more `x`, and a text that ends inside such a
//! run matches whatever the pattern has left.

/// What a rule does to the lines its pattern matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `+pattern`: written to the directory.
    Select,
    /// `-pattern`: not written to the directory.
    Deselect,
    /// `epattern`: also written to standard error.
    Alert,
    /// `Epattern`: not written to standard error.
    Quiet,
}

/// One selection line of a `config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub pattern: Vec<u8>,
}

/// What the rules decide for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Written to the directory (every line is, unless a rule says not).
    pub selected: bool,
    /// Written to standard error (no line is, unless a rule says so).
    pub alert: bool,
}

/// The verdict of `rules` on `text` (the line's first `-l` bytes, after
/// replacement, without timestamp or prefix): the last matching rule of
/// each kind wins.
pub fn judge(rules: &[Rule], text: &[u8]) -> Verdict {
    let mut verdict = Verdict {
        selected: true,
        alert: false,
    };
    for rule in rules {
        if !matches(&rule.pattern, text) {
            continue;
        }
        match rule.action {
            Action::Select => verdict.selected = true,
            Action::Deselect => verdict.selected = false,
            Action::Alert => verdict.alert = true,
            Action::Quiet => verdict.alert = false,
        }
    }
    verdict
}

/// Whether `pattern` matches the whole of `text`, as runit's `pmatch`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut s) = (pattern, text);
    loop {
        let Some((&c, rest)) = p.split_first() else {
            return s.is_empty();
        };
        p = rest;
        match c {
            b'*' => {
                let Some(&next) = p.first() else { return true };
                // Up to the next character of the pattern, which the next
                // turn matches.
                match s.iter().position(|&b| b == next) {
                    Some(at) => s = &s[at..],
                    None => return false,
                }
            }
            b'+' => {
                let Some((&repeated, rest)) = p.split_first() else {
                    // runit compares the text with the pattern's end (NUL):
                    // no line byte is NUL there.
                    return false;
                };
                p = rest;
                if s.first() != Some(&repeated) {
                    return false;
                }
                let run = s.iter().take_while(|&&b| b == repeated).count();
                s = &s[run..];
                if s.is_empty() {
                    return true;
                }
            }
            _ => match s.split_first() {
                Some((&b, rest)) if b == c => s = rest,
                _ => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_runits_pmatch() {
        // (pattern, text, matches)
        let table: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc", "ab", false),
            ("*", "", true),
            ("*", "anything at all", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("*c", "abcd", false),
            ("*b*", "abc", true),
            ("*: *: pid *", "tcpsvd: info: pid 1977 from 10.4.1.14", true),
            // The man page's example: the first star stops at tcpsvd's p.
            ("*pid*", "tcpsvd: info: pid 1977 from 10.4.1.14", false),
            ("*x", "abc", false),
            ("+a", "aaa", true),
            ("+ab", "aaab", true),
            ("+ab", "b", false),
            // A text that ends in the run matches what the pattern has left.
            ("+abc", "aa", true),
            ("x+ab", "xaab", true),
            ("+", "a", false),
            ("**", "a*b", true),
            ("warn*", "warning: disk", true),
            ("*warn*", "a warning", true),
            ("*error*", "no errors here", true),
        ];
        for &(pattern, text, want) in table {
            assert_eq!(
                matches(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern:?} on {text:?}"
            );
        }
    }

    fn rule(action: Action, pattern: &str) -> Rule {
        Rule {
            action,
            pattern: pattern.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_last_matching_rule_of_each_kind_wins() {
        use Action::*;
        let rules = [
            rule(Deselect, "*"),
            rule(Select, "error*"),
            rule(Deselect, "error: boring*"),
            rule(Alert, "error*"),
            rule(Quiet, "error: quiet*"),
        ];
        // (text, selected, alert)
        let table = [
            ("info: hello", false, false),
            ("error: disk", true, true),
            ("error: boring thing", false, true),
            ("error: quiet one", true, false),
        ];
        for (text, selected, alert) in table {
            assert_eq!(judge(&rules, text.as_bytes()), Verdict { selected, alert }, "{text}");
        }
        assert_eq!(
            judge(&[], b"x"),
            Verdict {
                selected: true,
                alert: false
            }
        );
    }
}
