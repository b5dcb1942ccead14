"""Pushing a trained model to the Hugging Face Hub, against a local stand-in for the Hub's HTTP API.

The stand-in implements the endpoints huggingface_hub's ``create_repo`` and ``create_commit`` call
(``/api/repos/create``, ``/api/validate-yaml``, ``.../preupload/{rev}``, ``.../commit/{rev}``) and answers
"regular" for every file in ``preupload``, so file contents arrive base64-encoded in the commit's NDJSON.
huggingface_hub itself runs unchanged: its requests, payloads and error handling are the real ones.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from xdr.artifacts import META, mark_done, start_artifact, write_json_atomic
from xdr.cli import app
from xdr.errors import XdrError
from xdr.models import hub

TOKEN = "hf_test_token"


@dataclass
class StandInHub:
    """What the stand-in received: every request, the repositories and their committed files."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    fail_create: int | None = None  # answer /api/repos/create with this status


def _handler(state: StandInHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

        def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, dict(self.headers)))
            self._reply(404, {"error": "not in the stand-in"})

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path, dict(self.headers)))
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["api", "repos", "create"]:
                payload = json.loads(body)
                state.created.append(payload)
                if state.fail_create:
                    return self._reply(state.fail_create, {"error": "Invalid credentials in Authorization header"})
                repo_id = f"{payload['organization']}/{payload['name']}"
                if repo_id in state.repos:
                    return self._reply(409, {"error": "You already created this model repo", "url": repo_id})
                state.repos[repo_id] = {}
                return self._reply(200, {"url": f"{state.url}/{repo_id}"})
            if parts == ["api", "validate-yaml"]:
                return self._reply(200, {"errors": [], "warnings": []})
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
                repo_id = f"{parts[2]}/{parts[3]}"
                if repo_id not in state.repos:
                    return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                if parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                        for f in files]})
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(x["value"] for x in lines if x["key"] == "header")
                files = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                         for x in lines if x["key"] == "file"}
                assert all(x["key"] in ("header", "file") for x in lines), lines
                state.repos[repo_id].update(files)
                oid = f"{len(state.commits) + 1:040x}"
                state.commits.append({"repo": repo_id, "revision": parts[5], "summary": header["summary"],
                                      "files": files, "authorization": self.headers.get("Authorization")})
                return self._reply(200, {"commitUrl": f"{state.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                         "pullRequestUrl": None})
            return self._reply(404, {"error": "not in the stand-in"})

    return Handler


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInHub]:
    """The stand-in Hub on 127.0.0.1 in a thread, stopped after the test; HF_ENDPOINT and HF_TOKEN point at it."""
    state = StandInHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# --- the card ---------------------------------------------------------------------------------------------------

DUAL_META: dict[str, Any] = {
    "stage": "train",
    "xdr_version": "0.9.0",
    "params": {
        "spec": {"name": "intfloat/multilingual-e5-small", "path": "intfloat/multilingual-e5-small",
                 "fingerprint": "hub:intfloat/multilingual-e5-small@abc123", "pooling": "mean", "normalize": True,
                 "query_prefix": "query: ", "passage_prefix": "passage: ", "query_max_length": 64,
                 "passage_max_length": 256},
        "sources": [{"path": "/data/xquad/de.json", "bytes": 1234, "blake2b": "b2-de", "format": "squad",
                     "lang": "de"},
                    {"path": "/data/swim/ja.jsonl", "bytes": 99, "blake2b": "b2-ja", "format": "swimir", "lang": None}],
        "rows": 5355, "skipped": 2, "data_sha256": "d5", "eval_set": None,
        "negatives_per_query": 0, "loss": "mnrl", "similarity": "cos", "scale": 20.0, "lr": 1e-05,
        "batch_size": 32, "epochs": 1.0, "seed": 42, "dtype": "float32",
    },
    "result": {"global_step": 168, "training_loss": 0.41, "eval": {"dev_cosine_mrr@10": 0.87}},
    "model_spec": {"name": "runs/me5-ft/model", "query_prefix": "query: ", "passage_prefix": "passage: ",
                   "query_max_length": 64, "passage_max_length": 256},
}
REPORT: dict[str, Any] = {"name": "me5-ft", "languages": ["de", "el"], "measures": ["R@1", "RR@10"],
                          "macro": {"R@1": 80.5, "RR@10": 86.25},
                          "per_language": {"R@1": {"de": 84.0, "el": 77.0}, "RR@10": {"de": 90.0, "el": 82.5}}}


def test_card_records_base_model_data_settings_result_and_scores() -> None:
    card = hub.model_card("me/me5-xq", DUAL_META, {"eval": {**REPORT, "markdown": None}})
    meta = _front_matter(card)
    assert meta["base_model"] == "intfloat/multilingual-e5-small"
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "sentence-similarity"
    assert meta["language"] == ["de", "el"] and "xdr" in meta["tags"]
    body = card.split("---\n", 2)[2]
    assert "# me/me5-xq" in body and "fine-tuned from **intfloat/multilingual-e5-small**" in body
    assert "multilingual E5 small (118M), hub" in body  # the registry's description of the base model
    assert "`hub:intfloat/multilingual-e5-small@abc123`" in body
    # training data: each source file with its fingerprint, format and language, and the row count
    assert "| de.json | 1234 | b2-de | squad | de |" in body and "| ja.jsonl | 99 | b2-ja | swimir |  |" in body
    assert "/data/xquad" not in body  # file names, not the trainer's directories
    assert "- rows: `5355`" in body
    # settings: the trainer config as recorded, not the parts shown above
    for row in ("| lr | 1e-05 |", "| loss | mnrl |", "| scale | 20.0 |", "| batch_size | 32 |"):
        assert row in body
    assert "| spec |" not in body and "| sources |" not in body
    assert "| global_step | 168 |" in body and "| eval.dev_cosine_mrr@10 | 0.87 |" in body
    # evaluation: the report's macro scores under its name
    assert "### me5-ft (`eval`)" in body and "| avg | 80.50 | 86.25 |" in body
    assert 'model.encode(["query: Where does the Nile end?"])' in body


def test_card_for_a_generator_and_for_a_model_without_record() -> None:
    gen_meta = {"stage": "train-generator", "xdr_version": "0.9.0",
                "params": {"model": "google/mt5-base", "revision": None, "model_fingerprint": None, "prompt": "a|b",
                           "sources": [{"path": None, "pairs": 4}], "eval_sources": [], "train_pairs": 4,
                           "eval_pairs": 0, "lr": 0.0001},
                "result": {"global_step": 30}}
    card = hub.model_card("me/qgen", gen_meta)
    meta = _front_matter(card)
    assert meta["base_model"] == "google/mt5-base" and meta["pipeline_tag"] == "text2text-generation"
    assert "A query generator fine-tuned from **google/mt5-base**" in card
    assert "| (in memory) | 4 |" in card and "| prompt | a\\|b |" in card  # a pipe in a value keeps the table
    assert "xdr generate run corpus.jsonl --generator seq2seq --model me/qgen" in card
    assert "## Evaluation" not in card

    def with_base(name: str, fingerprint: str) -> dict[str, Any]:
        spec = {**DUAL_META["params"]["spec"], "name": name, "fingerprint": fingerprint}
        return {**DUAL_META, "params": {**DUAL_META["params"], "spec": spec}}

    card = hub.model_card("me/x", with_base("me5-small", "0f" * 32))
    assert "base_model" not in _front_matter(card)  # not a hub model: the Hub would reject it
    assert "fine-tuned from **me5-small**" in card and "rebuilt offline from PyPI" in card
    card = hub.model_card("me/x", with_base("/home/someone/models/tiny-bert", "0f" * 32))
    assert "base_model" not in _front_matter(card)
    assert "fine-tuned from **tiny-bert (a local directory)**" in card and "/home/someone" not in card
    gen_local = {**gen_meta, "params": {**gen_meta["params"], "model": "/home/someone/mt5",
                                        "model_fingerprint": {"path": "/home/someone/mt5", "blake2b": "b2"}}}
    card = hub.model_card("me/x", gen_local)
    assert "base_model" not in _front_matter(card) and "**mt5 (a local directory)**" in card
    assert "/home/someone" not in card and "`b2`" in card

    bare = hub.model_card("me/bare", {})
    assert "no training record" in bare and "## Training" not in bare


# --- which model, which reports -------------------------------------------------------------------------------------


def _fake_run(out: Path, stage: str = "train", meta: dict[str, Any] | None = None, done: bool = True) -> Path:
    """A training run's directory as xdr leaves it: meta.json, model/ and _DONE."""
    meta = meta or DUAL_META
    start_artifact(out, stage, meta["params"])
    model = out / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}\n')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}\n')
    (model / "README.md").write_text("generic card written by sentence-transformers\n")
    (model / ".cache").mkdir()
    (model / ".cache" / "junk").write_text("x")
    write_json_atomic(out / META, {**json.loads((out / META).read_text()), "result": meta.get("result"),
                                   "model_spec": meta.get("model_spec")})
    if done:
        mark_done(out)
    return model


