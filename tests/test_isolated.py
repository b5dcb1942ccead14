"""The isolated two-node cluster that the Ray tests build on: both nodes join, and nothing outlives it."""

from __future__ import annotations

import os
from pathlib import Path

from isolated import BIN, cluster_prelude, require_isolation, run_isolated


def test_two_nodes_on_loopback_and_torn_down(tmp_path: Path) -> None:
    require_isolation()
    driver = (
        "import ray; ray.init(); nodes = [n for n in ray.nodes() if n['Alive']]\n"
        "print(sorted(n['NodeManagerAddress'] for n in nodes))\n"
        "@ray.remote\ndef where(): return ray.get_runtime_context().get_node_id()\n"
        "print(len({ray.get(where.options(resources={r: 0.5}).remote()) for r in ('a', 'b')}))\n"
    )
    script = cluster_prelude([{"CPU": 1, "a": 1}, {"CPU": 1, "b": 1}]) + (
        "readlink /proc/self/ns/pid\n"
        f'test -n "$RAYLET_0" && test -n "$RAYLET_1" && test "$RAYLET_0" != "$RAYLET_1"\n'
        f"{BIN}/python - <<'PY'\n{driver}PY\n"
    )
    result = run_isolated(script, tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "['127.0.0.1', '127.0.0.1']"
    assert lines[-1] == "2"  # a task pinned to each node ran on two different nodes
    namespace = lines[0]
    assert namespace.startswith("pid:[")
    survivors = [p for p in Path("/proc").glob("[0-9]*") if _pid_namespace(p) == namespace]
    assert survivors == []  # the kernel killed Ray's daemons with the namespace


def _pid_namespace(proc: Path) -> str | None:
    try:
        return os.readlink(proc / "ns" / "pid")
    except OSError:
        return None
