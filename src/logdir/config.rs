//! A log directory's `config` file, svlogd's format: one setting per line,
//! named by its first character.
//!
//! `s` size, `n` most rotated files, `N` fewest rotated files (on a full
//! disk), `t` age, `+`/`-`/`e`/`E` selection rules, `p` prefix; `#` and
//! empty lines are comments. `!processor` and `u`/`U` (UDP) are runit's but
//! not baseinit's: they are reported and ignored. Where runit silently reads
//! a malformed number as 0 (`s 1000`, with a space, turns rotation off) or
//! skips an unknown line, this parser reports the line and keeps the value
//! it had: a typo never changes what is kept.

use std::fmt;

use super::pattern::{Action, Rule};

/// The settings a `config` can change, with runit's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `s`: rotate `current` at this size, in bytes; 0: never by size.
    pub max_size: u64,
    /// `n`: after a rotation, delete the oldest rotated file while there are
    /// more than this; 0: never.
    pub max_files: u64,
    /// `N`: on a full disk, delete the oldest rotated file while there are
    /// more than this (only when below `max_files`).
    pub min_files: u64,
    /// `t`: rotate a `current` that is not empty every this many seconds; 0:
    /// never by age.
    pub max_age_secs: u64,
    /// `+`, `-`, `e`, `E` lines, in order.
    pub rules: Vec<Rule>,
    /// `p`: put before every line written (after the timestamp).
    pub prefix: Vec<u8>,
}

impl Default for Config {
    /// runit's: 1,000,000 bytes, 10 files, no age, every line selected.
    fn default() -> Config {
        Config {
            max_size: 1_000_000,
            max_files: 10,
            min_files: 10,
            max_age_secs: 0,
            rules: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

/// A line of a `config` that was not taken as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based.
    pub line: usize,
    pub what: ProblemKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line whose first character names no setting.
    Unknown(String),
    /// `s`, `n`, `N` or `t` without a number (with its text).
    NotANumber(char, String),
    /// `!processor`: processors are not supported.
    Processor,
    /// `u`/`U`: sending lines over UDP is not supported.
    Udp(char),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.what {
            ProblemKind::Unknown(text) => write!(f, "unknown setting {text:?}: ignored"),
            ProblemKind::NotANumber(setting, text) => {
                let unit = match setting {
                    's' => "a size in bytes (with k or m)",
                    't' => "seconds (with m or h)",
                    _ => "a count of files",
                };
                write!(f, "{setting}: {text:?} is not {unit}: ignored")
            }
            ProblemKind::Processor => write!(
                f,
                "! (a processor) is not supported by baseinit's svlogd: ignored; rotated files are kept unprocessed"
            ),
            ProblemKind::Udp(c) => write!(
                f,
                "{c} (sending lines over UDP) is not supported by baseinit's svlogd: ignored; lines are written to the directory"
            ),
        }
    }
}

/// `text` (a `config` file's bytes) applied over `defaults`, and the lines
/// not taken.
pub fn parse(text: &[u8], defaults: &Config) -> (Config, Vec<Problem>) {
    let mut config = defaults.clone();
    let mut problems = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let Some((&first, rest)) = line.split_first() else {
            continue;
        };
        let mut problem = |what| problems.push(Problem { line: number, what });
        match first {
            b'#' => {}
            b'+' | b'-' | b'e' | b'E' => {
                let action = match first {
                    b'+' => Action::Select,
                    b'-' => Action::Deselect,
                    b'e' => Action::Alert,
                    _ => Action::Quiet,
                };
                // runit's patterns are C strings: a NUL ends one.
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                config.rules.push(Rule {
                    action,
                    pattern: rest[..end].to_vec(),
                });
            }
            b's' | b'n' | b'N' | b't' => match number_of(first, rest) {
                Some(value) => match first {
                    b's' => config.max_size = value,
                    b'n' => config.max_files = value,
                    b'N' => config.min_files = value,
                    _ => config.max_age_secs = value,
                },
                None => problem(ProblemKind::NotANumber(
                    char::from(first),
                    String::from_utf8_lossy(rest).into_owned(),
                )),
            },
            b'p' => {
                // As runit: a `p` alone leaves the prefix as it was.
                if !rest.is_empty() {
                    config.prefix = rest.to_vec();
                }
            }
            b'!' => problem(ProblemKind::Processor),
            b'u' | b'U' => problem(ProblemKind::Udp(char::from(first))),
            // Trailing white space or a CR of a file edited elsewhere.
            _ if line.iter().all(u8::is_ascii_whitespace) => {}
            _ => problem(ProblemKind::Unknown(String::from_utf8_lossy(line).into_owned())),
        }
    }
    (config, problems)
}

