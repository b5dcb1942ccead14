"""Filters on hand-made outputs, and the statistics recomputed from the shards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate import FilterSettings, filter_outputs, generation_stats, run_generation, stats_markdown
from xdr.generate.filters import normalize_text, wrong_language

EIFFEL = Passage(
    "e1",
    "The Eiffel Tower was built in 1889 for the World's Fair in Paris. It was the tallest structure in the "
    "world until 1930.",
    "Eiffel Tower",
)
DEFAULT = FilterSettings()


def reasons(
    outputs: Sequence[str | None], lang: str = "en", settings: FilterSettings | None = DEFAULT
) -> list[str | None]:
    return filter_outputs(outputs, EIFFEL, lang, settings)


def test_empty_unparsed_and_too_long() -> None:
    long_words = "why " * 49 + "?"
    assert reasons([None, "  ", "x" * 257, long_words, "How tall is the Eiffel Tower?"]) == [
        "unparsed", "empty", "too_long", "too_long", None,
    ]
    assert reasons(["x" * 30], settings=FilterSettings(max_chars=20)) == ["too_long"]


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("the Eiffel Tower was built in 1889", "copy"),  # a span of the passage
        ("Paris", "copy"),  # a bare entity from the passage is not a question
        ("EIFFEL TOWER", "copy"),  # the title counts, case-folded
        ("It was the tallest structure in the world until 1930, right", "copy"),  # 8 of 9 trigrams
        ("When was the Eiffel Tower built?", None),  # same words, new order: 1 of 4 trigrams
        ("Pariser", None),  # token boundaries: not the word "Paris"
    ],
)
def test_copy_rule(output: str, reason: str | None) -> None:
    assert reasons([output]) == [reason]


@pytest.mark.parametrize(
    ("output", "lang", "wrong"),
    [
        ("When was the Eiffel Tower built?", "ja", True),
        ("Wann wurde der Eiffelturm gebaut?", "fi", True),
        ("Milloin Eiffel-torni rakennettiin?", "fi", False),
        ("エッフェル塔はいつ建てられましたか？", "ja", False),
        ("Когда была построена Эйфелева башня?", "ru", False),
        ("ఈఫిల్ టవర్ ఎప్పుడు నిర్మించబడింది?", "te", False),
        ("Siapa yang menemukan bola lampu?", "id", False),  # identified as Malay: a close language
        ("Hvem oppfant lyspæren?", "da", False),  # Norwegian for Danish: close
        ("Who is he?", "ja", False),  # 8 letters: too short to judge
        ("Eiffel-tornet byggdes när?", "yi", False),  # a target the identifier does not know
        # seen in the real run: German spread over de 0.48 + lb 0.33, English at en 0.49; no other
        # language reaches 0.5, yet the target language gets almost nothing
        ("Wie hat der Broncos den Pittsburgh Steelers besiegt?", "el", True),
        ("Who won the AFC Championship Game?", "hi", True),
        ("Ai đã thắng cho Denver Broncos?", "vi", False),
    ],
)
def test_language_rule(output: str, lang: str, wrong: bool) -> None:
    assert wrong_language(output, lang, DEFAULT) is wrong


def test_language_check_can_be_disabled() -> None:
    german = ["Wann wurde der Eiffelturm gebaut?"]
    assert reasons(german, "fi") == ["wrong_language"]
    assert reasons(german, "fi", FilterSettings(language_check=False)) == [None]


def test_duplicates_after_normalisation_keep_the_first() -> None:
    assert normalize_text("  Who BUILT  the tower？ ") == "who built the tower"
    got = reasons(["Who built it first?", "who built it first", None, "Who  built it FIRST ?", "Why?"])
    assert got == [None, "duplicate", "unparsed", "duplicate", None]
    # a copy is dropped as a copy, so a later equal output is a copy too rather than a duplicate
    assert reasons(["Paris", "paris"]) == ["copy", "copy"]


def test_no_filters_only_flags_unparsed() -> None:
    assert reasons(["", "Paris", "Paris", None], settings=None) == [None, None, None, "unparsed"]


def test_settings_are_validated_and_recorded() -> None:
    with pytest.raises(XdrError, match="copy_overlap"):
        FilterSettings(copy_overlap=0)
    d = DEFAULT.as_dict()
    assert d["min_confidence"] == 0.5 and d["language_identifier"].startswith("py3langid ")


class Scripted:
    """Returns the same outputs for every passage of a language."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = script
        self.config: dict[str, Any] = {}

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        return [self.script[lang] for _ in passages]


def test_generation_stats(tmp_path: Path) -> None:
    script = {
        "fi": ["Milloin Eiffel-torni rakennettiin?", "milloin eiffel-torni rakennettiin", "Paris", ""],
        "de": ["Wann wurde der Eiffelturm gebaut?", "When was the Eiffel Tower built?", "Wie hoch?"],
    }
    passages = [EIFFEL, Passage("e2", EIFFEL.text, "")]
    out = run_generation(passages, Scripted(script), tmp_path / "g", langs=["fi", "de"], n=4, shard_size=1)

    stats = generation_stats(out)
    assert list(stats) == ["fi", "de", "all"]
    fi, de, total = stats["fi"], stats["de"], stats["all"]
    assert (fi["passages"], fi["count"], fi["kept"]) == (2, 8, 2)
    assert fi["duplicate_rate"] == fi["copy_rate"] == fi["empty_rate"] == 0.25
    assert fi["mean_length"] == len("Milloin Eiffel-torni rakennettiin?")
    assert (de["kept"], de["wrong_language_rate"], de["unparsed_rate"]) == (4, 0.25, 0.25)
    assert de["mean_length"] == (len("Wann wurde der Eiffelturm gebaut?") + len("Wie hoch?")) / 2
    assert (total["passages"], total["count"], total["kept"], total["kept_rate"]) == (4, 16, 6, 6 / 16)

    table = stats_markdown(stats).splitlines()
    assert table[0].startswith("| lang | passages | count | kept | kept % | unparsed % |")
    assert table[2] == "| fi | 2 | 8 | 2 | 25.0 | 0.0 | 25.0 | 0.0 | 25.0 | 0.0 | 25.0 | 34.0 |"
    assert len(table) == 5