def test_locate_model_and_find_reports(tmp_path: Path) -> None:
    model = _fake_run(tmp_path / "run")
    with pytest.raises(XdrError, match="is a train run directory; push the model directory inside it"):
        hub.locate_model(tmp_path / "run")
    with pytest.raises(XdrError, match="no such model directory"):
        hub.locate_model(tmp_path / "nope")
    trained = hub.locate_model(model)
    assert trained.meta["stage"] == "train" and trained.run_dir == tmp_path / "run"

    unfinished = _fake_run(tmp_path / "half", done=False)
    with pytest.raises(XdrError, match="training has not finished"):
        hub.locate_model(unfinished)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert hub.locate_model(plain).meta == {}

    assert hub.find_reports(trained) == {}
    write_json_atomic(tmp_path / "run" / "eval" / "report.json", REPORT)
    (tmp_path / "run" / "eval" / "report.md").write_text("| lang | n | R@1 |\n|---|---:|---:|\n| de | 3 | 84.0 |\n")
    elsewhere = tmp_path / "xor" / "report.json"
    write_json_atomic(elsewhere, {**REPORT, "name": "on-xor"})
    reports = hub.find_reports(trained, [elsewhere])
    assert list(reports) == ["xor", "eval"]  # directory names: no local path in a public card
    assert reports["eval"]["markdown"].startswith("| lang | n | R@1 |") and reports["xor"]["markdown"] is None
    also_eval = tmp_path / "other" / "eval"  # the same directory name as the run's own report
    write_json_atomic(also_eval / "report.json", {**REPORT, "name": "other"})
    reports = hub.find_reports(trained, [also_eval, tmp_path / "run" / "eval"])
    assert {k: r["name"] for k, r in reports.items()} == {"eval": "other", "eval (2)": "me5-ft"}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(XdrError, match="not an xdr evaluation report"):
        hub.find_reports(trained, [tmp_path / "bad.json"])
    with pytest.raises(XdrError, match=r"no report\.json"):
        hub.find_reports(trained, [tmp_path])


