//! svlogd's command line, parsed as runit's `getopt("R:r:l:b:tvV")` does:
//! clustered flags (`-ttv`), an option's value attached or next (`-r_`,
//! `-r _`), options only before the first directory, `--` ending them; the
//! same checks (`-r` takes one character, `-b` must exceed `-l`) and the
//! same usage text and exit status.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::logdir::Timestamp;

/// runit's getopt string: the options, `:` after one that takes a value.
pub const GETOPT: &str = "R:r:l:b:tvV";
/// runit's svlogd exits 111 on a usage error, as on any fatal one.
pub const USAGE_EXIT: i32 = 111;
/// runit's defaults.
pub const LINE_MAX: usize = 1000;
pub const BUFFER: usize = 1024;

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub timestamp: Option<Timestamp>,
    pub verbose: bool,
    /// `-r` / `-R`: what each byte becomes before the line is matched and
    /// written (None: bytes are kept).
    pub replace: Option<Box<[u8; 256]>>,
    /// `-l`: how much of a line the patterns look at.
    pub line_max: usize,
    /// `-b`: runit's buffer size (baseinit's is never smaller than 64 KiB).
    pub buffer: usize,
    pub dirs: Vec<OsString>,
}

/// Why the command line is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// getopt's own complaint (`illegal option -- x`), if any, then usage.
    Usage(Option<String>),
    /// `-V`: the version line, then usage.
    Version,
}

impl Refused {
    /// What goes to standard error, for a program called `progname`.
    pub fn text(&self, progname: &str) -> String {
        let usage = format!("usage: {progname} [-ttv] [-r c] [-R abc] [-l len] [-b buflen] dir ...\n\n");
        match self {
            Refused::Usage(None) => usage,
            Refused::Usage(Some(complaint)) => format!("svlogd: {complaint}\n{usage}"),
            Refused::Version => format!("$Id: baseinit svlogd {} $\n{usage}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Parses `args` (args[0] is the program name).
pub fn parse(args: &[OsString]) -> Result<Options, Refused> {
    let mut timestamps = 0;
    let mut verbose = false;
    let mut replacement: Option<u8> = None;
    let mut also: Vec<u8> = Vec::new();
    let mut line_max = LINE_MAX;
    let mut buffer = BUFFER;
    let mut rest = args.iter().skip(1).peekable();
    while let Some(arg) = rest.peek() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            rest.next();
            break;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            break;
        }
        let cluster = bytes[1..].to_vec();
        rest.next();
        let mut at = 0;
        while at < cluster.len() {
            let flag = cluster[at];
            at += 1;
            match flag {
                b't' => timestamps += 1,
                b'v' => verbose = true,
                b'V' => return Err(Refused::Version),
                b'R' | b'r' | b'l' | b'b' => {
                    let value = if at < cluster.len() {
                        let value = cluster[at..].to_vec();
                        at = cluster.len();
                        value
                    } else {
                        match rest.next() {
                            Some(next) => next.as_bytes().to_vec(),
                            None => {
                                return Err(Refused::Usage(Some(format!(
                                    "option requires an argument -- {}",
                                    char::from(flag)
                                ))));
                            }
                        }
                    };
                    match flag {
                        b'R' => {
                            also = value;
                            replacement.get_or_insert(b'_');
                        }
                        b'r' => match value[..] {
                            [c] if c != 0 => replacement = Some(c),
                            _ => return Err(Refused::Usage(None)),
                        },
                        b'l' => line_max = scan_number(&value).filter(|&n| n > 0).unwrap_or(LINE_MAX),
                        _ => buffer = scan_number(&value).filter(|&n| n > 0).unwrap_or(BUFFER),
                    }
                }
                other => {
                    return Err(Refused::Usage(Some(format!("illegal option -- {}", char::from(other)))));
                }
            }
        }
    }
    let dirs: Vec<OsString> = rest.cloned().collect();
    if dirs.is_empty() || buffer <= line_max {
        return Err(Refused::Usage(None));
    }
    Ok(Options {
        timestamp: Timestamp::from_count(timestamps),
        verbose,
        replace: replacement.map(|c| replace_table(c, &also)),
        line_max,
        buffer,
        dirs,
    })
}

/// The leading decimal digits of `text`, as runit's `scan_ulong` (none: 0,
/// which the caller takes as the default).
fn scan_number(text: &[u8]) -> Option<usize> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[..digits]).ok()?.parse().ok()
}

