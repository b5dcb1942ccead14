"""Share a trained model on the Hugging Face Hub, with a model card written from what xdr recorded.

huggingface_hub does the transfer: ``HfApi.create_repo``, then one ``HfApi.create_commit`` holding the
model's files and the card, so the repository never shows the model without its card (nor the generic
README that sentence-transformers saves beside a model, which is left out). What stays hand-written is the
card's text: its facts come from the training run's ``meta.json`` (base model, training sources, trainer
settings, the run's result) and from ``xdr evaluate`` reports (XQuAD-R, XOR-TyDi or any other set), which
no library knows how to read.

A model trained by xdr is the ``model/`` directory of a ``train`` or ``train-generator`` run (what
``xdr train`` prints); the run's ``meta.json`` is one level up, and ``report.json`` files in the run
directory or one level below it (e.g. ``xdr evaluate ... --out RUN/eval``) are found there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdr.artifacts import META, is_done, read_meta
from xdr.errors import XdrError
from xdr.models.registry import KNOWN
from xdr.version import __version__

CARD = "README.md"
REPORT = "report.json"
TRAINED_STAGES = {"train": "dual encoder", "train-generator": "query generator"}
# params shown in their own card sections rather than in the settings table
_BASE_KEYS = ("spec", "model", "revision", "model_fingerprint")
_COUNTS = ("rows", "skipped", "train_pairs", "eval_pairs", "data_sha256", "eval_set")
_DATA_KEYS = ("sources", "eval_sources", *_COUNTS)


@dataclass(frozen=True)
class TrainedModel:
    """A model directory and the record of the run that trained it (empty when xdr did not train it)."""

    model_dir: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path | None:
        return self.model_dir.parent if self.meta else None


def locate_model(path: str | Path) -> TrainedModel:
    """The model at ``path`` with its training record; an unfinished run is refused."""
    p = Path(path)
    if not p.is_dir():
        raise XdrError(f"{p}: no such model directory")
    if (p / META).exists():
        stage = read_meta(p).get("stage")
        raise XdrError(f"{p}: is a {stage} run directory; push the model directory inside it (the path "
                       "`xdr train` printed)")
    if not (p.parent / META).exists():
        return TrainedModel(p)
    meta = read_meta(p.parent)
    if meta.get("stage") not in TRAINED_STAGES:
        return TrainedModel(p)  # the parent is some other artifact: nothing of it describes this model
    if not is_done(p.parent):
        raise XdrError(f"{p.parent}: training has not finished; rerun the same command to resume it, then push")
    return TrainedModel(p, meta)


def find_reports(model: TrainedModel, given: Sequence[str | Path] = ()) -> dict[str, dict[str, Any]]:
    """Evaluation reports by label: ``given`` ones (a report.json or a directory holding one), then those
    in the run directory or one level below it. A report is labelled with its directory's name (as given) or
    its directory relative to the run, never with the local path above it."""
    paths: dict[str, Path] = {}

    def add(label: str, path: Path) -> None:
        unique, n = label, 2
        while unique in paths:
            unique, n = f"{label} ({n})", n + 1
        paths[unique] = path

    for g in given:
        p = Path(g) / REPORT if Path(g).is_dir() else Path(g)
        if not p.is_file():
            raise XdrError(f"{g}: no {REPORT} (write one with `xdr evaluate ... --out DIR`)")
        add(p.resolve().parent.name, p)
    if model.run_dir is not None:
        run, seen = model.run_dir, {q.resolve() for q in paths.values()}
        for p in sorted([run / REPORT, *run.glob(f"*/{REPORT}")]):
            if p.is_file() and p.parent != model.model_dir and p.resolve() not in seen:
                add(p.parent.relative_to(run).as_posix() if p.parent != run else run.name, p)
    reports = {}
    for label, p in paths.items():
        try:
            report = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise XdrError(f"{p}: not JSON ({e})") from None
        if not isinstance(report, dict) or not {"macro", "languages"} <= report.keys():
            raise XdrError(f"{p}: not an xdr evaluation report (no macro scores or languages)")
        md = p.with_suffix(".md")
        reports[label] = {**report, "markdown": md.read_text(encoding="utf-8") if md.is_file() else None}
    return reports


def _cell(value: Any) -> str:
    """A value for a Markdown table cell: empty for None, JSON for structures, pipes and newlines escaped."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("|", "\\|").replace("\n", "\\n")


