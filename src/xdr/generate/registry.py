"""Generator back ends by name: ``make_generator(kind, **options)`` builds the one ``--generator`` names.

A back end is one function registered with :func:`register_generator`. It takes the options it uses and
ignores the others, so one set of command-line options serves every kind; an option left out falls back
to the generator class's own default. Factories import their classes when called: torch, transformers
and the optional CTranslate2 load only for the kind in use, and a missing CTranslate2 only fails ``ct2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdr.errors import XdrError
from xdr.generate.base import Generator

GeneratorFactory = Callable[..., Generator]

_FACTORIES: dict[str, GeneratorFactory] = {}


def register_generator(kind: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator: make ``factory(model=None, **options)`` the back end for ``kind``."""

    def add(factory: GeneratorFactory) -> GeneratorFactory:
        _FACTORIES[kind] = factory
        return factory

    return add


def generator_kinds() -> list[str]:
    """The registered kinds, in registration order."""
    return list(_FACTORIES)


def make_generator(kind: str, **options: Any) -> Generator:
    """The ``kind`` generator built from ``options`` (``model``, ``device``, ``batch_size``, ``base_url``,
    ``concurrency``, ``gguf_file``, ``exemplars``); each kind reads the ones that apply to it."""
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise XdrError(f"unknown generator {kind!r}; registered: {', '.join(_FACTORIES)}")
    return factory(**options)


def _pick(options: dict[str, Any], *names: str) -> dict[str, Any]:
    """The options a back end takes; the others belong to other kinds."""
    return {name: options[name] for name in names if name in options}


def _llm(kind: str, model: str | None) -> str:
    if model is None:
        raise XdrError(f"--generator {kind} needs --model (the served or local LLM)")
    return model


@register_generator("seq2seq")
def _seq2seq(model: str | None = None, **options: Any) -> Generator:
    """The xQG mT5 checkpoint (or another seq2seq one) through transformers."""
    from xdr.generate.seq2seq import XQG_CHECKPOINT, Seq2SeqGenerator

    return Seq2SeqGenerator(model or XQG_CHECKPOINT, **_pick(options, "device", "batch_size"))


@register_generator("ct2")
def _ct2(model: str | None = None, **options: Any) -> Generator:
    """The same checkpoint decoded by CTranslate2 (an optional dependency)."""
    from xdr.generate.ct2 import CT2Seq2SeqGenerator
    from xdr.generate.seq2seq import XQG_CHECKPOINT

    return CT2Seq2SeqGenerator(model or XQG_CHECKPOINT, **_pick(options, "device", "batch_size"))


@register_generator("openai")
def _openai(model: str | None = None, **options: Any) -> Generator:
    """An LLM behind an OpenAI-compatible chat endpoint, prompted summarize-then-ask."""
    from xdr.generate.llm import LLMGenerator, OpenAIChatBackend

    backend = OpenAIChatBackend(_llm("openai", model), **_pick(options, "base_url", "concurrency", "timeout"))
    return LLMGenerator(backend, **_pick(options, "exemplars"))


@register_generator("hf-llm")
def _hf_llm(model: str | None = None, **options: Any) -> Generator:
    """A local causal LM through transformers, prompted summarize-then-ask."""
    from xdr.generate.llm import HFChatBackend, LLMGenerator

    backend = HFChatBackend(_llm("hf-llm", model), **_pick(options, "gguf_file", "device", "batch_size"))
    return LLMGenerator(backend, **_pick(options, "exemplars"))
