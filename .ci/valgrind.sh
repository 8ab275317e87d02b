#!/usr/bin/env bash
# One short scenario under valgrind's memcheck: baseinit as PID 1 of a PID
# namespace with two services, one that runs and one that crashes in a
# loop; `sv down`, `sv up` and `sv status` against the first; SIGTERM. It
# passes when baseinit exits 0 and memcheck found no error (it would make
# the exit code 99). Leaks are not errors here: at exit baseinit leaves its
# runtime and threads to the process's end on purpose (src/main.rs).
#
# The glibc debug build: valgrind reports false positives in musl's static
# start-up code. Only baseinit itself is followed (--trace-children=no);
# the children it forks before their exec stay silent.
#
# valgrind ends a process that clones with CLONE_VM (it does not fail the
# call), so this also checks that baseinit asks valgrind first and starts
# its children by fork (src/spawn/in_flight.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
# The watchdog: the whole scenario, valgrind's start-up included, well
# within it (about 10 s on a loaded 2-core machine).
budget=180

cargo build --quiet
bin="$PWD/target/debug/baseinit"
if ! file -L "$bin" | grep -q 'dynamically linked'; then
    echo "valgrind: $bin is not the glibc build" >&2
    exit 1
fi

work="$(mktemp -d /tmp/baseinit-valgrind.XXXXXX)"
log="$work/log"
scenario=
cleanup() {
    # The watchdog's timeout, then unshare --kill-child, take the whole
    # namespace with them.
    if [ -n "$scenario" ] && kill -0 "$scenario" 2>/dev/null; then
        kill -KILL "$scenario" 2>/dev/null || true
        wait "$scenario" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/service/web" "$work/service/crash"
printf '#!/bin/sh\necho up >> %s/web.starts\nexec sleep 60\n' "$work" >"$work/service/web/run"
printf '#!/bin/sh\necho start >> %s/crash.starts\nexit 1\n' "$work" >"$work/service/crash/run"
chmod +x "$work/service/web/run" "$work/service/crash/run"

timeout --signal=KILL "$budget" \
    unshare --user --map-root-user --pid --fork --mount-proc --kill-child \
    valgrind --tool=memcheck --error-exitcode=99 --trace-children=no --child-silent-after-fork=yes \
    "$bin" --verbose \
    --service-dir "$work/service" --startup-dir "$work/startup" --rc-local "$work/rc.local" \
    --env-dir "$work/container_environment" --runtime-dir "$work/run" \
    --pre-shutdown-dir "$work/pre_shutdown.d" --post-shutdown-dir "$work/post_shutdown.d" \
    >"$log" 2>&1 &
scenario=$!

fail() {
    echo "valgrind: $*; baseinit's log:" >&2
    cat "$log" >&2
    exit 1
}
# Polls until `$@` succeeds, within the budget.
wait_until() {
    local what=$1
    shift
    until "$@"; do
        [ $((SECONDS - started)) -lt "$budget" ] || fail "timed out waiting for $what"
        kill -0 "$scenario" 2>/dev/null || fail "baseinit ended while waiting for $what"
        sleep 0.2
    done
}
# The only child of process $1.
child_of() {
    local kids
    kids="$(cat "/proc/$1/task/$1/children" 2>/dev/null)" && [ -n "$kids" ] && echo "${kids%% *}"
}
lines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
sv() { SVDIR="$work/service" timeout 70 "$bin" sv "$@"; }

wait_until "unshare" child_of "$scenario" >/dev/null
unshare_pid="$(child_of "$scenario")"
wait_until "baseinit" child_of "$unshare_pid" >/dev/null
baseinit_pid="$(child_of "$unshare_pid")"
wait_until "web to start" lines "$work/web.starts" 1
wait_until "crash to start three times" lines "$work/crash.starts" 3
wait_until "web's runit state" test -e "$work/service/web/supervise/status"

sv -w 60 down web || fail "sv down web failed"
sv status web | grep -q '^down: ' || fail "web is not down: $(sv status web)"
sv -w 60 up web || fail "sv up web failed"
wait_until "web to start again" lines "$work/web.starts" 2
sv status web | grep -q '^run: ' || fail "web does not run: $(sv status web)"

kill -TERM "$baseinit_pid"
code=0
wait "$scenario" || code=$?
scenario=
grep -q 'children start by fork' "$log" || fail "baseinit did not start its children by fork"
grep -q '^==1== ERROR SUMMARY' "$log" || fail "no error summary from valgrind"
case $code in
0)
    sed -n '/^==1== HEAP SUMMARY/,$p' "$log"
    echo "valgrind: passed in $((SECONDS - started)) s"
    ;;
99) fail "memcheck found errors" ;;
*) fail "exit code $code" ;;
esac
