"""The records that flow between readers and stages.

Plain slotted dataclasses rather than pydantic models: an 18M-row corpus streams through these, and
validation happens once in the readers, where the file and line are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Passage:
    id: str
    text: str
    title: str = ""

    def joined(self, separator: str = " ") -> str:
        """Title and text as one string, the way dual encoders usually see a passage."""
        return f"{self.title}{separator}{self.text}" if self.title else self.text


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    lang: str
    text: str
    answers: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """One query with its positive passages and (optionally) hard negatives, as DPR/Tevatron store them."""

    query: Query
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...] = ()
