#!/usr/bin/env python3
"""Prints the crun container that runs a devbox: `<data>/boxes/<prefix><devbox id>` is the box
itself (a box made cold) or a symlink to the warm-pool box it was given (`<prefix>wp_…`), so
the container is that link's target, else the entry's own name. Exits non-zero with a message
when there is no such box or its container is not running (benchmarks must fail loudly).

    bench/box_container.py <data dir> <devbox id>
"""
import os
import subprocess
import sys


def container_of(data_dir: str, devbox_id: str) -> str:
    boxes = os.path.join(os.path.abspath(data_dir), "boxes")
    # <prefix> is "dx" + FNV-1a of the data dir + "-" (CrunBoxRuntime.tag, Sources/Sandbox/CrunBoxRuntime.swift); matching on the
    # id alone avoids recomputing it here.
    entries = [e for e in os.listdir(boxes) if e.startswith("dx") and e.endswith("-" + devbox_id)] \
        if os.path.isdir(boxes) else []
    if len(entries) != 1:
        raise SystemExit(f"box_container: no single box for {devbox_id} under {boxes} (found {entries})")
    path = os.path.join(boxes, entries[0])
    name = os.readlink(path) if os.path.islink(path) else entries[0]
    state = subprocess.run(["crun", "state", name], capture_output=True, text=True)
    if state.returncode != 0 or '"running"' not in state.stdout:
        raise SystemExit(f"box_container: container {name} of {devbox_id} is not running: "
                         f"{(state.stderr or state.stdout).strip()}")
    return name


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(container_of(sys.argv[1], sys.argv[2]))
