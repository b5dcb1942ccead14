"""Synthetic training pairs, SWIM-IR style: one generated query per sampled passage and language.

Sampling. For each language a sample of ``sample_size`` passages is drawn (the same passages for every
language with ``shared_sample=True``; otherwise an independent sample per language, as SWIM-IR did, which
covers more of the corpus). The sample is stratified with proportional allocation: every stratum gets
``sample_size * stratum_size / corpus_size`` passages, rounded by the largest-remainder method (ties go to
the stratum whose name sorts first), so each stratum is represented as in the corpus. Strata:

- ``"length"`` (default): the passage text's length in whitespace words, bucketed at ``LENGTH_EDGES``
  (``<50``, ``50-99``, ``100-149``, ``>=150``): short stubs and long passages are both represented;
- ``"title"``: the passage title (its article), for corpora with few articles (e.g. SQuAD-like sets);
- ``"none"``: a plain uniform sample;
- any callable ``Passage -> str``.

Within a stratum the sample is the passages with the smallest keys ``hash(seed, language, passage id)``,
found in one streaming pass with a bounded heap per (language, stratum): the sample depends only on the
seed and the corpus, not on its order or on how it was read, and it is reproducible. Memory is
``sample_size`` passages per (language, stratum), so ``"title"`` on an 18M-passage Wikipedia is not
advisable (use ``"length"`` or a callable with few values). A corpus smaller than ``sample_size`` is
taken whole.

Generation. The sample of each language (in corpus order) goes through ``run_generation(..., n=1)``
into a generate artifact ``<work_dir>/<lang>/`` (default ``work_dir``: ``<out>.generate``), which is
resumable: a rerun after a kill skips the finished shards. Only queries the generate filters kept become
pairs. The output is SWIM-IR JSONL, ``{_id, lang, code, query, title, text}`` per pair (``lang`` is the
language's English name, ``code`` its ISO code), read by ``xdr.data.read_training`` (format ``swimir``),
written atomically once every language is generated, with a sidecar ``<out>.meta.json``.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from xdr.artifacts import Stage, atomic_path, input_fingerprint, write_sidecar_meta
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate.artifact import read_generated
from xdr.generate.base import Generator
from xdr.generate.filters import FilterSettings
from xdr.generate.run import DEFAULT_FILTERS, run_generation
from xdr.langs import language_name, normalize_lang

StrataName = Literal["length", "title", "none"]
LENGTH_EDGES = (50, 100, 150)
SHARED = "*"  # the sample name when all languages share one sample


def _key(seed: int, name: str, docid: str) -> int:
    """The sampling key of a passage: a 64-bit hash, so the sample does not depend on corpus order."""
    digest = hashlib.blake2b(f"xdr.synth\x1f{seed}\x1f{name}\x1f{docid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def length_stratum(p: Passage, edges: Sequence[int] = LENGTH_EDGES) -> str:
    """The length bucket of a passage's text in whitespace words: ``<50``, ``50-99``, ..., ``>=150``."""
    words = len(p.text.split())
    if words < edges[0]:
        return f"<{edges[0]}"
    for lo, hi in itertools.pairwise(edges):
        if words < hi:
            return f"{lo}-{hi - 1}"
    return f">={edges[-1]}"


