#!/usr/bin/env bash
# Builds baseinit as one statically linked, stripped executable and copies it
# to images/dist/baseinit (the images' build context takes it from there).
#
# The target is musl (`rustup target add x86_64-unknown-linux-musl`), linked
# statically: PID 1 keeps its code mapped for the container's life, and
# musl's is a fraction of glibc's (docs/memory.md). baseinit never calls
# getpwnam & co. (with glibc they dlopen NSS modules even in a static
# binary): it reads /etc/passwd and /etc/group itself (src/accounts.rs). The
# images' tests check `setuser nobody id` on Debian and on scratch.
#
# Flags for a smaller resident set: `relocation-model=static` (a non-PIE
# executable: nothing to relocate at start, so no page of read-only data
# becomes a private copy) and images/code-layout.ld (boot-only code and the
# idle event loop's each in a section of their own).
#
# Beside the binary it writes the man pages and bash completions
# (baseinit-generate, from the clap definitions) to DIR/share/ of OUTPUT's
# directory, for the base image to install.
#
# Usage: images/build-binary.sh [OUTPUT]   (default images/dist/baseinit)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/images/dist/baseinit}"
target=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2 || true
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    # Still a working static binary, only a bigger one (about 2.5 MB more
    # resident code, docs/memory.md): say so loudly rather than fail.
    echo "build-binary: *** the $target target cannot be installed: falling back to glibc (+crt-static), a bigger binary" >&2
    target=x86_64-unknown-linux-gnu
fi
# Cargo does not watch the linker script: a copy named after its contents
# makes an edit change RUSTFLAGS, hence relink.
mkdir -p "$CARGO_TARGET_DIR"
script="$CARGO_TARGET_DIR/code-layout-$(cksum <"$root/images/code-layout.ld" | cut -d' ' -f1).ld"
cp "$root/images/code-layout.ld" "$script"
# The linker's map of the result, for images/check-code-layout.py (which
# input sections each pattern of code-layout.ld placed): written by the link
# itself, so no second build is needed, and the release profile's stripping
# does not matter.
map="$CARGO_TARGET_DIR/baseinit.map"
# A separate --target keeps these RUSTFLAGS from invalidating the host build
# that `cargo test` uses.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,-T,$script -C link-arg=-Wl,-Map=$map" \
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
echo "build-binary: $out ($(stat -c %s "$out") bytes, static; linker map $map)"
# The man pages and completions: a host build (the pages do not depend on
# the target), the one `cargo test` makes of the library anyway.
share="$(dirname "$out")/share"
cargo run --manifest-path "$root/Cargo.toml" --locked -q --bin baseinit-generate -- "$share" >&2
