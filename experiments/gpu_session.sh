#!/usr/bin/env bash
# The GPU half of the benchmarks and of the training experiment (experiments/train_xquad_r.py), for a GPU
# machine that has torch, transformers, sentence-transformers and pyarrow but no package registry and no
# copy of ../shared. Three steps:
#   bash experiments/gpu_session.sh prepare [GENERATED [XQG_GENERATED]]   here: fills the git-ignored .carry/
#   OUT=DIR bash experiments/gpu_session.sh run PART...                  there, on a copy of the working tree
#                                                                        with .carry/; results go to DIR
#   bash experiments/gpu_session.sh collect DIR                          here, on the returned DIR
#   bash experiments/gpu_session.sh smoke [DIR]                          here, on the CPU: the gpu-speed
#                                                                        commands with tiny sizes, end to end
# .carry/ holds what the GPU machine lacks:
#   wheels   pydantic (xdr's config), datasets + dill + multiprocess (SentenceTransformerTrainer), py3langid
#   model    me5-small trimmed to XQuAD-R's vocabulary plus every question of the artifacts given to
#            `prepare` (synthetic pairs, xQG), packed (`xdr models trim --pack`), ~50 MiB; delete
#            .carry/me5-xq.safetensors to rebuild it for other artifacts
#   data     the seven XQuAD-R files the experiment reads, gzipped (never committed: ../shared is the source)
# PART: bench-train, bench-train-compile, bench-encode, bench-generate (benchmarks/README.md), train-exp, or
# gpu-speed: the three speed targets in one pass of about 9 minutes on an H200 (device call: carry .carry,
# timeout_s 600, command `OUT=$OUT bash experiments/gpu_session.sh run gpu-speed`), each against its peer
# in the same run, results named after the card (e.g. generate_speed_cuda_h200_static.json):
#   generation  xdr's StaticDecoder (compiled step, CUDA graphs) vs HF batched generate vs HF + SeededSampler
#   encoding    xdr with tokenizer worker processes vs xdr tokenising in-process vs sentence-transformers
#   training    MFU of xdr vs a plain loop, then with each speed setting off (eager attention, unfused
#               AdamW, GradCache), then both under torch.compile
# Environment for train-exp: CONDITIONS (sized ones too, e.g. synthetic-n40), GENERATED, GENERATED_SHARDS,
# XQG_GENERATED, XQG_CONDITIONS, TRAIN_TIMEOUT; for bench-generate: GEN_SYSTEMS, GEN_ARGS, GEN_OUT,
# GEN_TIMEOUT; for gpu-speed: GEN_TIMEOUT, ENC_TIMEOUT, TRAIN_VARIANTS_TIMEOUT, TRAIN_COMPILE_TIMEOUT (seconds,
# 200/100/90/150 by default, inside the device's 10 minutes); for smoke: PYTHON, DATA, SMOKE_TIMEOUT.
# With XQG_GENERATED the xQG rankings use the carried model as it is (--no-untrim: the full me5-small is not
# carried), which is exact because `prepare` trimmed it on those questions too.
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
smoke)
  # The gpu-speed commands on the CPU with tiny sizes: every benchmark runs and writes its record.
  export OUT="${2:-$(mktemp -d)}" PYTHONUNBUFFERED=1 PYTHONPATH=src XDR_CACHE="${XDR_CACHE:-$HOME/.cache/xdr}"
  PY="${PYTHON:-.venv/bin/python}" DEVICE=cpu DATA="${DATA:-../shared/data}" CARD=smoke
  parts=(speed-generate speed-encode speed-train)
  limit=${SMOKE_TIMEOUT:-1200}  # a shared CPU is slow; the sizes are tiny, the time is not bounded by them
  ;&