def _stratum_fn(strata: StrataName | Callable[[Passage], str]) -> Callable[[Passage], str]:
    if callable(strata):
        return strata
    fns: dict[str, Callable[[Passage], str]] = {
        "length": length_stratum, "title": lambda p: p.title, "none": lambda p: "all",
    }
    if strata not in fns:
        raise XdrError(f"unknown strata {strata!r}; choose length, title or none")
    return fns[strata]


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Proportional allocation of ``total`` over strata of ``sizes`` by the largest-remainder method."""
    n = sum(sizes.values())
    if total >= n:
        return dict(sizes)
    exact = {s: total * c / n for s, c in sizes.items()}
    quota = {s: int(x) for s, x in exact.items()}
    rest = total - sum(quota.values())
    for s in sorted(sizes, key=lambda s: (-(exact[s] - quota[s]), s))[:rest]:
        quota[s] += 1
    return quota


def stratified_sample(
    passages: Iterable[Passage], size: int, names: Sequence[str], *, seed: int,
    strata: StrataName | Callable[[Passage], str] = "length",
) -> tuple[dict[str, list[Passage]], dict[str, Any]]:
    """One stratified sample of ``size`` passages per name (see the module docstring), in corpus order,
    in one pass over ``passages``; plus the stratum sizes and each sample's allocation."""
    if size < 1:
        raise XdrError(f"sample size must be positive, not {size}")
    stratum_of = _stratum_fn(strata)
    counts: Counter[str] = Counter()
    heaps: dict[str, dict[str, list[tuple[int, int, Passage]]]] = {name: {} for name in names}
    for pos, p in enumerate(passages):
        s = stratum_of(p)
        counts[s] += 1
        for name in names:
            heap = heaps[name].setdefault(s, [])
            item = (-_key(seed, name, p.id), pos, p)  # max-heap of the smallest keys
            if len(heap) < size:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
    if not counts:
        raise XdrError("empty corpus: no passages to sample")
    quota = allocate(dict(counts), size)
    samples: dict[str, list[Passage]] = {}
    for name in names:
        chosen = [it for s, heap in heaps[name].items() for it in sorted(heap, reverse=True)[:quota[s]]]
        sample = [p for _, _, p in sorted(chosen, key=lambda it: it[1])]
        ids = [p.id for p in sample]
        if len(set(ids)) != len(ids):
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise XdrError(f"duplicate passage id {dup!r} in the corpus")
        samples[name] = sample
    stats = {"strata_sizes": dict(sorted(counts.items())), "allocation": dict(sorted(quota.items()))}
    return samples, stats


def synthesize_pairs(
    passages: Iterable[Passage],
    generator: Generator,
    out_path: str | Path,
    *,
    langs: Iterable[str],
    sample_size: int,
    seed: int = 42,
    strata: StrataName | Callable[[Passage], str] = "length",
    shared_sample: bool = False,
    work_dir: str | Path | None = None,
    shard_size: int = 500,
    filters: FilterSettings | None = DEFAULT_FILTERS,
    source: str | Path | None = None,
) -> Path:
    """Generate one query per sampled passage and language and write SWIM-IR JSONL pairs to ``out_path``.

    ``sample_size`` passages are sampled per language (see the module docstring), so a language yields
    at most ``sample_size`` pairs: fewer when the filters drop queries. A killed run is resumed by running
    it again with the same arguments (the generate artifacts under ``work_dir`` keep finished shards).
    ``source`` (the corpus file) is fingerprinted into the meta. Returns ``out_path``.
    """
    codes = list(dict.fromkeys(normalize_lang(c) for c in langs))
    if not codes:
        raise XdrError("no target languages given")
    out = Path(out_path)
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".generate")
    names = [SHARED] if shared_sample else codes
    samples, sampling = stratified_sample(passages, sample_size, names, seed=seed, strata=strata)

    artifacts = {}
    for lang in codes:
        sample = samples[SHARED if shared_sample else lang]
        artifacts[lang] = run_generation(sample, generator, work / lang, langs=[lang], n=1, seed=seed,
                                         shard_size=shard_size, filters=filters)

    pairs: Counter[str] = Counter()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for lang in codes:
            by_id = {p.id: p for p in samples[SHARED if shared_sample else lang]}
            name = language_name(lang)
            for q in read_generated(artifacts[lang]):
                p = by_id[q.docid]
                row = {"_id": p.id, "lang": name, "code": lang, "query": q.query, "title": p.title, "text": p.text}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                pairs[lang] += 1

    strata_name = getattr(strata, "__name__", "callable") if callable(strata) else strata
    params = {
        "generator": generator.name,
        "generator_config": generator.config,
        "langs": codes,
        "sample_size": sample_size,
        "seed": seed,
        "strata": strata_name,
        "length_edges": list(LENGTH_EDGES) if strata_name == "length" else None,
        "shared_sample": shared_sample,
        "filters": filters.as_dict() if filters else None,
        "queries_per_passage": 1,
    }
    write_sidecar_meta(
        out, Stage.SYNTHESIZE, params,
        inputs={"corpus": input_fingerprint(source) if source is not None else None},
        sampling=sampling,
        generate_artifacts={lang: str(path) for lang, path in artifacts.items()},
        counts={
            lang: {"sampled": len(samples[SHARED if shared_sample else lang]), "pairs": pairs[lang]}
            for lang in codes
        },
    )
    return out
