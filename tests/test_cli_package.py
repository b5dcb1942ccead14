"""The CLI package's wiring: `xdr --help` imports no torch, and `--generator` names a registered back end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xdr.errors import XdrError
from xdr.generate import LLMGenerator, OpenAIChatBackend, generator_kinds, make_generator


def test_importing_the_cli_does_not_import_torch() -> None:
    code = "import sys, xdr.cli; assert 'torch' not in sys.modules, 'torch was imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unknown_generator_lists_the_registered_ones() -> None:
    assert generator_kinds() == ["seq2seq", "ct2", "openai", "hf-llm"]
    with pytest.raises(XdrError, match=r"unknown generator 'gpt'; registered: seq2seq, ct2, openai, hf-llm"):
        make_generator("gpt")


def test_openai_generator_is_built_without_network(tmp_path) -> None:
    shots = tmp_path / "shots.json"
    shots.write_text('[{"passage": "P.", "summary": "P.", "question": "Q?", "lang": "de"}]')
    gen = make_generator(
        "openai", model="qwen2.5", base_url="http://127.0.0.1:9/v1", concurrency=3, exemplars=shots,
        gguf_file=None, batch_size=32, device=None,  # options of other back ends are ignored
    )
    assert isinstance(gen, LLMGenerator) and isinstance(gen.backend, OpenAIChatBackend)
    assert gen.backend.url == "http://127.0.0.1:9/v1/chat/completions" and gen.backend.concurrency == 3
    assert [e.lang for e in gen.exemplars] == ["de"]
    with pytest.raises(XdrError, match="needs --model"):
        make_generator("openai")
