#!/usr/bin/env bash
# Builds baseinit as one statically linked, stripped executable and copies it
# to images/dist/baseinit (the images' build context takes it from there).
#
# The machine's Rust toolchain has only the gnu target, so the binary is
# linked statically against glibc (`+crt-static`). In a static binary glibc's
# getpwnam & co. still dlopen the NSS modules nsswitch.conf names, and that
# segfaults (`group: files systemd` and a name not in /etc/group). So baseinit
# never calls them: it reads /etc/passwd and /etc/group itself
# (src/accounts.rs). The images' tests check `setuser nobody id` on Debian and
# on scratch.
#
# Usage: images/build-binary.sh [OUTPUT]   (default images/dist/baseinit)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/images/dist/baseinit}"
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

# A separate --target keeps these RUSTFLAGS from invalidating the host build
# that `cargo test` uses.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --manifest-path "$root/Cargo.toml" --release --locked --target "$target" --bin baseinit

bin="$CARGO_TARGET_DIR/$target/release/baseinit"
# Static or nothing: an image FROM scratch has no libc to load.
if command -v file >/dev/null; then
    file -L "$bin" | grep -Eq 'statically linked|static-pie linked' || {
        echo "build-binary: $bin is not statically linked: $(file -L "$bin")" >&2
        exit 1
    }
fi
# ldd says "statically linked" or "not a dynamic executable" for a static
# binary; a "=>" line is a shared library it would load.
if ldd "$bin" 2>&1 | grep -q '=>'; then
    echo "build-binary: ldd finds shared libraries in $bin:" >&2
    ldd "$bin" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
# cp to a temporary name and rename: a build that reads it never sees half a file.
cp "$bin" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "build-binary: $out ($(stat -c %s "$out") bytes, static)"
