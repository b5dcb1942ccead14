"""Run a script inside a private network and PID namespace, for Ray clusters and servers under test.

Left to itself, Ray binds to the machine's outward-facing address and probes a public one to find it.
Inside ``unshare --net`` only the loopback interface exists, so every node, driver and replica stays on
127.0.0.1. The PID namespace is the teardown guarantee: when the script (its init process) exits or is
killed, the kernel kills every process started inside it, Ray's daemons included, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HEAD_PORT = 6399


def can_isolate() -> bool:
    """Whether this machine lets us create the namespaces (root, or user namespaces, and unshare)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


def require_isolation() -> None:
    """Skip with the reason where namespaces are unavailable; CI runs as root, where they are."""
    if not can_isolate():
        if os.environ.get("CI"):
            pytest.fail("CI must run the isolated cluster tests: `unshare --net --pid` is not available")
        pytest.skip("needs `unshare --net --pid` (root or user namespaces) to keep the cluster on loopback")


def cluster_prelude(nodes: list[dict[str, float]], *, object_store_mb: int = 100) -> str:
    """Bash that brings up loopback and starts a Ray head plus one node per further resource dict.

    Each node gets its CPUs (``CPU`` key) and its custom resources, so a test can pin work to a node.
    The PID of node i's raylet is left in ``$RAYLET_i`` (i = 0 is the head) for fault injection.
    """
    ray = BIN / "ray"
    lines = [
        "set -euo pipefail",
        "ip link set lo up",
        # no token auth: a token file left in ~/.ray by another Ray would turn it on for the head only
        "export RAY_USAGE_STATS_ENABLED=0 RAY_DISABLE_DOCKER_CPU_WARNING=1 RAY_AUTH_MODE=disabled",
        "export RAY_raylet_start_wait_time_s=180",  # a node starts in ~30 s here, minutes on a loaded machine
        f"export RAY_ADDRESS=127.0.0.1:{HEAD_PORT}",
        f'export PATH="{BIN}:$PATH"',
    ]
    for i, resources in enumerate(nodes):
        custom = {k: v for k, v in resources.items() if k != "CPU"}
        common = (
            f"--node-ip-address 127.0.0.1 --num-cpus {int(resources.get('CPU', 1))} --num-gpus 0 "
            f"--object-store-memory {object_store_mb * 1_000_000} --resources '{json.dumps(custom)}'"
        )
        where = f"--head --port {HEAD_PORT} --include-dashboard false --disable-usage-stats" if i == 0 else (
            f"--address 127.0.0.1:{HEAD_PORT}"
        )
        lines += [
            f'before=$(pgrep -x raylet || true); "{ray}" start {where} {common} >"$RAY_LOGS/node{i}.log" 2>&1',
            f"RAYLET_{i}=$(comm -13 <(echo \"$before\" | sort) <(pgrep -x raylet | sort) | head -1)",
            f"export RAYLET_{i}",
        ]
    return "\n".join(lines) + "\n"


def run_isolated(script: str, tmp_path: Path, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (bash) in fresh namespaces; on timeout the whole namespace is killed by PID."""
    logs = tmp_path / "ray-logs"
    logs.mkdir(exist_ok=True)
    path = tmp_path / "isolated.sh"
    path.write_text(script)
    env = {**os.environ, "RAY_LOGS": str(logs)}
    proc = subprocess.Popen(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "bash", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"isolated script timed out after {timeout}s\n{out}\n{err}\n{_tail_logs(logs)}") from None
    if proc.returncode != 0:
        err += "\n" + _tail_logs(logs)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _tail_logs(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