def _table(rows: Sequence[tuple[Any, ...]], header: tuple[str, ...]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)]


def _base(params: Mapping[str, Any]) -> tuple[str, str | None, list[str]]:
    """The base model as the card names it, its hub id (None for a local or embedded model) and the card
    lines describing it. Whether it came from the hub is what the run recorded, not a guess from the name:
    a hub model's fingerprint is its revision; a local directory's is a checksum, under its absolute path,
    which the card shortens to the directory's name."""
    if "spec" in params:
        spec = params["spec"]
        name, fingerprint = spec["name"], spec.get("fingerprint") or ""
        hub_id = name if fingerprint.startswith("hub:") else None
        lines = [f"- weights fingerprint: `{fingerprint or 'unknown'}`",
                 f"- pooling `{spec.get('pooling')}`, normalised: {spec.get('normalize')}"]
    else:
        name = params.get("model", "unknown")
        local = params.get("model_fingerprint")
        hub_id = None if local else name
        lines = [f"- weights fingerprint: `{local.get('blake2b')}`" if local else
                 f"- revision: `{params.get('revision') or 'default'}`"]
    if name in KNOWN:
        lines.insert(0, f"- {KNOWN[name].description}")
    shown = name if hub_id or name in KNOWN else f"{Path(name).name} (a local directory)"
    return shown, hub_id, lines


def _sources(records: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if k != "path"]
    rows = [(Path(r["path"]).name if r.get("path") else "(in memory)", *(r.get(k, "") for k in keys))
            for r in records]
    return _table(rows, ("file", *keys))


