"""Vocabulary trimming and a compact transport form, so a model fits what travels to a remote machine.

me5-small is ~118M parameters, ~96M of them the 250k-piece embedding matrix, of which one corpus and its
query languages use a small fraction (XQuAD-R: ~31k pieces). Two steps make it small:

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

``pack_model`` / ``unpack_model``
    One safetensors file: vocabulary-sized matrices as int8 rows with a float32 scale per row (symmetric,
    ``scale = max|row| / 127``), other tensors float16 (or bfloat16, or int8 rows for 2-D ones), and
    every non-weight file of the directory as a uint8 tensor ``file:<relpath>``. ``unpack_model``
    dequantises to the original dtypes and writes a loadable directory. The pack records
    :func:`rebuilt_sha256` of what the sender's own unpack produces, and ``unpack_model`` checks it, so the
    receiving side proves it rebuilt exactly the weights the sender validated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdr.artifacts import atomic_path, write_json_atomic
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

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TRIM_FILE = "trim.json"
TRIM_FORMAT = 1
PACK_FORMAT = 1
PACK_KEY = "xdr_pack"
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"}
_FILE_PREFIX = "file:"
_Q_SUFFIX, _SCALE_SUFFIX = ".q8", ".scale"
_FLOATS = ("float16", "bfloat16")


# ----------------------------------------------------------------------------------------- trimming


def _require_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise XdrError(f"{out}: exists and is not empty; choose another output directory")


@contextmanager
def _new_model_dir(out: Path) -> Iterator[Path]:
    """A temp dir beside ``out`` that becomes ``out`` (world-readable) only when the block completes, so
    an interrupted write never leaves a half-written model where a loader would find it."""
    _require_empty(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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

    with _new_model_dir(out) as tmp:
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
    with _new_model_dir(out) as tmp:
        _copy_other_files(trimmed, tmp)  # the trained run's sentence-transformers files
        for name in sorted(_TOKENIZER_FILES | {"config.json"}):
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        save_weights(merged, tmp / WEIGHTS)
    log.info("untrimmed %s onto %s's %d rows into %s", trimmed, src, info["source"]["vocab_size"], out)
    return out


# ----------------------------------------------------------------------------------------- packing


def _tensor_digest(h: Any, name: str, t: torch.Tensor) -> None:
    import torch

    h.update(f"{name}\t{str(t.dtype).removeprefix('torch.')}\t{list(t.shape)}\n".encode())
    h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def rebuilt_sha256(model_dir: str | Path) -> str:
    """A hash of the weights' contents: every tensor's name, dtype, shape and bytes, in name order.

    Independent of how the safetensors file was serialised, so it identifies the numbers themselves; two
    directories with equal hashes hold bit-identical weights.
    """
    h = hashlib.sha256()
    weights = load_weights(Path(model_dir))
    for name in sorted(weights):
        _tensor_digest(h, name, weights[name])
    return h.hexdigest()


def _quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``t ≈ q * scale[:, None]``."""
    import torch

    x = t.float().reshape(t.shape[0], -1)
    scale = x.abs().amax(dim=1) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(x / safe[:, None]), -127, 127).to(torch.int8)
    return q.reshape(t.shape), scale.to(torch.float32)