run)
  if [ "$1" = run ]; then
    shift
    : "${OUT:?run this on the device, where OUT is set}"
    export PYTHONUNBUFFERED=1 PYTHONPATH=src:/tmp/site XDR_CACHE=/tmp/xdr-cache
    PY=python3 DEVICE=cuda DATA=/tmp/data limit=
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl || exit 1
    mkdir -p /tmp/data && tar xzf .carry/data.tar.gz -C /tmp/data || exit 1
    { nvidia-smi; python3 -m pip list 2>/dev/null; } > "$OUT/device.txt"
    # the card in the file names: "NVIDIA H200" -> h200
    CARD=$(python3 -c 'import torch; print(torch.cuda.get_device_name(0).split()[-1].lower())') || exit 1
    parts=()
    for part in "$@"; do
      if [ "$part" = gpu-speed ]; then parts+=(speed-generate speed-encode speed-train); else parts+=("$part"); fi
    done
  fi
  smoke=$([ "$DEVICE" = cpu ] && echo 1)
  for part in "${parts[@]}"; do
    echo "=== $part $(date +%T)"
    case $part in
    bench-train) timeout 150 python3 benchmarks/bench_train_speed.py --device cuda --size base \
                   --out "$OUT/train_speed_cuda_base.json" ;;
    bench-train-compile) timeout 240 python3 benchmarks/bench_train_speed.py --device cuda --size base --compile \
                   --out "$OUT/train_speed_cuda_base_compile.json" ;;
    bench-encode) timeout 120 python3 benchmarks/bench_encode_speed.py --device cuda --data /tmp/data \
                   --out "$OUT/encode_speed_cuda_bert_base.json" ;;
    bench-generate) timeout "${GEN_TIMEOUT:-240}" python3 benchmarks/bench_generate_speed.py --device cuda \
                   --size base --systems "${GEN_SYSTEMS:-hf,xdr_static,xdr_seeded,hf_static,loop}" --passages 2048 \
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
    speed-generate)  # xdr's static loop vs HF batched generate (and HF + xdr's seeded sampler), one run
      sizes=(--size base --passages 2048 --hf-batches 256,1024 --xdr-batches 256,1024); [ "$smoke" ] && \
        sizes=(--size tiny --passages 16 --hf-batches 16 --xdr-batches 16 --threads 1 --no-compile)
      timeout "${limit:-${GEN_TIMEOUT:-200}}" "$PY" benchmarks/bench_generate_speed.py --device "$DEVICE" \
        --systems hf,xdr_static,xdr_seeded "${sizes[@]}" --out "$OUT/generate_speed_${DEVICE}_${CARD}_static.json" ;;
    speed-encode)  # tokenizer worker processes vs in-process vs sentence-transformers, one run
      sizes=(--repeats 2); [ "$smoke" ] && sizes=(--random-bert-base --tiny --limit 300 --repeats 1 --threads 1 \
        --tokenizer-workers 2)
      timeout "${limit:-${ENC_TIMEOUT:-100}}" "$PY" benchmarks/bench_encode_speed.py --device "$DEVICE" --data "$DATA" \
        "${sizes[@]}" --out "$OUT/encode_speed_${DEVICE}_${CARD}_workers.json" ;;
    speed-train)  # MFU with each speed setting on and off, then under torch.compile
      sizes=(--rounds 2 --steps 10 --warmup 3); [ "$smoke" ] && sizes=(--rounds 1 --steps 1 --warmup 1 --threads 1 \
        --batch 4 --negatives 1 --mini-batch 4)
      timeout "${limit:-${TRAIN_VARIANTS_TIMEOUT:-90}}" "$PY" benchmarks/bench_train_speed.py --device "$DEVICE" \
        "${sizes[@]}" --variants xdr_eager,xdr_unfused,xdr_gradcache \
        --out "$OUT/train_speed_${DEVICE}_${CARD}_variants.json"
      if [ -z "$smoke" ]; then timeout "${TRAIN_COMPILE_TIMEOUT:-150}" "$PY" benchmarks/bench_train_speed.py \
        --device cuda --rounds 1 --steps 10 --warmup 3 --compile \
        --out "$OUT/train_speed_cuda_${CARD}_compile.json"; fi ;;
    *) echo "unknown part $part"; false ;;
    esac
    echo "=== $part done rc=$? $(date +%T)"
  done
  if [ "$smoke" ]; then  # each benchmark wrote its record
    "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

records = sorted(Path(sys.argv[1]).glob("*.json"))
assert len(records) == 3, [r.name for r in records]
for path in records:
    record = json.loads(path.read_text())
    assert record["machine"] and record["results"], path
    print(path.name, sorted(record["results"]))
EOF
  fi
  ;;
collect)
  mkdir -p runs && tar xzf "$2/train-work.tar.gz" -C runs && find runs/train-xquad-r -name 'ranking*.json' | wc -l
  ;;
*) sed -n '2,/^set /{/^set /!p}' "$0"; exit 2 ;;
esac
