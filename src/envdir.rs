//! runit's envdir format, shared by the `chpst -e`/`envdir` applet and
//! service.toml's `env-dir`: one file per variable, named after it, whose
//! first line is the value.
//!
//! An empty file unsets the variable; otherwise its first line is the
//! value, with trailing blanks and tabs cut and each NUL made a newline (so
//! a value may span lines). A file whose first line is empty sets the
//! variable to the empty string.

/// A file's value: None for an empty file (unset); else its first line
/// without trailing blanks and tabs, NULs made newlines.
pub fn value(content: &[u8]) -> Option<Vec<u8>> {
    if content.is_empty() {
        return None;
    }
    let line = content.split(|&b| b == b'\n').next().unwrap_or_default();
    let end = line.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    Some(line[..end].iter().map(|&b| if b == 0 { b'\n' } else { b }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(content: &[u8]) -> Option<String> {
        value(content).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn values_are_decoded_as_runits_envdir_does() {
        let table: [(&[u8], Option<&str>); 10] = [
            (b"", None),
            (b"\n", Some("")),
            (b"plain", Some("plain")),
            (b"a b \t \nsecond line", Some("a b")),
            (b"  lead", Some("  lead")),
            (b" \t ", Some("")),
            (b"x\0y\0", Some("x\ny\n")),
            // Only blanks and tabs are cut, not a carriage return.
            (b"dos\r\n", Some("dos\r")),
            // A NUL before trailing blanks keeps them: it is cut after.
            (b"a \0", Some("a \n")),
            (b"\nnot the first line", Some("")),
        ];
        for (content, want) in table {
            assert_eq!(v(content).as_deref(), want, "{content:?}");
        }
    }
}