def _dequantize_rows(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    import torch

    x = q.to(torch.float32).reshape(q.shape[0], -1) * scale.to(torch.float32)[:, None]
    return x.reshape(q.shape).to(dtype)


def _dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


def _rebuild(packed: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name, spec in info["tensors"].items():
        dtype = _dtype(spec["dtype"])
        if spec["as"] == "int8":
            out[name] = _dequantize_rows(packed[name + _Q_SUFFIX], packed[name + _SCALE_SUFFIX], dtype)
        else:
            out[name] = packed[name].to(dtype)
    return out


def pack_model(
    model_dir: str | Path, out_file: str | Path, *, embedding: str = "int8", other: str = "float16"
) -> Path:
    """Write ``model_dir`` as one compact safetensors file (see the module docstring).

    ``embedding`` applies to tensors with ``vocab_size`` rows (``int8``, ``float16`` or ``bfloat16``);
    ``other`` to the rest (``float16``, ``bfloat16``, or ``int8``: per-row for 2-D tensors, float16 for the
    rest). Returns ``out_file``.
    """
    import torch
    from safetensors.torch import save_file

    if embedding not in ("int8", *_FLOATS):
        raise XdrError(f"embedding must be int8, float16 or bfloat16, not {embedding!r}")
    if other not in ("int8", *_FLOATS):
        raise XdrError(f"other must be int8, float16 or bfloat16, not {other!r}")
    src = Path(model_dir)
    if not (src / "config.json").is_file():
        raise XdrError(f"{src}: no config.json; not a transformers model directory")
    weights = load_weights(src)
    vocab = json.loads((src / "config.json").read_text(encoding="utf-8")).get("vocab_size")
    packed: dict[str, torch.Tensor] = {}
    tensors: dict[str, dict[str, str]] = {}
    for name in sorted(weights):
        t = weights[name]
        mode = embedding if (t.dim() >= 1 and t.shape[0] == vocab) else other
        if not t.is_floating_point():
            mode = "raw"  # integer buffers (e.g. position ids) travel as they are
        elif mode == "int8" and t.dim() < 2:
            mode = "float16"
        tensors[name] = {"dtype": str(t.dtype).removeprefix("torch."), "as": mode}
        if mode == "int8":
            packed[name + _Q_SUFFIX], packed[name + _SCALE_SUFFIX] = _quantize_rows(t)
        elif mode == "raw":
            packed[name] = t.contiguous()
        else:
            packed[name] = t.to(_dtype(mode)).contiguous()
    files = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if (not p.is_file() or rel.parts[0].startswith(".") or is_weight_file(p.name)
                or p.name in WEIGHT_DESCRIPTIONS):
            continue
        data = p.read_bytes()
        files[rel.as_posix()] = hashlib.sha256(data).hexdigest()
        packed[_FILE_PREFIX + rel.as_posix()] = torch.frombuffer(bytearray(data), dtype=torch.uint8) \
            if data else torch.zeros(0, dtype=torch.uint8)
    info: dict[str, Any] = {"format": PACK_FORMAT, "embedding": embedding, "other": other,
                            "tensors": tensors, "files": files}
    h = hashlib.sha256()
    rebuilt = _rebuild(packed, info)
    for name in sorted(rebuilt):
        _tensor_digest(h, name, rebuilt[name])
    info["rebuilt_sha256"] = h.hexdigest()
    info["source_sha256"] = rebuilt_sha256(src)
    with atomic_path(out_file) as tmp:
        save_file(packed, str(tmp), metadata={PACK_KEY: json.dumps(info, sort_keys=True)})
    return Path(out_file)


def read_pack_info(file: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    if PACK_KEY not in meta:
        raise XdrError(f"{file}: not an xdr model pack (no {PACK_KEY} metadata)")
    info = json.loads(meta[PACK_KEY])
    if info.get("format") != PACK_FORMAT:
        raise XdrError(f"{file}: pack format {info.get('format')}, this xdr reads {PACK_FORMAT}")
    return info


def unpack_model(file: str | Path, out_dir: str | Path, *, verify: bool = True) -> Path:
    """Rebuild a loadable model directory from :func:`pack_model`'s file.

    With ``verify`` (the default) the rebuilt weights must hash (:func:`rebuilt_sha256`) to what the
    sender's own unpack gave, and every file to its recorded sha256; otherwise XdrError.
    """
    from safetensors.torch import load_file

    info = read_pack_info(file)
    packed = load_file(str(file))
    out = Path(out_dir)
    _require_empty(out)  # before the slow part
    rebuilt = _rebuild(packed, info)
    with _new_model_dir(out) as tmp:
        for rel, digest in info["files"].items():
            data = packed[_FILE_PREFIX + rel].numpy().tobytes()
            if verify and hashlib.sha256(data).hexdigest() != digest:
                raise XdrError(f"{file}: {rel} does not match its recorded sha256 (pack corrupted)")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        save_weights(rebuilt, tmp / WEIGHTS)
        if verify:
            got = rebuilt_sha256(tmp)
            if got != info["rebuilt_sha256"]:
                raise XdrError(f"{file}: rebuilt weights hash {got[:16]}…, the sender's unpack gave "
                               f"{info['rebuilt_sha256'][:16]}…; not the model that was packed")
    return out
