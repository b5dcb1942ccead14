"""`xdr serve --engine ray --replicas 2`: two Ray Serve replicas answer on loopback, inside a private network and
PID namespace (tests/isolated.py), and SIGTERM takes the deployment down."""

from __future__ import annotations

from pathlib import Path

from isolated import BIN, cluster_prelude, require_isolation, run_isolated

from xdr.config import ModelSpec

SRC = Path(__file__).resolve().parents[1] / "src"

DRIVER = """
import concurrent.futures, sys, time, httpx
url = "http://127.0.0.1:8123"
deadline = time.monotonic() + 240
while True:
    try:
        if httpx.get(url + "/readyz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("no ready replica in time")
    time.sleep(1)
def pid(_):
    return httpx.get(url + "/healthz", timeout=30).json()["pid"]
pids = set()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    while len(pids) < 2 and time.monotonic() < deadline:  # the second replica may still be starting
        pids |= set(pool.map(pid, range(32)))
print("replicas", len(pids))
r = httpx.get(url + "/search", params={"q": "Wie lang ist der Nil?", "k": 3}, timeout=60)
print("search", r.status_code, len(r.json()["hits"]))
print("empty", httpx.get(url + "/search", params={"q": ""}, timeout=30).status_code)
"""


def test_two_ray_serve_replicas_answer_on_loopback(tiny_bert_dir: Path, tmp_path: Path) -> None:
    require_isolation()
    from xdr.data.schema import Passage
    from xdr.encode import encode_passages
    from xdr.index import build_index
    from xdr.models.encoder import Encoder

    encoder = Encoder.load(ModelSpec(name="tiny", path=str(tiny_bert_dir)), device="cpu")
    corpus = tmp_path / "corpus.jsonl"
    texts = ["The Nile flows into the Mediterranean.", "Tokyo is the capital of Japan.", "Coffee is brewed."]
    corpus.write_text("".join(f'{{"id": "p{i}", "text": "{t}"}}\n' for i, t in enumerate(texts)))
    emb = encode_passages([Passage(f"p{i}", t) for i, t in enumerate(texts)], encoder, tmp_path / "emb",
                          progress=False)
    index = build_index(emb, tmp_path / "index", use_gpu=False, progress=False)
    (tmp_path / "driver.py").write_text(DRIVER)
    # a slow raylet start on a loaded machine is not a failure; token auth would read ~/.ray, shared with
    # every other cluster on the machine, while this one is reachable from its own namespace only
    env = (f'export PYTHONPATH="{SRC}" OMP_NUM_THREADS=1 RAY_raylet_start_wait_time_s=120 '
           "RAY_AUTH_MODE=disabled\n")
    script = env + cluster_prelude([{"CPU": 2}]) + (
        f'"{BIN}/python" -m xdr serve {index} --corpus {corpus} --texts-cache {tmp_path / "texts"} '
        f'--engine ray --replicas 2 --port 8123 >"$RAY_LOGS/serve.log" 2>&1 &\n'
        "SERVE=$!\n"
        f'"{BIN}/python" {tmp_path / "driver.py"}\n'
        'kill -TERM "$SERVE"; wait "$SERVE"; echo "serve_exit $?"\n'
    )
    result = run_isolated(script, tmp_path, timeout=420)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines() if " " in line)
    assert lines["replicas"] == "2"  # both replicas answered
    assert lines["search"] == "200 3"
    assert lines["empty"] == "422"  # the same app, the same validation, on Ray Serve
    assert lines["serve_exit"] == "0"  # SIGTERM took the deployment down cleanly
