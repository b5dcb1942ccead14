"""Vocabulary trimming, so a model fits what travels to a remote machine, and the way back.

me5-small is ~118M parameters, ~96M of them the 250k-piece embedding matrix, of which one corpus and its
query languages use a small fraction (XQuAD-R: ~31k pieces). Trimming keeps only those rows; packing
(:mod:`xdr.models.pack`) then stores what is left compactly.

``trim_model``
    Tokenises the given texts **exactly as given** (the caller adds any prefixes, e.g. ``"query: "`` /
    ``"passage: "`` for E5; or pass ``prefixes=("query: ", "passage: ")`` to tokenise every text once per
    prefix), keeps the pieces that occur plus the special tokens, renumbers them ``0..n-1`` in their old
    order, and writes a standard Hugging Face directory: sliced embedding rows, ``config.json`` with the
    new ``vocab_size`` (and remapped special ids), the trimmed ``tokenizer.json``, the sentence-transformers
    files, and ``trim.json`` (source fingerprint, kept old ids in new-id order, per-piece counts).

    Why covered text tokenises identically: the kept vocabulary is a subset of the old one with the same
    scores. *Unigram* (XLM-R, E5) picks the highest-scoring segmentation; the old best one uses only kept
    pieces, and every segmentation still possible was possible before and scored no higher, so the best
    stays best. Unigram's unknown-character penalty is derived from the vocabulary's lowest score, so the
    lowest-scoring piece is always kept too, which leaves that penalty unchanged. *WordPiece* (BERT) takes
    the longest vocabulary match greedily; the old matches are kept and no longer match was possible.
    BPE tokenizers are refused (their merges would need rewriting).

    Text that is *not* covered (it needs a removed piece) still tokenises, never fails:

    - Unigram re-segments it into smaller kept pieces (down to single characters when those are kept);
      a character with no kept piece at all becomes ``<unk>``. So ids differ from the full model's, and
      vectors degrade gracefully rather than crash.
    - WordPiece turns a whole word it cannot spell from kept pieces into ``[UNK]``.

    Both are what the tests check. Trim on everything the model will ever encode (corpus and queries).

``untrim_model``
    The way back, for a model *fine-tuned* in trimmed form (on a machine that only a small model could
    reach): the source's full embedding matrix with the trained rows written over the kept ones, the
    trained weights for everything else, the source's tokenizer. Rows a trimmed run never had would have
    had no gradient in a full-vocabulary run either, so with no weight decay the result is the model that
    the same run at full size would have produced, and it encodes text outside the trimmed vocabulary.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xdr.artifacts import atomic_dir, write_json_atomic
from xdr.errors import XdrError
from xdr.models.weights import (
    WEIGHT_DESCRIPTIONS,
    WEIGHTS,
    fingerprint,
    is_weight_file,
    load_weights,
    save_weights,
    weights_sha256,
)

log = logging.getLogger(__name__)

TRIM_FILE = "trim.json"
TRIM_FORMAT = 1
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"}


def _require_empty(out: Path) -> None:
    """Refuse a used output before the slow part; ``atomic_dir`` checks again when it publishes."""
    if out.exists() and any(out.iterdir()):
        raise XdrError(f"{out}: exists and is not empty; choose another output directory")


def _source_layout(model_dir: Path) -> None:
    modules = model_dir / "modules.json"
    if modules.exists():
        for m in json.loads(modules.read_text(encoding="utf-8")):
            if m.get("type", "").endswith("Transformer") and m.get("path", ""):
                raise XdrError(f"{model_dir}: the transformer lives in {m['path']!r}; trimming supports "
                               "sentence-transformers saves whose model sits at the top level only")
    for need in ("config.json", "tokenizer.json"):
        if not (model_dir / need).is_file():
            raise XdrError(f"{model_dir}: no {need}; trimming needs a transformers model with a fast "
                           "tokenizer (tokenizer.json)")


def _vocab_list(model: dict[str, Any]) -> list[str]:
    """Pieces by old id."""
    if model["type"] == "Unigram":
        return [p for p, _ in model["vocab"]]
    if model["type"] == "WordPiece":
        out = [""] * len(model["vocab"])
        for piece, i in model["vocab"].items():
            out[i] = piece
        return out
    raise XdrError(f"tokenizer model type {model['type']!r} cannot be trimmed (only Unigram and WordPiece: "
                   "BPE merges would have to be rewritten)")


def _remap_post_processor(pp: dict[str, Any] | None, new_id: dict[int, int]) -> None:
    if not pp:
        return
    kind = pp.get("type")
    if kind == "Sequence":
        for sub in pp.get("processors", []):
            _remap_post_processor(sub, new_id)
    elif kind == "TemplateProcessing":
        for tok in pp.get("special_tokens", {}).values():
            tok["ids"] = [new_id[i] for i in tok["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            piece, i = pp[key]
            pp[key] = [piece, new_id[i]]


def _trim_tokenizer_json(tok: dict[str, Any], kept: list[int], old_pieces: list[str]) -> dict[str, Any]:
    new_id = {old: new for new, old in enumerate(kept)}
    out = json.loads(json.dumps(tok))  # deep copy
    model = out["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [tok["model"]["vocab"][i] for i in kept]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:  # WordPiece
        model["vocab"] = {old_pieces[i]: new_id[i] for i in kept}
    out["added_tokens"] = [{**t, "id": new_id[t["id"]]} for t in out.get("added_tokens", [])
                           if t["id"] in new_id]
    _remap_post_processor(out.get("post_processor"), new_id)
    if out.get("padding") and out["padding"].get("pad_id") is not None:
        out["padding"]["pad_id"] = new_id[out["padding"]["pad_id"]]
    return out


def _required_ids(tok: dict[str, Any], old_pieces: list[str], keep_special: bool) -> set[int]:
    """Ids the trimmed tokenizer cannot work without (unk, pad; all specials when ``keep_special``)."""
    model = tok["model"]
    need: set[int] = set()
    if model["type"] == "Unigram":
        if model.get("unk_id") is not None:
            need.add(model["unk_id"])
        # The unknown-character penalty is (lowest score in vocab) - 10: keep that piece so it stays put.
        scores = [s for _, s in model["vocab"]]
        need.add(min(range(len(scores)), key=scores.__getitem__))
    else:
        unk = model.get("unk_token")
        if unk in model["vocab"]:
            need.add(model["vocab"][unk])
    specials = [t for t in tok.get("added_tokens", []) if t.get("special")]
    if keep_special:
        need.update(t["id"] for t in specials)
    else:  # padding is not in the text but the encoder pads with it
        need.update(t["id"] for t in specials if "pad" in t["content"].lower())
    return need


def trim_model(
    model_dir: str | Path,
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    prefixes: Sequence[str] = ("",),
    keep_special: bool = True,
    extra_pieces: Iterable[str] = (),
    batch_size: int = 4096,
) -> Path:
    """Write a copy of ``model_dir`` whose vocabulary holds only the pieces ``texts`` use.

    Each text is tokenised as ``prefix + text`` for every prefix in ``prefixes`` (default: as given), with
    the tokenizer's special tokens added. ``keep_special`` keeps every special token (else only the ones
    that occur, plus unk and pad); ``extra_pieces`` are vocabulary pieces (strings) to keep regardless.
    ``out_dir`` must not exist or be empty. Returns ``out_dir``.
    """
    from tokenizers import Tokenizer

    src, out = Path(model_dir), Path(out_dir)
    _source_layout(src)
    _require_empty(out)  # before the slow part
    tok_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    old_pieces = _vocab_list(tok_json["model"])
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    counts: Counter[int] = Counter()
    n_texts = 0
    batch: list[str] = []

    def flush() -> None:
        for enc in tokenizer.encode_batch(batch, add_special_tokens=True):
            counts.update(enc.ids)
        batch.clear()

    for text in texts:
        n_texts += 1
        batch.extend(p + text for p in prefixes)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not n_texts:
        raise XdrError("no texts to trim on: the trimmed model would know no words")

    keep = set(counts) | _required_ids(tok_json, old_pieces, keep_special)
    index = {p: i for i, p in enumerate(old_pieces)}
    for piece in extra_pieces:
        if piece not in index:
            raise XdrError(f"extra piece {piece!r} is not in the tokenizer's vocabulary")
        keep.add(index[piece])
    kept = sorted(keep)
    new_id = {old: new for new, old in enumerate(kept)}

    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    old_rows = int(config.get("vocab_size") or len(old_pieces))
    if kept[-1] >= old_rows:
        raise XdrError(f"{src}: tokenizer id {kept[-1]} is beyond the model's vocab_size {old_rows}")
    weights = load_weights(src)
    import torch

    rows = torch.tensor(kept, dtype=torch.long)
    sliced = [k for k, v in weights.items() if v.dim() >= 1 and v.shape[0] == old_rows]
    if not sliced:
        raise XdrError(f"{src}: no tensor has vocab_size ({old_rows}) rows; cannot find the embeddings")
    trimmed = {k: (v.index_select(0, rows) if k in sliced else v) for k, v in weights.items()}

    with atomic_dir(out) as tmp:
        _copy_other_files(src, tmp)
        config["vocab_size"] = len(kept)
        for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                    "decoder_start_token_id"):
            if isinstance(config.get(key), int):
                config[key] = new_id.get(config[key], new_id[min(new_id)])  # dropped id: any (unused)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        new_tok = _trim_tokenizer_json(tok_json, kept, old_pieces)
        (tmp / "tokenizer.json").write_text(json.dumps(new_tok, ensure_ascii=False), encoding="utf-8")
        _write_tokenizer_side_files(src, tmp, kept, old_pieces, new_id)
        save_weights(trimmed, tmp / WEIGHTS)
        write_json_atomic(tmp / TRIM_FILE, {
            "format": TRIM_FORMAT,
            "source": {
                "path": str(src.resolve()),
                "fingerprint": fingerprint(src),
                "weights_sha256": weights_sha256(src),
                "vocab_size": old_rows,
                "tokenizer_pieces": len(old_pieces),
            },
            "tokenizer_model": tok_json["model"]["type"],
            "texts": n_texts,
            "prefixes": list(prefixes),
            "tokens": int(sum(counts.values())),
            "pieces": len(kept),
            "sliced_tensors": sorted(sliced),
            "kept_ids": kept,  # old id of each new id
            "counts": [int(counts.get(i, 0)) for i in kept],
        })
    log.info("trimmed %s to %d of %d pieces into %s", src, len(kept), len(old_pieces), out)
    return out


def _copy_other_files(src: Path, dst: Path) -> None:
    """Everything but weights, tokenizer files (rewritten), sentencepiece models and source checksums."""
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if not p.is_file() or rel.parts[0].startswith("."):
            continue
        if len(rel.parts) == 1 and (
            p.name in WEIGHT_DESCRIPTIONS | _TOKENIZER_FILES | {TRIM_FILE, "config.json"}
            or is_weight_file(p.name) or p.suffix == ".model"
        ):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst / rel)


def _write_tokenizer_side_files(
    src: Path, dst: Path, kept: list[int], old_pieces: list[str], new_id: dict[int, int]
) -> None:
    cfg_path = src / "tokenizer_config.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        decoder = cfg.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            cfg["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items()
                                           if int(k) in new_id}
        (dst / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    if (src / "special_tokens_map.json").exists():
        shutil.copyfile(src / "special_tokens_map.json", dst / "special_tokens_map.json")
    if (src / "vocab.txt").exists():  # slow WordPiece tokenizers read it: keep it consistent
        (dst / "vocab.txt").write_text("".join(old_pieces[i] + "\n" for i in kept), encoding="utf-8")


def read_trim(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / TRIM_FILE
    if not path.exists():
        raise XdrError(f"{model_dir}: no {TRIM_FILE}; not a trimmed model")
    return json.loads(path.read_text(encoding="utf-8"))


def untrim_model(
    trimmed_dir: str | Path, source_dir: str | Path, out_dir: str | Path, *, trim_info: str | Path | None = None
) -> Path:
    """Write ``trimmed_dir`` (a trimmed model, possibly fine-tuned since) back at ``source_dir``'s full
    vocabulary into ``out_dir`` (must not exist or be empty). ``trim_info``: the trimmed model the run
    started from, when ``trimmed_dir`` lost its ``trim.json`` in training. Refuses a source other than
    the one trimmed (fingerprint) and weights whose names or shapes do not line up."""
    import torch

    trimmed, src, out = Path(trimmed_dir), Path(source_dir), Path(out_dir)
    info = read_trim(trim_info if trim_info is not None else trimmed)
    _source_layout(src)
    if fingerprint(src) != info["source"]["fingerprint"]:
        raise XdrError(f"{src}: is not the model {info['source']['path']} was trimmed from (fingerprint differs)")
    _require_empty(out)  # before the slow part
    full, small = load_weights(src), load_weights(trimmed)
    if full.keys() != small.keys():
        raise XdrError(f"{trimmed}: weights {sorted(full.keys() ^ small.keys())[:3]} are in only one of it "
                       f"and {src}")
    rows = torch.tensor(info["kept_ids"], dtype=torch.long)
    merged = {}
    for k, v in small.items():
        if k in info["sliced_tensors"]:
            if v.shape != (len(rows), *full[k].shape[1:]):
                raise XdrError(f"{trimmed}: {k} has shape {tuple(v.shape)}, not {len(rows)} kept rows")
            merged[k] = full[k].index_copy(0, rows, v.to(full[k].dtype))
        elif v.shape != full[k].shape:
            raise XdrError(f"{trimmed}: {k} has shape {tuple(v.shape)}, {src} {tuple(full[k].shape)}")
        else:
            merged[k] = v
    with atomic_dir(out) as tmp:
        _copy_other_files(trimmed, tmp)  # the trained run's sentence-transformers files
        for name in sorted(_TOKENIZER_FILES | {"config.json"}):
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        save_weights(merged, tmp / WEIGHTS)
    log.info("untrimmed %s onto %s's %d rows into %s", trimmed, src, info["source"]["vocab_size"], out)
    return out
