//! One pipe's bytes in, whole formatted lines out: the prefix (or the JSON
//! object) around each line, written into a batch buffer.
//!
//! A line whose newline is in the bytes read is formatted straight from
//! them; only a line cut by the end of a read is held (`partial`, at most
//! [`MAX_LINE`] bytes), so the steady state copies each byte once and
//! allocates nothing per line. The time is read once per batch, by the
//! caller ([`Stamp`]).

use std::time::SystemTime;

use memchr::memchr;

use super::{Format, Stream, Style};

/// The longest line held before it is split.
pub const MAX_LINE: usize = 16 * 1024;
/// Appended to the pieces of a split line but the last.
pub const CONTINUED: &str = " [line continues]";
/// Put before the pieces of a split line but the first.
const CONTINUES: &[u8] = b"[continued] ";

/// A batch's timestamp: one clock read for every line formatted with it.
pub struct Stamp(String);

impl Stamp {
    /// The time now, when `style` shows it; nothing otherwise.
    pub fn now(style: Style) -> Stamp {
        let shown = style.format == Format::Json || style.timestamps;
        Stamp(if shown {
            humantime::format_rfc3339_micros(SystemTime::now()).to_string()
        } else {
            String::new()
        })
    }
}

/// One pipe's line splitter and formatter.
pub struct LineSplitter {
    format: Format,
    /// Text: the timestamp, then `head`, before each line.
    timestamps: bool,
    /// Text: `name | ` or `name (stderr) | `. JSON: the object's fields
    /// between the timestamp and the message's text.
    head: Vec<u8>,
    /// Everything before the text of each line of the batch being made:
    /// `head` with the batch's timestamp.
    prefix: Vec<u8>,
    /// A line cut by the end of a read, waiting for the rest.
    partial: Vec<u8>,
    /// The line being built was split: its next piece says so.
    continued: bool,
}

impl LineSplitter {
    /// Lines as they were written, without prefix or timestamp (for a log
    /// directory, which stamps them itself).
    pub fn bare() -> Self {
        LineSplitter {
            head: Vec::new(),
            ..LineSplitter::new(
                "",
                Stream::Stdout,
                Style {
                    format: Format::Text,
                    timestamps: false,
                },
            )
        }
    }

