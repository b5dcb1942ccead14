"""The Ray engine on a real two-node cluster (loopback, private namespaces): both nodes join on 127.0.0.1 and
run tasks; the same bytes as the local engine for encode, generate and augment; a lost worker's shards
retried; a killed driver resumed; and nothing outlives the cluster.

One cluster serves every scenario (a start costs ~30 s here). The local reference runs in this process.
"""

from __future__ import annotations

import json
import os
import re
from functools import partial
from pathlib import Path

from isolated import BIN, cluster_prelude, require_isolation, run_isolated
from test_generate_models import mt5_dir  # noqa: F401  (the tiny random mT5 fixture)
from typer.testing import CliRunner

from xdr.artifacts import read_meta
from xdr.augment import augment
from xdr.cli import app
from xdr.config import ModelSpec
from xdr.data import read_passages
from xdr.encode import EncoderLoader, encode_passages
from xdr.engine import EngineSettings
from xdr.generate import make_generator, run_generation

LOCAL = EngineSettings(threads=1)
N, SHARD = 24, 3  # 8 shards
SLOW_SHARDS = 3  # shards the slow runs write before a worker or the driver is killed

DRIVER = """
import json, sys, time
from functools import partial
from pathlib import Path
from xdr.augment import augment
from xdr.config import ModelSpec
from xdr.data import read_passages
from xdr.encode import EncoderLoader, encode_passages
from xdr.engine import EngineSettings
from xdr.generate import make_generator, run_generation

root, scenario = Path(sys.argv[1]), sys.argv[2]
args = json.loads((root / "args.json").read_text())
spec = ModelSpec(**args["spec"])
RAY = EngineSettings(kind="ray", threads=1)


class Slow:
    '''The tiny BERT, a second per shard: slow enough to kill something mid-job.'''

    def __init__(self, loader):
        self.loader, self.spec, self._enc = loader, loader.spec, None

    @property
    def dim(self):
        return self.encoder.dim

    @property
    def encoder(self):
        self._enc = self._enc or self.loader()
        return self._enc

    def encode(self, texts, kind, **kw):
        time.sleep(1.0)
        return self.encoder.encode(texts, kind, **kw)


corpus = root / "corpus.jsonl"
if scenario == "stages":
    import ray

    ray.init()  # the engine joins this connection

    @ray.remote
    def where():
        return ray.get_runtime_context().get_node_id()

    alive = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    print("nodes", alive, len({ray.get(where.options(resources={r: 0.5}).remote()) for r in ("head", "second")}))
    encode_passages(read_passages(corpus), EncoderLoader(spec), root / "ray/enc", shard_size=3, engine=RAY,
                    progress=False)
    gen = partial(make_generator, "seq2seq", model=args["mt5"], device="cpu", batch_size=4)
    run_generation(read_passages(corpus), gen, root / "ray/gen", langs=["de", "ja"], n=2, shard_size=3,
                   engine=RAY, progress=False)
    augment(root / "ray/enc", root / "ray/gen", root / "ray/aug", chunk_size=2, engine=RAY, progress=False)
else:  # a slow encode into root/scenario
    encode_passages(read_passages(corpus), Slow(EncoderLoader(spec)), root / scenario, shard_size=3,
                    engine=RAY, progress=False)
print("driver done", scenario)
"""

SCRIPT = """
cd "$ROOT"
echo "namespace $(readlink /proc/self/ns/pid)"
test -n "$RAYLET_0" && test -n "$RAYLET_1" && test "$RAYLET_0" != "$RAYLET_1"
shards() {{ ls "$1"/part-*.npy 2>/dev/null | wc -l; }}
wait_shards() {{ for _ in $(seq 600); do [ "$(shards "$1")" -ge {n} ] && return 0; sleep 0.1; done; return 1; }}
echo "cluster up: $SECONDS s"
"$PY" driver.py "$ROOT" stages
echo "stages done: $SECONDS s"
# the command line's switch: `xdr encode --engine ray` joins the running cluster
"$PY" -m xdr encode corpus.jsonl --model "$TINY" --pooling cls --shard-size 3 --engine ray --workers 2 \
    --threads 1 --out cli-ray
echo "cli done: $SECONDS s"
# a lost worker: kill the second node's worker processes (Ray's actors, not the node's agents) mid-job
"$PY" driver.py "$ROOT" fault & job=$!
wait_shards fault
victims=$(pgrep -P "$RAYLET_1" -f '^ray::_Worker' || true)
test -n "$victims"
kill -9 $victims
echo "killed workers: $(echo $victims | wc -w)"
wait $job
echo "fault done: $SECONDS s"
# a killed driver: kill it mid-job, note the finished shards, run it again
"$PY" driver.py "$ROOT" resume & job=$!
wait_shards resume
kill -9 $job; wait $job || true
sleep 2
stat -c '%n %i %Y' resume/part-*.npy > resume-before.txt
"$PY" driver.py "$ROOT" resume
stat -c '%n %i %Y' resume/part-*.npy > resume-after.txt
"""