def _languages(meta: Mapping[str, Any], reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    params = meta.get("params", {})
    langs = {r.get("lang") for r in [*params.get("sources", []), *params.get("eval_sources", [])]}
    langs |= {lang for report in reports.values() for lang in report.get("languages", [])}
    return sorted(lang for lang in langs if isinstance(lang, str) and lang)


def _card_data(meta: Mapping[str, Any], hub_id: str | None, reports: Mapping[str, Mapping[str, Any]]) -> str:
    """The YAML front matter the Hub indexes (library, task, languages, base model), via huggingface_hub."""
    from huggingface_hub import ModelCardData

    generator = meta.get("stage") == "train-generator"
    return ModelCardData(
        language=_languages(meta, reports) or None,
        library_name="transformers" if generator else "sentence-transformers",
        pipeline_tag="text2text-generation" if generator else "sentence-similarity",
        tags=["xdr", "query-generation" if generator else "cross-lingual-retrieval"],
        base_model=hub_id,
    ).to_yaml()


def model_card(repo_id: str, meta: Mapping[str, Any], reports: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The README.md of a pushed model: base model, training data, settings, result, evaluation, usage.

    ``meta`` is the training run's ``meta.json`` (empty for a model xdr did not train); ``reports`` maps a
    label to a ``report.json`` (as :func:`find_reports` returns them, optionally with its Markdown table).
    """
    reports = reports or {}
    params = meta.get("params", {})
    stage = meta.get("stage")
    base, hub_id, base_lines = _base(params) if stage in TRAINED_STAGES else ("", None, [])
    lines = ["---", _card_data(meta, hub_id, reports).strip(), "---", "", f"# {repo_id}", ""]
    if stage in TRAINED_STAGES:
        lines += [f"A {TRAINED_STAGES[stage]} fine-tuned from **{base}** with "
                  f"[xdr](https://pypi.org/project/xdr/) (`xdr {stage}`, xdr {meta.get('xdr_version', '?')}).", "",
                  "## Base model", "", f"- `{base}`", *base_lines, "", "## Training data", ""]
        lines += [*_sources(params.get("sources", [])), ""]
        if params.get("eval_sources"):
            lines += ["Held-out evaluation data:", "", *_sources(params["eval_sources"]), ""]
        lines += [f"- {k}: `{_cell(params[k])}`" for k in _COUNTS if params.get(k) is not None] + [""]
        settings = [(k, v) for k, v in params.items() if k not in _BASE_KEYS + _DATA_KEYS]
        lines += ["## Training settings", "", *_table(settings, ("setting", "value")), ""]
        result = meta.get("result") or {}
        flat = [(f"{k}.{k2}", v2) for k, v in result.items() if isinstance(v, dict) for k2, v2 in v.items()]
        flat = [(k, v) for k, v in result.items() if not isinstance(v, dict)] + flat
        if flat:
            lines += ["## Training result", "", *_table(flat, ("metric", "value")), ""]
    else:
        lines += ["Uploaded with [xdr](https://pypi.org/project/xdr/); xdr holds no training record for it.", ""]
    lines += _evaluation(reports)
    lines += _usage(repo_id, meta)
    lines += [f"<sub>Card written by xdr {__version__} from the training run's meta.json and evaluation "
              "reports.</sub>", ""]
    return "\n".join(lines)


def _evaluation(reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not reports:
        return []
    lines = ["## Evaluation", "", "Scores in percent; avg is the unweighted mean over languages.", ""]
    for label, r in reports.items():
        lines += [f"### {r.get('name', 'system')} (`{label}`)", ""]
        if r.get("markdown"):  # the table `xdr evaluate` wrote beside the report
            lines += [r["markdown"].strip(), ""]
        else:
            rows = [("avg", *(f"{r['macro'][m]:.2f}" for m in r["macro"]))]
            lines += [*_table(rows, ("lang", *r["macro"])), "", f"Languages: {', '.join(r['languages'])}.", ""]
    return lines


def _usage(repo_id: str, meta: Mapping[str, Any]) -> list[str]:
    if meta.get("stage") == "train-generator":
        return ["## Usage", "", "```bash",
                f"xdr generate run corpus.jsonl --generator seq2seq --model {repo_id} --langs de,ja --n 5 --out gen",
                "```", ""]
    spec = meta.get("model_spec") or {}
    query = json.dumps(spec.get("query_prefix", "") + "Where does the Nile end?", ensure_ascii=False)
    passage = json.dumps(spec.get("passage_prefix", "") + "The Nile flows into the Mediterranean.", ensure_ascii=False)
    return ["## Usage", "", "```bash", f"xdr encode corpus.jsonl --model {repo_id} --out emb", "```", "",
            "```python", "from sentence_transformers import SentenceTransformer", "",
            f'model = SentenceTransformer("{repo_id}")', f"queries = model.encode([{query}])",
            f"passages = model.encode([{passage}])", "```", "",
            *([f"Queries are cut at {spec['query_max_length']} tokens and passages at "
               f"{spec['passage_max_length']}, as in training."] if spec else []), ""]


def hub_token(token: str | None = None) -> str:
    """``token``, else ``$HF_TOKEN`` or the saved login; refused before any work when there is none."""
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise XdrError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`")
    return found


def check_repo_id(repo_id: str) -> str:
    """``owner/name``, checked before anything is uploaded (or trained)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise XdrError(f"--repo {repo_id!r}: {str(e).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise XdrError(f"--repo {repo_id!r}: expected OWNER/NAME, e.g. your-user/me5-small-xquad")
    return repo_id


def push_model(
    model: str | Path,
    repo_id: str,
    *,
    reports: Sequence[str | Path] = (),
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    message: str | None = None,
) -> str:
    """Upload the model directory ``model`` and its card to ``repo_id`` (created if missing) in one commit;
    return the commit's URL. ``endpoint`` defaults to ``$HF_ENDPOINT``, then huggingface.co."""
    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id)
    trained = locate_model(model)
    card = model_card(repo_id, trained.meta, find_reports(trained, reports))
    files = sorted(p for p in trained.model_dir.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(trained.model_dir).parts)
                   and p.relative_to(trained.model_dir).as_posix() != CARD)
    operations = [CommitOperationAdd(p.relative_to(trained.model_dir).as_posix(), str(p)) for p in files]
    operations.append(CommitOperationAdd(CARD, card.encode("utf-8")))
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=hub_token(token))
    try:
        api.create_repo(repo_id, private=private or None, exist_ok=True)
        commit = api.create_commit(repo_id, operations,
                                   commit_message=message or f"Upload {trained.model_dir.name} with xdr {__version__}")
    except (HfHubHTTPError, httpx.HTTPError) as e:
        raise XdrError(f"pushing to {repo_id} at {api.endpoint} failed: {str(e).splitlines()[0]}") from None
    return commit.commit_url