    pub fn new(service: &str, stream: Stream, style: Style) -> Self {
        let mut head = Vec::new();
        match style.format {
            Format::Text => {
                head.extend_from_slice(service.as_bytes());
                if stream == Stream::Stderr {
                    head.extend_from_slice(b" (stderr)");
                }
                head.extend_from_slice(b" | ");
            }
            Format::Json => {
                let (level, name) = match stream {
                    Stream::Stdout => ("info", "stdout"),
                    Stream::Stderr => ("warn", "stderr"),
                };
                head.extend_from_slice(b"\",\"level\":\"");
                head.extend_from_slice(level.as_bytes());
                head.extend_from_slice(b"\",\"service\":\"");
                escape_json(&mut head, service.as_bytes());
                head.extend_from_slice(b"\",\"stream\":\"");
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b"\",\"message\":\"");
            }
        }
        LineSplitter {
            format: style.format,
            timestamps: style.timestamps,
            head,
            prefix: Vec::new(),
            partial: Vec::new(),
            continued: false,
        }
    }

    /// Formats into `out` the lines `bytes` ends, until `out` holds `limit`
    /// bytes or more; returns how many bytes of `bytes` it took (all of
    /// them, unless `out` filled up first). What is left of a line at the
    /// end is held for the next call.
    pub fn push(&mut self, bytes: &[u8], stamp: &Stamp, out: &mut Vec<u8>, limit: usize) -> usize {
        self.stamp(stamp);
        let mut taken = 0;
        while taken < bytes.len() && out.len() < limit {
            let rest = &bytes[taken..];
            if self.partial.len() == MAX_LINE {
                // Full: a newline right after ends the line as it is;
                // anything else continues it on a new piece.
                let newline = rest[0] == b'\n';
                self.flush_partial(!newline, out);
                taken += usize::from(newline);
                continue;
            }
            let room = MAX_LINE - self.partial.len();
            let window = &rest[..room.min(rest.len())];
            match memchr(b'\n', window) {
                Some(end) if self.partial.is_empty() => {
                    self.line(Text::Terminated(&window[..=end]), out);
                    taken += end + 1;
                }
                Some(end) => {
                    self.partial.extend_from_slice(&window[..end]);
                    self.flush_partial(false, out);
                    taken += end + 1;
                }
                None => {
                    self.partial.extend_from_slice(window);
                    taken += window.len();
                }
            }
        }
        taken
    }

    /// At the end of the stream: a last line without newline, if any.
    pub fn finish(&mut self, stamp: &Stamp, out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            self.stamp(stamp);
            self.flush_partial(false, out);
        }
    }

    /// The prefix of the lines of a batch stamped `stamp`.
    fn stamp(&mut self, stamp: &Stamp) {
        self.prefix.clear();
        match self.format {
            Format::Text if self.timestamps => {
                self.prefix.extend_from_slice(stamp.0.as_bytes());
                self.prefix.push(b' ');
            }
            Format::Text => {}
            Format::Json => {
                self.prefix.extend_from_slice(b"{\"timestamp\":\"");
                self.prefix.extend_from_slice(stamp.0.as_bytes());
            }
        }
        self.prefix.extend_from_slice(&self.head);
    }

    fn flush_partial(&mut self, split: bool, out: &mut Vec<u8>) {
        let text = std::mem::take(&mut self.partial);
        self.line(if split { Text::Split(&text) } else { Text::Whole(&text) }, out);
        // Kept for the next cut line, unless a long line made it large: a
        // quiet service then holds nothing.
        if text.capacity() <= 1024 {
            self.partial = text;
            self.partial.clear();
        }
    }

    /// One formatted line, newline included.
    fn line(&mut self, text: Text, out: &mut Vec<u8>) {
        let (bytes, split) = match text {
            Text::Terminated(bytes) => (&bytes[..bytes.len() - 1], false),
            Text::Whole(bytes) => (bytes, false),
            Text::Split(bytes) => (bytes, true),
        };
        out.extend_from_slice(&self.prefix);
        if self.continued {
            out.extend_from_slice(CONTINUES);
        }
        match (self.format, text) {
            // The line and its newline in one copy.
            (Format::Text, Text::Terminated(with_newline)) => out.extend_from_slice(with_newline),
            (Format::Text, _) => {
                out.extend_from_slice(bytes);
                if split {
                    out.extend_from_slice(CONTINUED.as_bytes());
                }
                out.push(b'\n');
            }
            (Format::Json, _) => {
                escape_json(out, bytes);
                if split {
                    out.extend_from_slice(CONTINUED.as_bytes());
                }
                out.extend_from_slice(b"\"}\n");
            }
        }
        self.continued = split;
    }
}

