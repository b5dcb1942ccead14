"""Write the rates table xdr ships (`src/xdr/plan/rates.yaml`) from the benchmark records in
`benchmarks/results/`, for `xdr plan`. Run it after committing a new record; `tests/test_plan.py` fails
while the two disagree."""

from __future__ import annotations

import argparse
from pathlib import Path

from xdr.plan.rates import RATES_FILE, dump_rates, rates_from_results

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--out", type=Path, default=RATES_FILE)
    a = ap.parse_args()
    rates = rates_from_results(a.results)
    a.out.write_text(dump_rates(rates), encoding="utf-8")
    print(f"wrote {len(rates)} rates to {a.out}")


if __name__ == "__main__":
    main()