def _pid_namespace(proc: Path) -> str | None:
    try:
        return os.readlink(proc / "ns" / "pid")
    except OSError:
        return None


def _corpus(root: Path) -> Path:
    path = root / "corpus.jsonl"
    lines = [{"id": f"p{i}", "title": f"Title {i % 3}", "text": f"Passage {i} on the quick brown fox, topic {i % 5}."}
             for i in range(N)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _shard_bytes(d: Path) -> dict[str, bytes]:
    """Every data shard of an artifact, by name: the bytes two engines must agree on."""
    return {p.name: p.read_bytes() for p in sorted(d.glob("part-*")) + sorted(d.glob("*.npy"))}


def _same_artifact(a: Path, b: Path) -> None:
    assert (a / "_DONE").exists() and (b / "_DONE").exists()
    left, right = _shard_bytes(a), _shard_bytes(b)
    assert sorted(left) == sorted(right)
    assert [name for name in left if left[name] != right[name]] == []
    assert _scrubbed(a, "/local/") == _scrubbed(b, "/ray/")


def _scrubbed(d: Path, folder: str) -> str:
    """The meta without what differs by construction: the run ids of the inputs and the folder they sit in."""
    return re.sub(r'"run_id": "\w+"', '"run_id": ""', json.dumps(read_meta(d)).replace(folder, "/"))


def test_ray_engine_on_two_nodes_matches_local(tmp_path: Path, tiny_bert_dir: Path, mt5_dir: Path) -> None:  # noqa: F811
    require_isolation()
    root = tmp_path
    corpus = _corpus(root)
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), normalize=True)
    (root / "args.json").write_text(json.dumps({"spec": spec.model_dump(), "mt5": str(mt5_dir)}))
    (root / "driver.py").write_text(DRIVER)

    # the local engine's artifacts, the reference
    local = root / "local"
    passages = list(read_passages(corpus))
    encode_passages(passages, EncoderLoader(spec), local / "enc", shard_size=SHARD, engine=LOCAL, progress=False)
    gen = partial(make_generator, "seq2seq", model=str(mt5_dir), device="cpu", batch_size=4)
    run_generation(passages, gen, local / "gen", langs=["de", "ja"], n=2, shard_size=SHARD, engine=LOCAL,
                   progress=False)
    augment(local / "enc", local / "gen", local / "aug", chunk_size=2, engine=LOCAL, progress=False)

    script = cluster_prelude([{"CPU": 1, "head": 1}, {"CPU": 1, "second": 1}]) + (
        f'export ROOT="{root}" PY="{BIN}/python" TINY="{tiny_bert_dir}"\n' + SCRIPT.format(n=SLOW_SHARDS)
    )
    result = run_isolated(script, root, timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    # two nodes on loopback, and a task pinned to each ran on two different nodes
    assert "nodes ['127.0.0.1', '127.0.0.1'] 2" in result.stdout
    namespace = re.search(r"^namespace (pid:\[\d+\])$", result.stdout, re.M)
    assert namespace is not None
    survivors = [p for p in Path("/proc").glob("[0-9]*") if _pid_namespace(p) == namespace.group(1)]
    assert survivors == []  # the kernel killed Ray's daemons with the namespace

    for name in ("enc", "gen", "aug"):
        _same_artifact(local / name, root / "ray" / name)
    cli = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(tiny_bert_dir), "--pooling", "cls",
                                   "--shard-size", "3", "--out", str(local / "cli")])
    assert cli.exit_code == 0, cli.output
    assert _shard_bytes(local / "cli") == _shard_bytes(root / "cli-ray")
    assert len(list((local / "gen").glob("part-*.parquet"))) == N // SHARD

    # lost workers: restarted and their shards retried; every row once, the same bytes
    assert "killed workers: " in result.stdout and "driver done fault" in result.stdout
    for name in ("fault", "resume"):
        left, right = _shard_bytes(local / "enc"), _shard_bytes(root / name)
        assert sorted(left) == sorted(right) and all(left[k] == right[k] for k in left)
        assert read_meta(root / name)["rows"] == N

    # the killed driver's finished shards were kept, not recomputed; only the others were
    before, after = ({name: inode for name, inode in (line.split(" ", 1) for line in
                      (root / f"resume-{when}.txt").read_text().splitlines())} for when in ("before", "after"))
    kept = [name for name in before if after.get(name) == before[name]]
    assert len(kept) == len(before) >= SLOW_SHARDS
    assert len(after) == N // SHARD and len(after) - len(kept) >= 1  # the rest was computed by the rerun
