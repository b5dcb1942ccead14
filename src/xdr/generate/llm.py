"""LLM question generation with summarize-then-ask prompts, through a chat server or a local HF model.

:class:`LLMGenerator` builds the prompts and parses the answers; a back end only turns chat messages
into completions. Each of the ``n`` completions of a (passage, language) gets its own seed, derived from
the run seed, docid, language and k, so a rerun asks the same questions (see each back end for how far
the server or model honours it).

The HTTP back end talks to the server with httpx rather than the ``openai`` client: it needs nothing of
that client but one POST, and a seed per request that every OpenAI-compatible server accepts. Retrying
(which failures, how long to wait, when to stop) is tenacity's; what stays here is the decision of which
answers are worth another attempt and the server's ``Retry-After``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from jinja2.exceptions import TemplateError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from xdr.artifacts import sha256_file
from xdr.config import DType
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate.base import passage_seed, row_seed
from xdr.generate.hf import Sampling, loading, seeded_generate
from xdr.generate.prompts import (
    DEFAULT_EXEMPLARS,
    SYSTEM,
    Message,
    build_messages,
    first_block,
    load_exemplars,
    parse_answer,
    render_plain,
    select_exemplars,
)
from xdr.runtime import resolve_device, resolve_dtype

log = logging.getLogger(__name__)

LLM_SAMPLING = Sampling(top_k=50, top_p=0.95, temperature=0.7, max_new_tokens=256)
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_WAIT = 60.0  # seconds: the longest pause between attempts, whatever the backoff or the server asks


@dataclass(frozen=True)
class Prompt:
    """One conversation to complete ``len(seeds)`` times, once per seed."""

    messages: list[Message]
    seeds: list[int]


class ChatBackend(Protocol):
    """Completes chat conversations; ``config`` holds every setting that changes the answers."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> dict[str, Any]: ...

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        """The raw answer text for every seed of every prompt, in order."""
        ...


class _RateLimiter:
    """Starts requests at least ``1 / rate`` seconds apart, across all worker threads."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise XdrError(f"rate limit must be positive requests per second, not {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self.lock = threading.Lock()
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(start - now)


class _Retry(Exception):
    """A failed attempt worth repeating, with the wait the server asked for (``Retry-After``), if any."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


