#!/bin/sh
# The one child of the single-child inits (tini, dumb-init, catatonit and the
# C baseline): starts every service of the directory in $1 in the background,
# the way a multi-process container without a supervisor does, and on SIGTERM
# or SIGINT passes SIGTERM to each and waits for them. It restarts nothing.
pids=
for d in "$1"/*/; do
    (cd "$d" && exec ./run) &
    pids="$pids $!"
done
trap 'kill -TERM $pids 2>/dev/null; wait' TERM INT
wait
