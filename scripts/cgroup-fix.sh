#!/usr/bin/env bash
# crun refuses cgroup "hybrid mode" while controllers sit in the v2 hierarchy
# (docs: SANDBOX.md trap 1). Move them to v1 once per boot. `devbox serve` does the same
# at start-up; this script lets make and the tests do it up front.
set -eu
f=/sys/fs/cgroup/unified/cgroup.controllers
[ -f "$f" ] || exit 0
for c in $(cat "$f"); do
  mkdir -p "/sys/fs/cgroup/$c"
  mountpoint -q "/sys/fs/cgroup/$c" || mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
done
