"""experiments/artifacts/derive_prefix.py: an n = 2 artifact started from an n = 4 run's shards equals a
direct n = 2 run, also where unparsed answers hid which seed failed, and the plain runner resumes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import load_script

from xdr.data.schema import Passage
from xdr.generate import run_generation
from xdr.generate.artifact import shard_paths
from xdr.generate.llm import LLMGenerator, Prompt

QUESTIONS = {"de": "Wie tief ist der See", "es": "Qué profundidad tiene el lago"}


class SeededBackend:
    """Answers from the seed alone, as a server that honours ``seed``; every seed divisible by 7 is unparsed."""

    name = "seeded"

    def __init__(self) -> None:
        self.config = {"kind": "seeded"}
        self.requests = 0

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        self.requests += sum(len(p.seeds) for p in prompts)
        return [[self.answer(p, s) for s in p.seeds] for p in prompts]

    @staticmethod
    def answer(prompt: Prompt, seed: int) -> str:
        if seed % 7 == 0:
            return "Sure! Here is a question."
        lang = "de" if "German" in prompt.messages[-1]["content"] else "es"
        return f"Summary: The lake is deep.\nQuestion: {QUESTIONS[lang]} {seed % 1000}?"


@pytest.fixture(scope="module")
def derive() -> ModuleType:
    return load_script("experiments/artifacts/derive_prefix.py", "derive_prefix")


def table(out: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in shard_paths(out)])


def test_prefix_of_a_larger_run_is_the_smaller_run_and_resumes(derive: ModuleType, tmp_path: Path) -> None:
    passages = [Passage(f"p{i}", f"The lake number {i} is very deep and very cold.") for i in range(6)]
    langs = ["de", "es"]
    source, direct, derived = tmp_path / "n4", tmp_path / "n2", tmp_path / "n2-derived"
    run_generation(passages[:4], LLMGenerator(SeededBackend()), source, langs=langs, n=4, shard_size=2,
                   progress=False)  # the larger run covers the first 4 passages
    run_generation(passages, LLMGenerator(SeededBackend()), direct, langs=langs, n=2, shard_size=2, progress=False)

    live = LLMGenerator(SeededBackend())
    replay = derive.PrefixReplay(live, source)
    with pytest.raises(derive.NotCovered):
        run_generation(passages, replay, derived, langs=langs, n=2, shard_size=2, progress=False)
    assert len(shard_paths(derived)) == 2  # the 4 covered passages; nothing of the third shard
    # seed-divisible-by-7 answers did not parse, so some groups were asked again, the others copied
    assert replay.asked > 0 and replay.copied > 0 and replay.asked + replay.copied == 4 * len(langs)
    assert live.backend.requests == 2 * replay.asked
    assert table(derived).equals(table(direct).slice(0, table(derived).num_rows))

    run_generation(passages, LLMGenerator(SeededBackend()), derived, langs=langs, n=2, shard_size=2, progress=False)
    assert table(derived).equals(table(direct))


def test_extend_goes_on_with_the_live_server(derive: ModuleType, tmp_path: Path) -> None:
    passages = [Passage(f"p{i}", f"The lake number {i} is very deep and very cold.") for i in range(6)]
    source, direct, derived = tmp_path / "n4", tmp_path / "n2", tmp_path / "n2-derived"
    run_generation(passages[:2], LLMGenerator(SeededBackend()), source, langs=["de"], n=4, shard_size=2,
                   progress=False)
    run_generation(passages, LLMGenerator(SeededBackend()), direct, langs=["de"], n=2, shard_size=2, progress=False)
    replay = derive.PrefixReplay(LLMGenerator(SeededBackend()), source, extend=True)
    run_generation(passages, replay, derived, langs=["de"], n=2, shard_size=2, progress=False)
    assert table(derived).equals(table(direct)) and replay.asked >= 4  # the 4 passages past the source
