//! The container environment's dumps: `container_environment.sh` (export
//! lines for sh) and `container_environment.json`, as my_init writes them.

use std::io;
use std::os::unix::ffi::OsStrExt;

use super::{Vars, is_not_exported, not_a_shell_line};

/// `export NAME=VALUE` lines for every variable a shell can take.
pub(super) fn shell_dump(vars: &Vars) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in vars {
        if is_not_exported(name) || not_a_shell_line(name).is_some() {
            continue;
        }
        out.extend_from_slice(b"export ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        shell_quote(value.as_bytes(), &mut out);
        out.push(b'\n');
    }
    out
}

/// Quotes `value` for sh. Plain words stay bare, as my_init wrote them;
/// anything else goes in single quotes, inside which sh takes every byte
/// (newlines, `$`, `\`, non-UTF-8) literally except `'`, written `'\''`.
fn shell_quote(value: &[u8], out: &mut Vec<u8>) {
    let bare = |b: &u8| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(b);
    if !value.is_empty() && value.iter().all(bare) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

/// One JSON object of the whole environment (NOT_EXPORTED included, as my_init
/// dumps it), names in byte order. JSON strings are Unicode: bytes that are
/// not UTF-8 become U+FFFD.
pub(super) fn json_dump(vars: &Vars) -> io::Result<Vec<u8>> {
    let mut object = serde_json::Map::new();
    for (name, value) in vars {
        object.insert(
            name.to_string_lossy().into_owned(),
            serde_json::Value::String(value.to_string_lossy().into_owned()),
        );
    }
    serde_json::to_vec(&object).map_err(io::Error::other)
}
