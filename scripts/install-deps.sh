#!/usr/bin/env bash
# Installs the Debian packages devbox needs to build, run and test. Idempotent and quiet
# when everything is already there.
set -euo pipefail
# zlib1g-dev: async-http-client's decompression module (swift-nio-extras) links libz.
# nftables: the per-box network policy (Sources/Sandbox/Network/BoxNetworks.swift).
want=(crun catatonit libsqlite3-dev zlib1g-dev libcurl4-openssl-dev libssl-dev iptables iproute2 nftables git debootstrap
      openssh-client openssh-sftp-server tmux procps)
if [ "${1:-}" = "--test" ]; then
  # chromium + chromium-driver: the dashboard's browser tests (Tests/e2e/test_dashboard.py);
  # openssl: the SDK's TLS test (a self-signed certificate and `openssl s_server`)
  # systemd: `systemd-analyze verify` of the unit (Tests/e2e/test_operations.py); installing the
  # package does not make systemd PID 1 or start anything in a container
  want+=(wrk hyperfine chromium chromium-driver openssl systemd)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