def _retry_after(r: httpx.Response) -> float | None:
    """``Retry-After`` in seconds; its HTTP-date form (rare from inference servers) falls back to the backoff."""
    try:
        return max(0.0, float(r.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


class _ServerWait:
    """Wait as long as the server asked, else back off exponentially with jitter (so that the workers of
    one run that failed together do not all come back at the same moment); never longer than MAX_WAIT."""

    def __init__(self, backoff: float) -> None:
        self.backoff = wait_exponential(multiplier=backoff, max=MAX_WAIT) + wait_random(0, backoff)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retry) and error.retry_after is not None:
            return min(error.retry_after, MAX_WAIT)
        return min(self.backoff(state), MAX_WAIT)


class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp server, Ollama, hosted APIs).

    One request per completion, carrying that completion's seed: servers that honour ``seed`` (vLLM,
    llama.cpp) then answer a rerun identically; others sample afresh. ``concurrency`` requests run at
    once. Timeouts, connection errors, 408/409/425/429/5xx and answers that are not chat completions are
    retried, after the server's ``Retry-After`` when it sends one, else after an exponential backoff from
    ``backoff`` seconds, each retry logged as a warning; other 4xx answers and exhausted retries stop the
    run with an :class:`XdrError` (finished shards stay, so it can be resumed). The API key is read
    from the environment variable ``api_key_env`` and sent as a bearer token when set.
    """

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        *,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = LLM_SAMPLING.temperature,
        top_p: float = LLM_SAMPLING.top_p,
        max_tokens: int = LLM_SAMPLING.max_new_tokens,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 8,
        rate_limit: float | None = None,
    ) -> None:
        self.model, self.url = model, base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.concurrency = concurrency
        self.limiter = _RateLimiter(rate_limit)
        self.retrying = Retrying(  # keeps its per-call state per thread, so the workers share it
            retry=retry_if_exception_type(_Retry),
            stop=stop_after_attempt(retries + 1),
            wait=_ServerWait(backoff),
            before_sleep=self._log_retry,
            reraise=True,
        )

    @property
    def name(self) -> str:
        return self.model

    @property
    def config(self) -> dict[str, Any]:
        # The URL, key and pacing may change between a run and its resume; the answers would not.
        return {
            "kind": "openai-chat",
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        """Each prompt's samples go out one after another from one worker, and workers take different
        prompts: a server that caches prompts per slot (llama.cpp) then evaluates each prompt once, not
        once per sample. A prompt's samples are split across workers only when there are fewer prompts
        than workers, so no worker idles."""
        out: list[list[str]] = [[""] * len(p.seeds) for p in prompts]
        per_prompt = max(1, -(-self.concurrency // max(len(prompts), 1)))
        runs = [range(len(p.seeds))[j::per_prompt] for p in prompts for j in range(per_prompt)]
        owners = [i for i, p in enumerate(prompts) for _ in range(per_prompt)]
        headers = {"Authorization": f"Bearer {key}"} if (key := os.environ.get(self.api_key_env)) else {}

        def work(i: int, ks: range) -> None:
            for k in ks:
                out[i][k] = self._request(client, prompts[i].messages, prompts[i].seeds[k])

        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            pool = ThreadPoolExecutor(max_workers=self.concurrency)
            try:
                list(pool.map(work, owners, runs))  # raises the first worker's error
            finally:
                pool.shutdown(cancel_futures=True)
        return out

    def _request(self, client: httpx.Client, messages: list[Message], seed: int) -> str:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": seed % 2**31,  # servers take 32-bit seeds
        }
        try:
            return self.retrying(self._attempt, client, body)
        except _Retry as e:
            raise XdrError(f"{self.url}: no answer after {self.retries + 1} attempts (last: {e})") from e

    def _attempt(self, client: httpx.Client, body: dict[str, Any]) -> str:
        self.limiter.wait()
        try:
            r = client.post(self.url, json=body)
        except httpx.TransportError as e:  # timeouts and connection failures
            raise _Retry(f"{type(e).__name__}: {e}") from e
        if r.status_code in _RETRY_STATUS:
            raise _Retry(f"HTTP {r.status_code}: {r.text[:200]}", _retry_after(r))
        if r.status_code != 200:
            raise XdrError(f"{self.url}: HTTP {r.status_code}: {r.text[:500]}")
        try:
            content = r.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise _Retry(f"not a chat completion: {r.text[:200]}") from None
        return content if isinstance(content, str) else ""

    def _log_retry(self, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; attempt %d of %d in %.1f s", self.url, error, state.attempt_number + 1,
                    self.retries + 1, wait)


def _merge_system(messages: list[Message]) -> list[Message]:
    """Fold the system message into the first user turn, for chat templates that reject a system role."""
    system, first, *rest = messages
    return [{"role": "user", "content": f"{system['content']}\n\n{first['content']}"}, *rest]


class HFChatBackend:
    """A local causal LM through transformers (hub id, directory, or a ``gguf_file`` inside either).

    Uses the tokenizer's chat template when it has one, else a plain-text rendering of the same turns.
    Sampling is seeded per completion (see :mod:`xdr.generate.hf`), so answers do not depend on batching.
    The model loads on construction, so one that cannot be had fails before a run writes anything.
    """

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        revision: str | None = None,
        device: str | None = None,
        dtype: DType = "auto",
        batch_size: int = 8,
        sampling: Sampling = LLM_SAMPLING,
    ) -> None:
        self.model_id, self.gguf_file, self.revision = model, gguf_file, revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size, self.sampling = batch_size, sampling
        self.tokenizer, self.model = self._load()

    @property
    def name(self) -> str:
        return f"{self.model_id}/{self.gguf_file}" if self.gguf_file else self.model_id

    @property
    def config(self) -> dict[str, Any]:
        return {
            "kind": "hf-causal",
            "model": self.model_id,
            "gguf_file": self.gguf_file,
            "revision": self.revision,
            "dtype": str(self.dtype).removeprefix("torch."),
            "sampling": asdict(self.sampling),
        }

    def _load(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        kwargs = {"revision": self.revision, **({"gguf_file": self.gguf_file} if self.gguf_file else {})}
        with loading(self.model_id):
            tok = AutoTokenizer.from_pretrained(self.model_id, **kwargs)
            try:
                model = AutoModelForCausalLM.from_pretrained(self.model_id, dtype=self.dtype, **kwargs)
            except ImportError as e:
                if self.gguf_file:
                    raise XdrError(f"loading a GGUF file needs the 'gguf' package (pip install gguf): {e}") from e
                raise
        tok.padding_side = "left"  # decoder-only: prompts end where generation starts
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok, model.to(self.device).eval()

    def render(self, messages: list[Message]) -> str:
        """The prompt text the model sees."""
        if not self.tokenizer.chat_template:
            return render_plain(messages)
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError:
            return self.tokenizer.apply_chat_template(
                _merge_system(messages), tokenize=False, add_generation_prompt=True
            )

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        chat = bool(self.tokenizer.chat_template)
        outs = seeded_generate(
            self.model,
            self.tokenizer,
            [self.render(p.messages) for p in prompts],
            [p.seeds for p in prompts],
            self.sampling,
            batch_size=self.batch_size,
            add_special_tokens=not chat,  # a chat template already wrote the special tokens
        )
        return outs if chat else [[first_block(a) for a in answers] for answers in outs]


CHAT_BACKENDS = ("openai", "hf")


def chat_backend(kind: str, model: str, **options: Any) -> ChatBackend:
    """The ``kind`` back end for ``model``: ``openai`` takes ``base_url``, ``concurrency`` (and the other
    :class:`OpenAIChatBackend` options), ``hf`` takes ``gguf_file``, ``device``, ``batch_size``."""
    if kind == "openai":
        return OpenAIChatBackend(model, **options)
    if kind == "hf":
        return HFChatBackend(model, **options)
    raise XdrError(f"unknown chat back end {kind!r}; choose one of {', '.join(CHAT_BACKENDS)}")


class LLMGenerator:
    """Summarize-then-ask question generation on any :class:`ChatBackend`.

    An answer that does not parse stays ``None`` in its sample's place, so row k is always seed k's answer;
    the runner records it as an ``unparsed`` row.
    """

    def __init__(self, backend: ChatBackend, *, exemplars: str | Path | None = None, num_exemplars: int = 4):
        self.backend = backend
        self.exemplars_path = Path(exemplars) if exemplars is not None else DEFAULT_EXEMPLARS
        self.exemplars = load_exemplars(self.exemplars_path)
        self.num_exemplars = num_exemplars

    @property
    def name(self) -> str:
        return f"llm:{self.backend.name}"

    @property
    def config(self) -> dict[str, Any]:
        return {
            "kind": "llm",
            "prompting": "summarize-then-ask",
            "backend": self.backend.config,
            "system": SYSTEM,
            "exemplars": {"file": self.exemplars_path.name, "sha256": sha256_file(self.exemplars_path)},
            "num_exemplars": self.num_exemplars,
        }

    def prompts(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[Prompt]:
        shots = select_exemplars(self.exemplars, lang, self.num_exemplars)
        seeds = [[row_seed(passage_seed(seed, p.id, lang), k) for k in range(n)] for p in passages]
        return [Prompt(build_messages(p, lang, shots), s) for p, s in zip(passages, seeds, strict=True)]

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str | None]]:
        answers = self.backend.complete(self.prompts(passages, lang, n, seed))
        out = [[None if a is None else a.question for a in map(parse_answer, raw)] for raw in answers]
        unparsed = sum(q is None for qs in out for q in qs)
        if unparsed:
            log.info("%s (%s): %d of %d answers did not parse", self.name, lang, unparsed, n * len(passages))
        return out