/// What each byte becomes: `with` for the non-printable ones (outside
/// 32..=126) and those in `also`; itself otherwise.
pub fn replace_table(with: u8, also: &[u8]) -> Box<[u8; 256]> {
    let mut table = Box::new([0u8; 256]);
    for (byte, to) in table.iter_mut().enumerate() {
        let byte = byte as u8;
        let printable = (32..=126).contains(&byte);
        *to = if printable && !also.contains(&byte) { byte } else { with };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Options, Refused> {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        parse(&args)
    }

    #[test]
    fn flags_cluster_and_take_their_values_as_getopt() {
        let o = parse_line("svlogd -ttv -l 20 -b30 ./main /var/log/x").unwrap();
        assert_eq!(o.timestamp, Some(Timestamp::Readable));
        assert!(o.verbose);
        assert_eq!((o.line_max, o.buffer), (20, 30));
        assert_eq!(o.dirs, ["./main", "/var/log/x"]);
        assert_eq!(o.replace, None);
        let o = parse_line("svlogd -tttt main").unwrap();
        assert_eq!(o.timestamp, Some(Timestamp::Iso8601));
        // Options end at the first directory, or at --.
        assert_eq!(parse_line("svlogd main -t").unwrap().dirs, ["main", "-t"]);
        assert_eq!(parse_line("svlogd -- -t").unwrap().dirs, ["-t"]);
        assert_eq!(parse_line("svlogd - x").unwrap().dirs, ["-", "x"]);
        // Nonsense numbers are runit's defaults.
        let o = parse_line("svlogd -l abc -b 0 main").unwrap();
        assert_eq!((o.line_max, o.buffer), (LINE_MAX, BUFFER));
    }

    #[test]
    fn every_option_of_the_getopt_string_is_taken() {
        for (at, letter) in GETOPT.char_indices().filter(|(_, c)| *c != ':') {
            let takes_value = GETOPT[at + 1..].starts_with(':');
            // -b must stay above -l's default.
            let value = if letter == 'b' { " 2000" } else { " 5" };
            let line = format!("svlogd -{letter}{} d", if takes_value { value } else { "" });
            match parse_line(&line) {
                Ok(_) => {}
                Err(Refused::Version) => assert_eq!(letter, 'V'),
                Err(refused) => panic!("-{letter}: {refused:?}"),
            }
        }
    }

    #[test]
    fn usage_errors_are_runits() {
        let usage = |complaint: Option<&str>| Err(Refused::Usage(complaint.map(str::to_owned)));
        assert_eq!(parse_line("svlogd"), usage(None));
        assert_eq!(parse_line("svlogd -t"), usage(None));
        assert_eq!(parse_line("svlogd -x main"), usage(Some("illegal option -- x")));
        assert_eq!(parse_line("svlogd -r"), usage(Some("option requires an argument -- r")));
        assert_eq!(parse_line("svlogd -r ab main"), usage(None));
        assert_eq!(parse_line("svlogd -l 1024 main"), usage(None), "-b must exceed -l");
        assert_eq!(parse_line("svlogd -V main"), Err(Refused::Version));
        assert_eq!(
            Refused::Usage(Some("illegal option -- x".into())).text("svlogd"),
            "svlogd: illegal option -- x\nusage: svlogd [-ttv] [-r c] [-R abc] [-l len] [-b buflen] dir ...\n\n"
        );
        assert!(Refused::Version.text("svlogd").starts_with("$Id: baseinit svlogd "));
    }

    #[test]
    fn replacement_takes_r_and_capital_r_in_runits_order() {
        // (command line, input, output)
        let table = [
            ("svlogd -r : main", "a\tb\u{7f}c", "a:b:c"),
            ("svlogd -R fb main", "foo bar", "_oo _ar"),
            ("svlogd -r: -R fb main", "foo\tbar", ":oo::ar"),
            ("svlogd -R fb -r: main", "foo", ":oo"),
        ];
        for (line, input, output) in table {
            let table = parse_line(line).unwrap().replace.unwrap();
            let got: Vec<u8> = input.bytes().map(|b| table[usize::from(b)]).collect();
            assert_eq!(String::from_utf8(got).unwrap(), output, "{line}");
        }
        let table = replace_table(b'?', b"");
        assert_eq!(
            (table[0], table[b' ' as usize], table[b'~' as usize], table[200]),
            (b'?', b' ', b'~', b'?')
        );
    }
}
