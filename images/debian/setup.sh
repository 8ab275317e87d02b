#!/bin/sh
# Run once by images/debian/Dockerfile (as root, at build time) to install
# baseinit's files from /tmp/baseinit-build with explicit owners and modes:
# a COPY would take them from the build machine's checkout (its umask).
set -eu
b=/tmp/baseinit-build
bin=/usr/local/bin/baseinit

# The binary must run here: a broken build stops now, not at `docker run`.
"$bin" --version

# The names baseinit answers to. phusion's images have /sbin/my_init and
# /sbin/setuser; sv and setuser are on PATH too. /usr/local/bin comes before
# /usr/bin in PATH, so Debian's runit, if a user installs it, does not
# shadow baseinit's sv.
ln -sf "$bin" /sbin/my_init
ln -sf "$bin" /sbin/setuser
ln -sf baseinit /usr/local/bin/sv
ln -sf baseinit /usr/local/bin/setuser
# runit's svlogd, for log/run scripts (`exec svlogd -tt ./main`).
ln -sf baseinit /usr/local/bin/svlogd
# runit's chpst and the daemontools names it answers to, for run scripts
# (`exec chpst -u www-data -e ./env nginx`). Debian's base has none of these
# names; with runit or daemontools installed too, these come first on PATH,
# as sv does.
for name in chpst envdir envuidgid pgrphack setlock setuidgid softlimit; do
    ln -sf baseinit "/usr/local/bin/$name"
done

# Docker-friendly fixes (images/debian/README.md).
install -m 0755 "$b/rootfs/usr/sbin/policy-rc.d" /usr/sbin/policy-rc.d
install -m 0755 "$b/rootfs/usr/local/bin/install_clean" /usr/local/bin/install_clean

# The /etc layout baseinit reads: the checkout's etc/ (without git's
# .gitkeep placeholders and the README), directories 0755, files 0644 or
# 0755 when executable.
cd "$b/etc"
find . -mindepth 1 -type d | while read -r d; do
    install -d -m 0755 "/etc/$d"
done
find . -type f ! -name .gitkeep ! -path ./README.md | while read -r f; do
    if [ -x "$f" ]; then mode=0755; else mode=0644; fi
    install -m "$mode" "$f" "/etc/$f"
done
cd /

# my_init's container environment: the directory readable by root only; the
# .sh and .json dumps readable by the docker_env group (gid 8377, as in
# phusion's images), so a user added to it can source them; the .sh is read
# by login shells through /etc/profile.d.
getent group docker_env >/dev/null || groupadd -g 8377 docker_env
install -d -m 0700 -o root -g root /etc/container_environment
install -m 0640 -o root -g docker_env /dev/null /etc/container_environment.sh
printf '{}' >/etc/container_environment.json
chown root:docker_env /etc/container_environment.json
chmod 0640 /etc/container_environment.json
install -d -m 0755 /etc/profile.d
ln -sf /etc/container_environment.sh /etc/profile.d/container_environment.sh

# The man pages (`man baseinit`, `man sv`, `man setuser`, `man chpst`, `man
# baseinit-check`…) and bash completions, from images/build-binary.sh. The
# completions load once the bash-completion package is installed.
install -d -m 0755 /usr/local/share/man/man8 /usr/share/bash-completion/completions
for f in "$b"/share/man/man8/*.8; do install -m 0644 "$f" /usr/local/share/man/man8/; done
for f in "$b"/share/completions/bash/*; do install -m 0644 "$f" /usr/share/bash-completion/completions/; done

rm -rf "$b"

# man itself. The slim base leaves groff's macros out (path-exclude
# /usr/share/groff/*), and without them no page renders: included again,
# by a file read after the base's (dpkg reads them in name order). Manuals
# of Debian's packages stay out (/usr/share/man).
printf '%s\n' '# man needs groff macros to render any page (baseinit man pages).' \
    'path-include /usr/share/groff/*' >/etc/dpkg/dpkg.cfg.d/zz-baseinit-man
/usr/local/bin/install_clean man-db