def test_repo_id_and_token_are_checked_first(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.check_repo_id("me/model") == "me/model"
    for bad in ("me", "me/a/b", "me/bad name", "../x"):
        with pytest.raises(XdrError, match="--repo"):
            hub.check_repo_id(bad)
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(XdrError, match="no Hugging Face token"):
        hub.hub_token()
    assert hub.hub_token("given") == "given"


# --- pushing, against the stand-in ------------------------------------------------------------------------------------


def test_models_push_sends_the_model_files_and_the_card_in_one_commit(stand_in: StandInHub, tmp_path: Path) -> None:
    model = _fake_run(tmp_path / "run")
    write_json_atomic(tmp_path / "run" / "eval" / "report.json", REPORT)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "push", str(model), "--repo", "me/me5-xq"])
    assert result.exit_code == 0, result.output
    assert f"pushed: {stand_in.url}/me/me5-xq/commit/" in result.output

    assert stand_in.created == [{"name": "me5-xq", "organization": "me"}]
    (commit,) = stand_in.commits
    assert commit["repo"] == "me/me5-xq" and commit["revision"] == "main"
    assert commit["authorization"] == f"Bearer {TOKEN}"
    files = stand_in.repos["me/me5-xq"]
    assert sorted(files) == ["1_Pooling/config.json", "README.md", "config.json", "model.safetensors"]
    assert files["model.safetensors"] == (model / "model.safetensors").read_bytes()
    assert files["1_Pooling/config.json"] == (model / "1_Pooling" / "config.json").read_bytes()
    card = files["README.md"].decode()
    assert card == hub.model_card("me/me5-xq", hub.locate_model(model).meta, hub.find_reports(hub.locate_model(model)))
    assert "intfloat/multilingual-e5-small" in card and "| avg | 80.50 | 86.25 |" in card  # report found beside
    assert (model / "README.md").read_text() == "generic card written by sentence-transformers\n"  # untouched
    # what huggingface_hub asked of the Hub (its best-effort GETs, e.g. telemetry, aside)
    assert [path.split("?")[0] for method, path, _ in stand_in.requests if method == "POST"] == [
        "/api/repos/create", "/api/validate-yaml", "/api/models/me/me5-xq/preupload/main",
        "/api/models/me/me5-xq/commit/main"]

    # again, private, with a report given: the existing repository is reused (409 is fine), the card updated
    other = tmp_path / "xor-eval"
    write_json_atomic(other / "report.json", {**REPORT, "name": "on-xor", "macro": {"R@2kt": 44.2}})
    result = runner.invoke(app, ["models", "push", str(model), "--repo", "me/me5-xq", "--private", "--report",
                                 str(other), "--message", "with XOR scores"])
    assert result.exit_code == 0, result.output
    assert stand_in.created[-1] == {"name": "me5-xq", "organization": "me", "visibility": "private"}
    assert stand_in.commits[-1]["summary"] == "with XOR scores"
    card = stand_in.repos["me/me5-xq"]["README.md"].decode()
    assert "### on-xor (`xor-eval`)" in card and "| avg | 44.20 |" in card and str(tmp_path) not in card


