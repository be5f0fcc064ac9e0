#!/usr/bin/env bash
# SSH gateway benchmark against Debian's OpenSSH sshd on the same machine, in one run:
#   connect + `exec true` latency p50 (goal: no slower than sshd) and throughput of 1 GiB
#   through one channel (goal: at least half of sshd's).
# Usage: bench/ssh_bench.sh [runs]   (as root; builds devbox in release mode first)
#   DEVBOX_BIN=path   use an existing binary instead of building
#   SCRATCH=dir       SwiftPM scratch path for the release build (default .build-release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-50}"

if ! [ -x /usr/sbin/sshd ]; then
  echo "installing openssh-server (for the reference sshd)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  # Only our private sshd on its own port is used; do not leave the system one running.
  systemctl disable --now ssh.service >/dev/null 2>&1 || true
fi
for tool in ssh ssh-keygen python3 crun; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps.sh)" >&2; exit 1; }
done
scripts/cgroup-fix.sh >/dev/null 2>&1 || true

if [ -z "${DEVBOX_BIN:-}" ]; then
  scratch="${SCRATCH:-$PWD/.build-release}"
  echo "building devbox (release, scratch $scratch)..." >&2
  swift build -c release --product devbox --scratch-path "$scratch" >&2
  DEVBOX_BIN="$scratch/release/devbox"
fi
exec python3 bench/ssh_bench.py --devbox "$DEVBOX_BIN" --runs "$runs"