/// A line's text as `LineSplitter::line` gets it.
#[derive(Clone, Copy)]
enum Text<'a> {
    /// Straight from a read, with its newline.
    Terminated(&'a [u8]),
    /// Held, without newline: a whole line (its newline came in a later
    /// read, or the stream ended).
    Whole(&'a [u8]),
    /// Held, without newline: a piece of an overlong line, more to come.
    Split(&'a [u8]),
}

/// What a byte becomes inside a JSON string, as serde_json writes it: 0 for
/// itself, `u` for `\u00XX`, or the letter after the backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `bytes` as the inside of a JSON string: what
/// `serde_json::to_string(&String::from_utf8_lossy(bytes))` holds between
/// its quotes (each invalid UTF-8 sequence one U+FFFD), without building
/// the string.
pub fn escape_json(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most lines are printable ASCII with no quote or backslash: copied as
    // they are, after a test of eight bytes at a time.
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (at, &byte) in valid.iter().enumerate() {
            let escape = ESCAPE[usize::from(byte)];
            if escape == 0 {
                continue;
            }
            out.extend_from_slice(&valid[start..at]);
            if escape == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            } else {
                out.push(b'\\');
                out.push(escape);
            }
            start = at + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(char::REPLACEMENT_CHARACTER.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
}

/// True when no byte of `bytes` needs escaping in a JSON string and all
/// are ASCII: none below 0x20, none at 0x80 or above, no `"`, no `\\`.
///
/// Eight bytes at a time, with the classic tests on a word (a byte below
/// n: `(x - n·0x01…) & !x & 0x80…`, exact for n ≤ 0x80; a zero byte: the
/// same with n = 1, applied to `x ^ c·0x01…` to find a byte equal to c).
/// The release build optimizes for size, which keeps the compiler from
/// vectorizing the plain loop, and the line-rate JSON output depends on it.
fn is_plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH != 0;
    let has_byte = |x: u64, c: u8| has_below(x ^ (ONES * u64::from(c)), 1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let x = u64::from_ne_bytes(eight);
        if x & HIGH != 0 || has_below(x, 0x20) || has_byte(x, b'"') || has_byte(x, b'\\') {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Style = Style {
        format: Format::Text,
        timestamps: false,
    };

    /// Pushes `chunks` one after another (each whole), then finishes.
    fn run(s: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<String> {
        let stamp = Stamp::now(TEXT);
        let mut out = Vec::new();
        for chunk in chunks {
            assert_eq!(s.push(chunk, &stamp, &mut out, usize::MAX), chunk.len());
        }
        s.finish(&stamp, &mut out);
        String::from_utf8(out)
            .unwrap()
            .split_inclusive('\n')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn whole_lines_come_out_whatever_the_chunks() {
        let mut s = LineSplitter::new("web", Stream::Stdout, TEXT);
        let stamp = Stamp::now(TEXT);
        let mut out = Vec::new();
        assert_eq!(s.push(b"hel", &stamp, &mut out, usize::MAX), 3);
        assert!(out.is_empty());
        s.push(b"lo\nwor", &stamp, &mut out, usize::MAX);
        assert_eq!(out, b"web | hello\n");
        out.clear();
        s.push(b"ld\n\nlast", &stamp, &mut out, usize::MAX);
        assert_eq!(out, b"web | world\nweb | \n");
        out.clear();
        s.finish(&stamp, &mut out);
        assert_eq!(out, b"web | last\n");
        out.clear();
        s.finish(&stamp, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_full_batch_stops_taking_bytes_between_lines() {
        let mut s = LineSplitter::new("w", Stream::Stdout, TEXT);
        let stamp = Stamp::now(TEXT);
        let mut out = Vec::new();
        let input = b"one\ntwo\nthree\n";
        // Room for about one line: the first is formatted, the rest left.
        let took = s.push(input, &stamp, &mut out, 5);
        assert_eq!((took, out.as_slice()), (4, b"w | one\n".as_slice()));
        out.clear();
        assert_eq!(s.push(&input[took..], &stamp, &mut out, usize::MAX), 10);
        assert_eq!(out, b"w | two\nw | three\n");
    }

    #[test]
    fn stderr_is_marked() {
        let mut s = LineSplitter::new("db", Stream::Stderr, TEXT);
        assert_eq!(run(&mut s, &[b"oops\n"]), ["db (stderr) | oops\n"]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_not_split() {
        let mut s = LineSplitter::new("w", Stream::Stdout, TEXT);
        let line = vec![b'x'; MAX_LINE];
        // The newline arrives in a chunk of its own: still one line.
        let out = run(&mut s, &[&line, b"\n"]);
        assert_eq!(out.len(), 1);
        assert!(!out[0].contains("[line continues]"));
        let mut whole = line.clone();
        whole.push(b'\n');
        assert_eq!(run(&mut s, &[&whole]).len(), 1);
    }

    #[test]
    fn an_overlong_line_is_split_with_a_marker() {
        let mut s = LineSplitter::new("w", Stream::Stdout, TEXT);
        let mut long = vec![b'x'; MAX_LINE * 2 + 10];
        long.push(b'\n');
        let out = run(&mut s, &[&long]);
        assert_eq!(out.len(), 3);
        assert!(out[0].ends_with(" [line continues]\n") && out[0].starts_with("w | xxx"));
        assert!(out[1].starts_with("w | [continued] xxx") && out[1].ends_with(" [line continues]\n"));
        assert_eq!(out[2], format!("w | [continued] {}\n", "x".repeat(10)));
        // Memory stays bounded: nothing large is held after the line ends.
        assert!(s.partial.is_empty() && s.partial.capacity() <= 1024);
    }

    #[test]
    fn timestamps_come_first() {
        let style = Style {
            format: Format::Text,
            timestamps: true,
        };
        let mut s = LineSplitter::new("web", Stream::Stdout, style);
        let mut out = Vec::new();
        s.push(b"x\n", &Stamp::now(style), &mut out, usize::MAX);
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("Z web | x\n"), "{out}");
    }

    #[test]
    fn json_lines_parse_back() {
        let style = Style {
            format: Format::Json,
            timestamps: false,
        };
        let mut s = LineSplitter::new("we\"b", Stream::Stderr, style);
        let mut out = Vec::new();
        s.push(b"said \"hi\" \xff\t\x01\n", &Stamp::now(style), &mut out, usize::MAX);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["service"], "we\"b");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["message"], "said \"hi\" \u{fffd}\t\u{1}");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        // The fields in the order the serde struct of before wrote them.
        let text = String::from_utf8(out).unwrap();
        let keys: Vec<usize> = ["timestamp", "level", "service", "stream", "message"]
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(keys.is_sorted(), "{text}");
    }

    proptest::proptest! {
        /// Whatever the bytes, however they are cut into reads and however
        /// small the batches, the lines written carry exactly the input:
        /// nothing lost, added or reordered (split lines joined back, the
        /// last line flushed), each prefixed once, none over the limit.
        #[test]
        fn the_splitter_loses_and_adds_nothing(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000),
            specials in proptest::collection::vec(
                (0usize..20_000, proptest::sample::select(vec![b'\n', b'\r', 0u8])),
                0..300,
            ),
            long in proptest::collection::vec(
                (0usize..40_000, MAX_LINE - 2..MAX_LINE + 3),
                0..3,
            ),
            cuts in proptest::collection::vec(1usize..5000, 1..20),
            limit in 1usize..100_000,
        ) {
            // Newlines (empty lines too), CRs and NULs, and lines at and
            // around the limit, somewhere in the input.
            let mut input = input;
            for (at, byte) in specials {
                input.insert(at.min(input.len()), byte);
            }
            for (at, len) in long {
                let at = at.min(input.len());
                let mut line = vec![b'y'; len];
                line.push(b'\n');
                input.splice(at..at, line);
            }
            let mut s = LineSplitter::new("s", Stream::Stdout, TEXT);
            let stamp = Stamp::now(TEXT);
            let mut out = Vec::new();
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let mut chunk = &rest[..(*cut).min(rest.len())];
                rest = &rest[chunk.len()..];
                // A batch fills up: what is left is pushed into the next.
                while !chunk.is_empty() {
                    let mut batch = Vec::new();
                    let took = s.push(chunk, &stamp, &mut batch, limit);
                    proptest::prop_assert!(took > 0 || !batch.is_empty());
                    chunk = &chunk[took..];
                    out.extend_from_slice(&batch);
                }
            }
            s.finish(&stamp, &mut out);
            let mut rebuilt = Vec::new();
            for line in out.split_inclusive(|b| *b == b'\n') {
                let mut text = line.strip_prefix(b"s | ".as_slice()).unwrap().to_vec();
                proptest::prop_assert_eq!(text.pop(), Some(b'\n'));
                let continued = text.starts_with(CONTINUES);
                if continued {
                    text.drain(..CONTINUES.len());
                }
                let split = text.ends_with(CONTINUED.as_bytes());
                if split {
                    text.truncate(text.len() - CONTINUED.len());
                }
                proptest::prop_assert!(text.len() <= MAX_LINE);
                rebuilt.extend_from_slice(&text);
                if !split {
                    rebuilt.push(b'\n');
                }
            }
            // The last line had no newline of its own unless the input ended with one.
            if !input.ends_with(b"\n") && !input.is_empty() {
                rebuilt.pop();
            }
            proptest::prop_assert_eq!(rebuilt, input);
        }

        /// The escaper writes what serde_json writes for the lossy string.
        #[test]
        fn json_escaping_is_serde_jsons(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut ours = b"\"".to_vec();
            escape_json(&mut ours, &bytes);
            ours.push(b'"');
            let theirs = serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }

        /// The word-at-a-time test says what a byte-by-byte one says.
        #[test]
        fn plain_is_byte_by_byte(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![0u8, 0x1f, 0x20, 0x21, b'"', b'\\', b'a', 0x7f, 0x80, 0xff]),
                0..40,
            ),
        ) {
            let expected = bytes.iter().all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(is_plain(&bytes), expected);
        }

        /// Any text survives a JSON line: parsed back, the message is the
        /// lossy text.
        #[test]
        fn json_lines_carry_any_text(text in proptest::collection::vec(
            proptest::strategy::Strategy::prop_filter(proptest::prelude::any::<u8>(), "no newline", |b| *b != b'\n'), 0..300)
        ) {
            let style = Style { format: Format::Json, timestamps: false };
            let mut s = LineSplitter::new("s", Stream::Stdout, style);
            let mut out = Vec::new();
            let mut line = text.clone();
            line.push(b'\n');
            s.push(&line, &Stamp::now(style), &mut out, usize::MAX);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(v["message"].as_str().unwrap(), String::from_utf8_lossy(&text));
        }
    }
}