def test_hub_errors_are_one_line(stand_in: StandInHub, tmp_path: Path) -> None:
    model = _fake_run(tmp_path / "run")
    stand_in.fail_create = 401
    with pytest.raises(XdrError, match=r"^pushing to me/x at http://127\.0\.0\.1:\d+ failed: .*401") as e:
        hub.push_model(model, "me/x")
    assert "\n" not in str(e.value)
    assert not stand_in.commits


@pytest.mark.slow
def test_train_push_to_hub_trains_then_pushes(stand_in: StandInHub, tmp_path: Path, tiny_bert_dir: Path) -> None:
    train = tmp_path / "train.json"  # DPR format: a question and its positive passage
    train.write_text(json.dumps([
        {"question": f"which {w} question", "answers": [w],
         "positive_ctxs": [{"title": w, "text": f"the {w} passage text"}], "hard_negative_ctxs": []}
        for w in ("fox", "dog", "token", "model")]))
    result = CliRunner().invoke(app, [
        "train", "--model", str(tiny_bert_dir), "--train", f"en:{train}", "--negatives", "0", "--max-steps", "2",
        "--batch-size", "2", "--pooling", "mean", "--query-prefix", "query: ", "--passage-prefix", "passage: ",
        "--device", "cpu", "--out", str(tmp_path / "run"), "--push-to-hub", "me/tiny",
    ])
    assert result.exit_code == 0, result.output
    assert "model: " in result.output and "pushed: " in result.output
    files = stand_in.repos["me/tiny"]
    model = tmp_path / "run" / "model"
    local = sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file())
    assert sorted(files) == sorted({*local, "README.md"})
    assert all(files[name] == (model / name).read_bytes() for name in local if name != "README.md")
    card = files["README.md"].decode()
    assert "| train.json |" in card and "| en |" in card and "| global_step | 2 |" in card
    assert 'model.encode(["query: Where does the Nile end?"])' in card


def test_train_push_to_hub_refuses_a_bad_repo_before_training(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--train", "en:missing.json", "--out", str(tmp_path / "run"),
                                      "--push-to-hub", "not a repo"])
    assert isinstance(result.exception, XdrError) and "--repo 'not a repo'" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_train_generator_push_to_hub(stand_in: StandInHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The option's wiring: whatever `train_generator` returns is pushed with its run's record."""
    import xdr.train.generator

    meta = {"params": {"model": "google/mt5-base", "sources": [{"path": None, "pairs": 4}], "lr": 1e-4},
            "result": {"global_step": 3}}
    calls = []

    def fake_train(sources: Any, model: str, out_dir: Path, config: Any) -> Path:
        calls.append(model)
        return _fake_run(Path(out_dir), "train-generator", meta)

    monkeypatch.setattr(xdr.train.generator, "train_generator", fake_train)
    result = CliRunner().invoke(app, ["train-generator", "--train", "de:x.json", "--out", str(tmp_path / "gen"),
                                      "--push-to-hub", "me/qgen"])
    assert result.exit_code == 0, result.output
    assert calls == ["google/mt5-base"]
    card = stand_in.repos["me/qgen"]["README.md"].decode()
    assert _front_matter(card)["base_model"] == "google/mt5-base" and "A query generator" in card

    # under torchrun, only the first rank pushes
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(app, ["train-generator", "--train", "de:x.json", "--out", str(tmp_path / "gen2"),
                                      "--push-to-hub", "me/qgen-rank1"])
    assert result.exit_code == 0, result.output
    assert "me/qgen-rank1" not in stand_in.repos and "pushed" not in result.output
