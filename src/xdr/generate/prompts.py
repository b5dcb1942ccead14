"""Summarize-then-ask prompts (SWIM-IR): the model copies the passage's key sentence, then asks about it.

Writing the summary first makes the model commit to one fact before it switches language, which SWIM-IR
found gives questions that the passage actually answers. The answer format is two lines,
``Summary: ...`` and ``Question: ...``, parsed strictly: anything else is counted as unparsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from xdr.data.schema import Passage
from xdr.errors import DataError, XdrError
from xdr.langs import language_name, normalize_lang

DEFAULT_EXEMPLARS = Path(__file__).with_name("exemplars.yaml")

SYSTEM = (
    "You write search questions about passages. First write an extractive summary: copy, word for word, "
    "the sentence of the passage that matters most. Then write one question in the requested language "
    "that the summary answers, the way a person would ask it. Reply with exactly two lines:\n"
    "Summary: <sentence copied from the passage>\n"
    "Question: <the question in the requested language>"
)

_ANSWER = re.compile(
    r"\A\s*Summary:[ \t]*(?P<summary>\S.*?)\s*\n\s*Question:[ \t]*(?P<question>[^\n]*\S)\s*\Z", re.DOTALL
)

Message = dict[str, str]
R = TypeVar("R")


@dataclass(frozen=True)
class Exemplar:
    """One worked example: an English passage, its extractive summary and a question in ``lang``."""

    passage: str
    summary: str
    question: str
    lang: str
    title: str = ""


@dataclass(frozen=True)
class Answer:
    summary: str
    question: str


def load_records(path: Path, cls: type[R], required: tuple[str, ...]) -> list[R]:
    """A YAML or JSON list of mappings as ``cls`` records (a dataclass with a ``lang`` field): the
    ``required`` fields must be non-empty strings, the others strings; ``lang`` is normalised."""
    try:
        items: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise XdrError(f"{path}: cannot read exemplars ({e})") from None
    if not isinstance(items, list) or not items:
        raise DataError(path, None, None, "expected a non-empty list of exemplars")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(path, None, f"[{i}]", "not a mapping")
        for name in sorted(set(item) - names):
            raise DataError(path, None, f"[{i}].{name}", f"unknown field (expected {', '.join(sorted(names))})")
        for name in required:
            if not isinstance(item.get(name), str) or not item[name].strip():
                raise DataError(path, None, f"[{i}].{name}", "missing or not a non-empty string")
        for name in sorted(set(item) - set(required)):
            if not isinstance(item[name], str):
                raise DataError(path, None, f"[{i}].{name}", "not a string")
        try:
            lang = normalize_lang(item["lang"])
        except XdrError as e:
            raise DataError(path, None, f"[{i}].lang", str(e)) from None
        out.append(cls(**{**item, "lang": lang}))
    return out


def load_exemplars(path: str | Path | None = None) -> list[Exemplar]:
    """Read exemplars from a YAML or JSON list of mappings (the shipped default set when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_EXEMPLARS
    return load_records(p, Exemplar, ("passage", "summary", "question", "lang"))


def select_exemplars(exemplars: list[R], lang: str, k: int) -> list[R]:
    """Up to ``k`` exemplars, those in the target language first (file order otherwise)."""
    return sorted(exemplars, key=lambda e: e.lang != lang)[:k]  # type: ignore[attr-defined]


def _user(title: str, text: str, lang: str) -> str:
    heading = f"Title: {title}\n" if title else ""
    return f"Language: {language_name(lang)}\n{heading}Passage: {text}"


def format_answer(summary: str, question: str) -> str:
    return f"Summary: {summary}\nQuestion: {question}"


def build_messages(passage: Passage, lang: str, exemplars: list[Exemplar]) -> list[Message]:
    """Chat messages: the instruction, each exemplar as a user/assistant turn, then the passage."""
    messages = [{"role": "system", "content": SYSTEM}]
    for e in exemplars:
        messages.append({"role": "user", "content": _user(e.title, e.passage, e.lang)})
        messages.append({"role": "assistant", "content": format_answer(e.summary, e.question)})
    messages.append({"role": "user", "content": _user(passage.title, passage.text, lang)})
    return messages


def render_plain(messages: list[Message]) -> str:
    """One text prompt for a model without a chat template; blank lines separate the turns.

    The model is expected to continue after the last passage with the two answer lines; what follows
    its first blank line (typically an invented next exemplar) is cut by :func:`first_block`.
    """
    system, *turns = messages
    parts = [system["content"]]
    for user, answer in zip(turns[0:-1:2], turns[1::2], strict=True):
        parts.append(f"{user['content']}\n{answer['content']}")
    parts.append(f"{turns[-1]['content']}\n")
    return "\n\n".join(parts)


def first_block(text: str) -> str:
    return text.strip().split("\n\n", 1)[0]


def parse_answer(text: str) -> Answer | None:
    """The summary and question of a well-formed answer; ``None`` for anything else."""
    if text.count("Summary:") != 1 or text.count("Question:") != 1:
        return None
    m = _ANSWER.match(text)
    return Answer(m["summary"], m["question"].strip()) if m else None