/// The value of an `s`, `n`, `N` or `t` line's text: digits, then for `s`
/// an optional `k` or `m` (×1024, ×1024²), for `t` an optional `m` or `h`
/// (×60, ×3600); white space after it is allowed. None when it is not that.
pub fn number_of(setting: u8, text: &[u8]) -> Option<u64> {
    let text = text.trim_ascii_end();
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let value: u64 = std::str::from_utf8(&text[..digits]).ok()?.parse().ok()?;
    let factor = match (setting, &text[digits..]) {
        (_, b"") => 1,
        (b's', b"k") => 1024,
        (b's', b"m") => 1024 * 1024,
        (b't', b"m") => 60,
        (b't', b"h") => 3600,
        _ => return None,
    };
    value.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_runits_units() {
        // (setting, text, value)
        let table: &[(u8, &str, Option<u64>)] = &[
            (b's', "1000", Some(1000)),
            (b's', "4k", Some(4096)),
            (b's', "2m", Some(2 * 1024 * 1024)),
            (b's', "0", Some(0)),
            (b's', "100 ", Some(100)),
            (b's', "100\r", Some(100)),
            (b's', " 100", None),
            (b's', "", None),
            (b's', "10h", None),
            (b's', "1x", None),
            (b't', "30", Some(30)),
            (b't', "5m", Some(300)),
            (b't', "2h", Some(7200)),
            (b't', "1k", None),
            (b'n', "5", Some(5)),
            (b'n', "5k", None),
            (b'N', "99999999999999999999999", None),
        ];
        for &(setting, text, want) in table {
            assert_eq!(number_of(setting, text.as_bytes()), want, "{}{text:?}", setting as char);
        }
    }

    #[test]
    fn a_config_sets_what_it_names_and_keeps_the_rest() {
        let text = b"# sizes\ns4096\nn5\nN2\nt1h\n\n+*error*\n-*debug*\nE*quiet*\ne*panic*\npweb: \n";
        let (config, problems) = parse(text, &Config::default());
        assert_eq!(problems, []);
        assert_eq!(config.max_size, 4096);
        assert_eq!(config.max_files, 5);
        assert_eq!(config.min_files, 2);
        assert_eq!(config.max_age_secs, 3600);
        assert_eq!(config.prefix, b"web: ");
        let actions: Vec<(Action, &[u8])> = config.rules.iter().map(|r| (r.action, &r.pattern[..])).collect();
        assert_eq!(
            actions,
            [
                (Action::Select, &b"*error*"[..]),
                (Action::Deselect, b"*debug*"),
                (Action::Quiet, b"*quiet*"),
                (Action::Alert, b"*panic*"),
            ]
        );
        let (empty, problems) = parse(b"", &Config::default());
        assert_eq!((empty, problems), (Config::default(), vec![]));
    }

    #[test]
    fn later_lines_win_and_a_lone_p_keeps_the_prefix() {
        let (config, _) = parse(b"s100\ns200\npone\np\n", &Config::default());
        assert_eq!((config.max_size, &config.prefix[..]), (200, &b"one"[..]));
    }

    #[test]
    fn nonsense_is_reported_by_line_and_changes_nothing() {
        let text = b"s 1000\nhello\n!gzip\nu10.0.0.1\nUsyslog\n  \nnlots\n";
        let (config, problems) = parse(text, &Config::default());
        assert_eq!(config, Config::default());
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 7]);
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown[0],
            "line 1: s: \" 1000\" is not a size in bytes (with k or m): ignored"
        );
        assert_eq!(shown[1], "line 2: unknown setting \"hello\": ignored");
        assert!(shown[2].starts_with("line 3: ! (a processor) is not supported"));
        assert!(shown[3].starts_with("line 4: u (sending lines over UDP) is not supported"));
        assert!(shown[4].starts_with("line 5: U (sending"));
        assert_eq!(shown[5], "line 7: n: \"lots\" is not a count of files: ignored");
    }

    #[test]
    fn a_config_without_a_final_newline_or_with_crlf_still_reads() {
        let (config, problems) = parse(b"s300\r\nn2", &Config::default());
        assert_eq!((config.max_size, config.max_files), (300, 2));
        assert_eq!(problems, []);
    }
}
