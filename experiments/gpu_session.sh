#!/usr/bin/env bash
# The GPU half of the benchmarks and of the training experiment (experiments/train_xquad_r.py), for a GPU
# machine that has torch, transformers, sentence-transformers and pyarrow but no package registry and no
# copy of ../shared. Three steps:
#   bash experiments/gpu_session.sh prepare [GENERATED [XQG_GENERATED]]   here: fills the git-ignored .carry/
#   OUT=DIR bash experiments/gpu_session.sh run PART...                  there, on a copy of the working tree
#                                                                        with .carry/; results go to DIR
#   bash experiments/gpu_session.sh collect DIR                          here, on the returned DIR
# .carry/ holds what the GPU machine lacks:
#   wheels   pydantic (xdr's config), datasets + dill + multiprocess (SentenceTransformerTrainer), py3langid
#   model    me5-small trimmed to XQuAD-R's vocabulary plus every question of the artifacts given to
#            `prepare` (synthetic pairs, xQG), packed (`xdr models trim --pack`), ~50 MiB; delete
#            .carry/me5-xq.safetensors to rebuild it for other artifacts
#   data     the seven XQuAD-R files the experiment reads, gzipped (never committed: ../shared is the source)
# PART: bench-train, bench-train-compile, bench-encode, bench-generate (benchmarks/README.md) or train-exp.
# Environment for train-exp: CONDITIONS (sized ones too, e.g. synthetic-n40), GENERATED, GENERATED_SHARDS,
# XQG_GENERATED, XQG_CONDITIONS, TRAIN_TIMEOUT; for bench-generate: GEN_SYSTEMS, GEN_ARGS, GEN_OUT,
# GEN_TIMEOUT. With XQG_GENERATED the xQG rankings use the carried model as it is (--no-untrim: the full
# me5-small is not carried), which is exact because `prepare` trimmed it on those questions too.
# `collect` unpacks the returned rankings into runs/train-xquad-r; the same train_xquad_r.py command without
# --rank-only and --model then evaluates them here without training again.
set -uo pipefail
cd "$(dirname "$0")/.."
TRAIN_ARGS=(--folds 4 --epochs 1 --batch-size 64 --negatives 1 --lr 2e-5)

case "${1:-}" in
prepare)
  grep -qx '/.carry/' .git/info/exclude || echo /.carry/ >> .git/info/exclude
  mkdir -p .carry/wheels
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .carry/wheels pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection \
    "datasets==$(.venv/bin/python -c 'import datasets; print(datasets.__version__)')" dill multiprocess \
    py3langid==0.4.0
  tar czf .carry/data.tar.gz -C ../shared/data xquad-r/{en,de,el,es,hi,tr,vi}.json
  if [ ! -f .carry/me5-xq.safetensors ]; then
    # the pool (with and without titles) and all six languages' questions, plus the generated queries
    # when given, each with the prefix the encoder adds
    .venv/bin/python - "${@:2}" <<'EOF'
import sys
from pathlib import Path

from xdr.data.squad import read_xquad_r
from xdr.langs import XQUAD_R_DEV_LANGS
from xdr.models.registry import resolve_spec
from xdr.models.pack import pack_model
from xdr.models.trim import trim_model

spec = resolve_spec("me5-small")
d = read_xquad_r(Path("../shared/data/xquad-r"), XQUAD_R_DEV_LANGS)
texts = [spec.passage_prefix + t for p in d.corpus for t in (p.joined(spec.title_separator), p.text)]
queries = [q.text for lang in XQUAD_R_DEV_LANGS for q in d.queries[lang]]
for artifact in sys.argv[1:]:  # every stored question, kept or not: today's filters may keep more
    from xdr.generate.artifact import read_generated

    queries += [g.query for g in read_generated(Path(artifact), kept_only=False, partial=True) if g.query]
texts += [spec.query_prefix + q for q in queries]
trimmed = trim_model(spec.path, texts, Path(".carry/me5-xq"))
print(pack_model(trimmed, Path(".carry/me5-xq.safetensors")))
EOF
    rm -rf .carry/me5-xq
  fi
  du -sh .carry; git ls-files -co --exclude-standard | xargs du -cb 2>/dev/null | tail -1
  ;;
run)
  shift
  : "${OUT:?run this on the device, where OUT is set}"
  export PYTHONUNBUFFERED=1 PYTHONPATH=src:/tmp/site XDR_CACHE=/tmp/xdr-cache
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl || exit 1
  mkdir -p /tmp/data && tar xzf .carry/data.tar.gz -C /tmp/data || exit 1
  { nvidia-smi; python3 -m pip list 2>/dev/null; } > "$OUT/device.txt"
  for part in "$@"; do
    echo "=== $part $(date +%T)"
    case $part in
    bench-train) timeout 150 python3 benchmarks/bench_train_speed.py --device cuda --size base \
                   --out "$OUT/train_speed_cuda_base.json" ;;
    bench-train-compile) timeout 240 python3 benchmarks/bench_train_speed.py --device cuda --size base --compile \
                   --out "$OUT/train_speed_cuda_base_compile.json" ;;
    bench-encode) timeout 120 python3 benchmarks/bench_encode_speed.py --device cuda --data /tmp/data \
                   --out "$OUT/encode_speed_cuda_bert_base.json" ;;
    bench-generate) timeout "${GEN_TIMEOUT:-240}" python3 benchmarks/bench_generate_speed.py --device cuda \
                   --size base --systems "${GEN_SYSTEMS:-hf,custom,xdr_seeded,hf_static,loop}" --passages 2048 \
                   ${GEN_ARGS:-} --out "$OUT/${GEN_OUT:-generate_speed_cuda_base.json}" ;;
    train-exp)
      python3 -c "from xdr.models.pack import unpack_model; unpack_model('.carry/me5-xq.safetensors', '/tmp/me5-xq')" \
        || continue
      gen=(); [ -n "${GENERATED:-}" ] && gen=(--generated "$GENERATED")
      [ -n "${GENERATED_SHARDS:-}" ] && gen+=(--generated-shards "$GENERATED_SHARDS")
      [ -n "${XQG_GENERATED:-}" ] && gen+=(--xqg --xqg-generated "$XQG_GENERATED" --no-untrim
                                         --xqg-conditions "${XQG_CONDITIONS:-human,both}")
      timeout "${TRAIN_TIMEOUT:-200}" python3 experiments/train_xquad_r.py --shared /tmp/data --model /tmp/me5-xq \
        --rank-only --conditions "${CONDITIONS:-none,human,synthetic,both}" "${gen[@]}" "${TRAIN_ARGS[@]}"
      # rankings, train metadata and step times only: the models stay behind
      (cd runs && find train-xquad-r -name '*.json' -not -path '*/checkpoint*' -not -path '*/model/*' \
        | tar czf "$OUT/train-work.tar.gz" -T -) ;;
    esac
    echo "=== $part done rc=$? $(date +%T)"
  done
  ;;
collect)
  mkdir -p runs && tar xzf "$2/train-work.tar.gz" -C runs && find runs/train-xquad-r -name 'ranking*.json' | wc -l
  ;;
*) sed -n 2,21p "$0"; exit 2 ;;
esac
