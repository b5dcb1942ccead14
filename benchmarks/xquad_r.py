"""Quality benchmark: XQuAD-R, X->English paragraph retrieval with me5-small, run as one CLI pipeline.

Runs `xdr data prepare / encode / index / search / evaluate` exactly as a user would, then compares the
per-language R@1 and MRR@10 with the sanity figures of ../shared/README.md (mean pooling, L2-normalised,
prefixes "query: " / "passage: ", passages truncated at 256 tokens, exact inner-product search) and
writes the result, with the machine it ran on, to WORK/xquad_r.json. Only ``--record`` replaces the
committed record, benchmarks/results/xquad_r.json (``make xquad-r RECORD=1``), so a trial run elsewhere
never overwrites it. Exit status 1 if any figure is off by more than the tolerance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from xdr.artifacts import write_json_atomic
from xdr.runtime import machine_info

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "xquad_r.json"
COMMAND = "python benchmarks/xquad_r.py --shared ../shared/data"
LANGS = ("de", "el", "es", "hi", "tr", "vi")
# ../shared/README.md, "Sanity figure for XQuAD-R": R@1 / MRR@10 per language.
SANITY = {
    "de": (83.3, 89.4), "el": (72.6, 81.2), "es": (87.6, 92.3),
    "hi": (78.8, 86.0), "tr": (74.3, 81.6), "vi": (71.4, 79.6),
}
SANITY_AVG = (78.0, 85.0)


def xdr(*args: str) -> None:
    cmd = [sys.executable, "-m", "xdr", *args]
    print("$ xdr " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def result_path(work: Path, *, record: bool = False, out: Path | None = None) -> Path:
    """Where the result goes: ``out`` if given, the committed record with ``record``, else the run directory."""
    if out is not None:
        return out
    return RECORD if record else work / "xquad_r.json"


def write_result(result: dict, work: Path, *, record: bool = False, out: Path | None = None) -> Path:
    path = result_path(work, record=record, out=out)
    command = COMMAND + (" --record" if path == RECORD else "")
    write_json_atomic(path, {"benchmark": result.get("benchmark"), "command": command, **result})
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "xquad-r")
    ap.add_argument("--tolerance", type=float, default=0.5, help="allowed |delta| in points")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--record", action="store_true",
                       help=f"replace the committed record, {RECORD.relative_to(ROOT)}")
    where.add_argument("--out", type=Path, help="write the result here (default: WORK/xquad_r.json)")
    return ap.parse_args(argv)


def main() -> int:
    a = parse_args()
    work, data = a.work.resolve(), a.work.resolve() / "data"
    t0 = time.perf_counter()
    xdr("data", "prepare", "xquad-r", "--from", str(a.shared.resolve() / "xquad-r"), "--out", str(data),
        "--langs", ",".join(LANGS))
    xdr("encode", str(data / "corpus.parquet"), "--model", "me5-small", "--passage-max-length", "256",
        "--out", str(work / "emb"))
    xdr("index", str(work / "emb"), "--out", str(work / "index"))
    xdr("search", str(work / "index"), str(data / "queries.parquet"), "--k", "100", "--out", str(work / "run"),
        "--corpus", str(data / "corpus.parquet"))
    xdr("evaluate", str(work / "run"), "--queries", str(data / "queries.parquet"), "--qrels",
        str(data / "qrels.txt"), "--budgets", "100,300", "--measures", "R@1,RR@10,nDCG@10,R@100",
        "--out", str(work / "eval"))
    seconds = time.perf_counter() - t0

    report = json.loads((work / "eval" / "report.json").read_text())
    per_lang, macro = report["per_language"], report["macro"]  # measure -> lang -> value
    rows, ok = {}, True
    for lang, (r1, mrr) in [*SANITY.items(), ("avg", SANITY_AVG)]:
        got = macro if lang == "avg" else {m: by_lang[lang] for m, by_lang in per_lang.items()}
        d1, dm = got["R@1"] - r1, got["RR@10"] - mrr
        lang_ok = abs(d1) <= a.tolerance and abs(dm) <= a.tolerance
        ok &= lang_ok
        rows[lang] = {
            "R@1": round(got["R@1"], 2), "MRR@10": round(got["RR@10"], 2),
            "R@100t": round(got["R@100t"], 2), "R@300t": round(got["R@300t"], 2),
            "sanity_R@1": r1, "sanity_MRR@10": mrr, "within_tolerance": lang_ok,
        }
        print(f"{lang:>4}  R@1 {got['R@1']:6.2f} ({d1:+.2f})  MRR@10 {got['RR@10']:6.2f} ({dm:+.2f})  "
              f"R@100t {got['R@100t']:6.2f}  R@300t {got['R@300t']:6.2f}  {'ok' if lang_ok else 'OFF'}")

    result = {
        "benchmark": "xquad-r x->en paragraph retrieval, me5-small, passages <= 256 tokens, exact IP",
        "tolerance": a.tolerance,
        "all_within_tolerance": ok,
        "results": rows,
        "pipeline_seconds": round(seconds, 1),
        "machine": machine_info(),
    }
    path = write_result(result, work, record=a.record, out=a.out)
    print(f"{'all within' if ok else 'NOT all within'} {a.tolerance} of the sanity figures; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
