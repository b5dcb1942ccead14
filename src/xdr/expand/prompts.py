"""Prompts for query expansion: four strategies, a translation step, and the exemplars of few-shot.

The strategies follow the paper that studied them for cross-lingual retrieval (Macmillan-Scott et al.,
2025): zero-shot asks for a short passage that answers the query; few-shot shows worked examples first;
chain-of-thought asks the model to reason about the query before writing; rephrase-and-respond asks it to
restate the query and then answer it. Every strategy writes in the language it is told (the query's, or
English after a translation). Translation always targets English, the corpus language.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from xdr.errors import XdrError
from xdr.generate.prompts import Message, load_records, select_exemplars
from xdr.langs import language_name

Strategy = Literal["zero-shot", "few-shot", "cot", "rar"]
Order = Literal["expand", "translate-expand", "expand-translate"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
ORDERS: tuple[str, ...] = get_args(Order)
TARGET = "en"  # the corpus language: translations go there
DEFAULT_EXEMPLARS = Path(__file__).with_name("exemplars.yaml")

_TASK = (
    "You expand search queries for a search engine. Write a short passage, two or three sentences, in the "
    "language given, that answers the query with the words a relevant document would contain."
)
SYSTEMS: dict[str, str] = {
    "zero-shot": f"{_TASK} Reply with the passage only.",
    "few-shot": f"{_TASK} Reply with the passage only, as in the examples.",
    "cot": f"{_TASK} Think step by step: first say what the query asks and what a relevant document would "
    "mention, then write the passage.",
    "rar": "You expand search queries for a search engine. Rephrase and expand the query so that it says "
    "fully what is asked, then respond to it with a short answer. Write both in the language given.",
}
TRANSLATE_SYSTEM = "Translate the text into English. Reply with the English translation only."


@dataclass(frozen=True)
class ExpansionExemplar:
    """One worked expansion: a query and a short passage answering it, both in ``lang``."""

    query: str
    expansion: str
    lang: str


def load_expansion_exemplars(path: str | Path | None = None) -> list[ExpansionExemplar]:
    """Few-shot exemplars from a YAML or JSON list (the shipped set when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_EXEMPLARS
    return load_records(p, ExpansionExemplar, ("query", "expansion", "lang"))


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise XdrError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


def _user(query: str, lang: str) -> str:
    return f"Language: {language_name(lang)}\nQuery: {query}"


def expansion_messages(
    query: str, lang: str, strategy: str, exemplars: list[ExpansionExemplar], num_exemplars: int = 3
) -> list[Message]:
    """The chat turns that ask for an expansion of ``query`` in ``lang`` under ``strategy``."""
    check_choice(strategy, STRATEGIES, "strategy")
    messages = [{"role": "system", "content": SYSTEMS[strategy]}]
    if strategy == "few-shot":
        for e in select_exemplars(exemplars, lang, num_exemplars):
            messages.append({"role": "user", "content": _user(e.query, e.lang)})
            messages.append({"role": "assistant", "content": e.expansion})
    messages.append({"role": "user", "content": _user(query, lang)})
    return messages


def translation_messages(text: str) -> list[Message]:
    """The chat turns that ask for ``text`` in English."""
    return [{"role": "system", "content": TRANSLATE_SYSTEM}, {"role": "user", "content": text}]
