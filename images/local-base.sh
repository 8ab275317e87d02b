#!/usr/bin/env bash
# Makes a local Debian bookworm base image with debootstrap and `docker
# import`, for machines that reach Debian's package mirror but no image
# registry. It is slimmed as debian:bookworm-slim is (same dpkg path
# excludes and apt settings), so the base image built on it compares in size.
# With registry access, skip this and build with
# --build-arg BASE_IMAGE=debian:bookworm-slim instead.
#
# The mirror is read at run time from this machine's apt sources
# (/etc/apt/sources.list.d/*.sources, *.list, /etc/apt/sources.list), or
# taken from $BASEINIT_DEBIAN_MIRROR. None is written in the repository.
#
# Usage: images/local-base.sh [TAG]   (default baseinit-local/debian:bookworm)
# Does nothing when TAG exists. Needs root, debootstrap and docker.
set -euo pipefail
tag="${1:-baseinit-local/debian:bookworm}"
suite=bookworm

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "local-base: $tag exists"
    exit 0
fi

# The first "deb" source for $suite in this machine's apt configuration.
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas are separated by blank lines.
        awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; suites = ""; types = ""; enabled = 1
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^#/) continue
                    if (sub(/^URIs:[ \t]*/, "", line)) uris = line
                    else if (sub(/^Suites:[ \t]*/, "", line)) suites = " " line " "
                    else if (sub(/^Types:[ \t]*/, "", line)) types = " " line " "
                    else if (sub(/^Enabled:[ \t]*/, "", line)) enabled = (line != "no")
                }
                if (enabled && types ~ / deb / && index(suites, " " suite " ")) {
                    split(uris, u, " "); print u[1]; exit
                }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        awk -v suite="$suite" '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
}

mirror="${BASEINIT_DEBIAN_MIRROR:-$(find_mirror | head -n 1)}"
if [ -z "$mirror" ]; then
    echo "local-base: no 'deb' source for $suite in /etc/apt; set BASEINIT_DEBIAN_MIRROR" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    echo "local-base: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
}

work="$(mktemp -d /var/tmp/baseinit-debootstrap.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
echo "local-base: debootstrap --variant=minbase $suite (mirror from this machine's apt sources)"
if ! timeout 900 debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    echo "local-base: debootstrap failed" >&2
    exit 1
fi

# Slim it as debian:bookworm-slim is: no documentation, manuals or
# translations, now or in later installs.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
# The "slim" variant: files rarely needed in containers stay out.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CFG
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
# apt: no package cache kept, no translations fetched (as the official images).
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
rm -f "$root"/var/log/bootstrap.log
# This machine's name and resolver are none of the image's business (Docker
# mounts its own over them).
: >"$root/etc/hostname"
: >"$root/etc/resolv.conf"

echo "local-base: importing as $tag"
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $suite, slimmed" \
    - "$tag" >/dev/null
echo "local-base: $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
