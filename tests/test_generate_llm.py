"""Summarize-then-ask prompting: exemplars, strict parsing and counting, and the HTTP back end against a
fake OpenAI-compatible server on 127.0.0.1 (canned, malformed, failing and slow answers)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from chat_server import BUSY_FAILURES, BUSY_RETRY_AFTER, FakeChatServer, running

from xdr.data.schema import Passage
from xdr.errors import DataError, XdrError
from xdr.generate import (
    LLMGenerator,
    OpenAIChatBackend,
    Prompt,
    load_exemplars,
    make_generator,
    parse_answer,
    run_generation,
)
from xdr.generate.base import passage_seed, row_seed
from xdr.generate.prompts import SYSTEM, build_messages, render_plain, select_exemplars

PASSAGES = [
    Passage("p1", "Lake Baikal is the deepest lake in the world.", "Lake Baikal"),
    Passage("p2", "Honey bees perform the waggle dance.", ""),
]


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("Summary: Baikal is deep.\nQuestion: Насколько глубок Байкал?", "Насколько глубок Байкал?"),
        ("\n  Summary: two\nlines of summary\nQuestion:   Why?  \n\n", "Why?"),
        ("Question: Why?", None),  # no summary
        ("Summary: s\nQuestion:   \n", None),  # empty question
        ("Summary: s\nQuestion: Why?\nThis question is about...", None),  # trailing text
        ("Summary: s\nQuestion: Why?\nQuestion: How?", None),  # two questions
        ("Summary: s Question: Why?", None),  # not on its own line
        ("**Summary:** s\n**Question:** Why?", None),  # markdown decoration
        ("Sure! Here is a question: Why?", None),
    ],
)
def test_parse_answer_is_strict(text: str, question: str | None) -> None:
    answer = parse_answer(text)
    assert (answer.question if answer else None) == question


def test_default_exemplars() -> None:
    exemplars = load_exemplars()
    assert [e.lang for e in exemplars] == ["en", "ja", "ru", "fi"]
    for e in exemplars:
        assert e.summary in e.passage  # extractive: copied word for word
        assert parse_answer(f"Summary: {e.summary}\nQuestion: {e.question}").question == e.question
    assert [e.lang for e in select_exemplars(exemplars, "ru", 2)] == ["ru", "en"]


def test_custom_exemplars_and_their_errors(tmp_path: Path) -> None:
    good = {"passage": "P.", "summary": "P.", "question": "Q?", "lang": " DE"}
    path = tmp_path / "shots.json"
    path.write_text(json.dumps([good]))
    assert load_exemplars(path)[0].lang == "de"
    for bad, field in [
        ([{**good, "question": ""}], "[0].question"),
        ([good, {**good, "extra": "x"}], "[1].extra"),
        ([{**good, "lang": "jp"}], "[0].lang"),
        ([{k: v for k, v in good.items() if k != "summary"}], "[0].summary"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(DataError) as e:
            load_exemplars(path)
        assert e.value.field == field
    path.write_text("{}")
    with pytest.raises(DataError, match="non-empty list"):
        load_exemplars(path)


def test_messages_and_plain_rendering() -> None:
    shot = load_exemplars()[1]
    messages = build_messages(PASSAGES[0], "te", [shot])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == SYSTEM
    assert messages[1]["content"] == f"Language: Japanese\nTitle: Waggle dance\nPassage: {shot.passage}"
    assert messages[2]["content"] == f"Summary: {shot.summary}\nQuestion: {shot.question}"
    assert messages[3]["content"] == "Language: Telugu\nTitle: Lake Baikal\nPassage: " + PASSAGES[0].text
    untitled = build_messages(PASSAGES[1], "te", [])[1]["content"]
    assert untitled == f"Language: Telugu\nPassage: {PASSAGES[1].text}"
    plain = render_plain(messages)
    assert plain == "\n\n".join(
        [SYSTEM, f"{messages[1]['content']}\n{messages[2]['content']}", f"{messages[3]['content']}\n"]
    )


class CannedBackend:
    """Answers from a list, in order; records the prompts."""

    name = "canned"

    def __init__(self, answers: list[str]) -> None:
        self.answers, self.prompts = iter(answers), []
        self.config = {"kind": "canned"}

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        self.prompts.extend(prompts)
        return [[next(self.answers) for _ in p.seeds] for p in prompts]


def test_llm_generator_drops_and_counts_unparsed_answers(tmp_path: Path) -> None:
    ok = "Summary: Lake Baikal is the deepest lake in the world.\nQuestion: Mikä on maailman syvin järvi?"
    other = "Summary: Honey bees perform the waggle dance.\nQuestion: Mitä mehiläiset tanssivat?"
    backend = CannedBackend(["I am sorry, I cannot help.", ok, other, other])
    gen = LLMGenerator(backend, num_exemplars=2)
    out = run_generation(PASSAGES, gen, tmp_path / "g", langs=["fi"], n=2, seed=4)

    assert [p.seeds for p in backend.prompts] == [
        [row_seed(passage_seed(4, p.id, "fi"), k) for k in range(2)] for p in PASSAGES
    ]
    shots = select_exemplars(gen.exemplars, "fi", 2)
    assert backend.prompts[0].messages == build_messages(PASSAGES[0], "fi", shots)
    rows = pq.read_table(out / "part-00000.parquet").to_pylist()
    assert [(r["query"], r["reason"]) for r in rows] == [  # the unparsed answer keeps seed 0's place
        (None, "unparsed"),
        ("Mikä on maailman syvin järvi?", None),
        ("Mitä mehiläiset tanssivat?", None),
        ("Mitä mehiläiset tanssivat?", "duplicate"),
    ]
    assert all(r["generator"] == "llm:canned" for r in rows)
    params = json.loads((out / "meta.json").read_text())["params"]["generator_config"]
    assert params["backend"] == {"kind": "canned"} and params["exemplars"]["file"] == "exemplars.yaml"


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with running() as srv:
        yield srv


def backend(server: FakeChatServer, **kw: Any) -> OpenAIChatBackend:
    return OpenAIChatBackend("tiny-chat", server.url, **{"timeout": 0.3, "backoff": 0.01, "retries": 2} | kw)


def prompt(text: str, seeds: list[int]) -> Prompt:
    return Prompt([{"role": "system", "content": "sys"}, {"role": "user", "content": text}], seeds)


def test_http_answers_in_order_with_seeds_and_key(
    server: FakeChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sekret")
    answers = backend(server, api_key_env="TEST_LLM_KEY", concurrency=4).complete(
        [prompt("a", [1, 2, 3]), prompt("MALFORMED", [4]), prompt("b", [2**40 + 5, 6])]
    )
    assert answers == [
        ["Summary: s\nQuestion: Q1?", "Summary: s\nQuestion: Q2?", "Summary: s\nQuestion: Q3?"],
        ["As an AI, here is a question"],
        [f"Summary: s\nQuestion: Q{(2**40 + 5) % 2**31}?", "Summary: s\nQuestion: Q6?"],
    ]
    headers, body = server.requests[0]
    assert headers["Authorization"] == "Bearer sekret"
    assert {k: body[k] for k in ("model", "temperature", "top_p", "max_tokens")} == {
        "model": "tiny-chat", "temperature": 0.7, "top_p": 0.95, "max_tokens": 256,
    }
    assert body["messages"][0] == {"role": "system", "content": "sys"}


def test_http_keeps_a_prompts_samples_on_one_worker_while_prompts_run_side_by_side() -> None:
    """A server caching prompts per slot (llama.cpp) then evaluates each prompt once, not once per sample."""
    lock, flying, most = threading.Lock(), Counter[str](), Counter[str]()

    def slow(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        with lock:
            flying[text] += 1
            flying["*"] += 1
            for k in (text, "*"):
                most[k] = max(most[k], flying[k])
        time.sleep(0.05)
        with lock:
            flying[text] -= 1
            flying["*"] -= 1
        return f"Q{body['seed']}"

    with running(slow) as srv:
        four = OpenAIChatBackend("m", srv.url, concurrency=4, timeout=5.0)
        answers = four.complete([prompt(t, [1, 2, 3]) for t in "abcd"])
        assert answers == [["Q1", "Q2", "Q3"]] * 4
        assert most["*"] > 1 and all(most[t] == 1 for t in "abcd")
        most.clear()
        assert four.complete([prompt("e", list(range(8)))]) == [[f"Q{k}" for k in range(8)]]
        assert most["e"] > 1  # one prompt, fewer prompts than workers: its samples are shared out


def test_http_config_is_what_changes_answers(server: FakeChatServer) -> None:
    gen = LLMGenerator(backend(server, rate_limit=5.0))
    assert gen.name == "llm:tiny-chat"
    assert json.loads(json.dumps(gen.config)) == gen.config  # survives meta.json, so a resume matches
    assert gen.config["backend"] == {
        "kind": "openai-chat", "model": "tiny-chat", "temperature": 0.7, "top_p": 0.95, "max_tokens": 256,
    }  # not the URL, timeouts or pacing: a resume may use another server of the same model


def test_http_without_key_sends_no_authorization(
    server: FakeChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend(server).complete([prompt("a", [1])])
    assert "Authorization" not in server.requests[0][0]


@pytest.mark.parametrize("mode", ["FLAKY", "SLOW", "GARBAGE"])
def test_http_retries_server_errors_timeouts_and_garbage(server: FakeChatServer, mode: str) -> None:
    assert backend(server).complete([prompt(mode, [7])]) == [["Summary: s\nQuestion: Q7?"]]
    assert server.hits[mode] == 2


def test_http_waits_as_the_busy_server_asks_while_the_other_requests_go_on(
    server: FakeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = list(range(8))
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="xdr.generate.llm"):
        answers = backend(server, retries=3, concurrency=4).complete([prompt("BUSY", seeds)])
    assert answers == [[f"Summary: s\nQuestion: Q{s}?" for s in seeds]]  # every answer, in order
    assert server.hits["BUSY"] == BUSY_FAILURES + len(seeds)
    assert time.monotonic() - start >= BUSY_RETRY_AFTER * 0.9  # Retry-After, not the 0.01 s backoff
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == BUSY_FAILURES and all("HTTP 503: overloaded" in m for m in retries)
    assert "attempt 2 of 4 in 0.3 s" in retries[0]


def test_http_gives_up_after_retries(server: FakeChatServer) -> None:
    with pytest.raises(XdrError, match=r"no answer after 3 attempts \(last: HTTP 500"):
        backend(server).complete([prompt("DOWN", [1])])
    assert server.hits["DOWN"] == 3


def test_http_client_errors_are_not_retried(server: FakeChatServer) -> None:
    with pytest.raises(XdrError, match=r"HTTP 400.*bad model"):
        backend(server).complete([prompt("REFUSED", [1])])
    assert server.hits["REFUSED"] == 1


def test_http_rate_limit_spaces_requests(server: FakeChatServer) -> None:
    start = time.monotonic()
    backend(server, rate_limit=20.0, concurrency=4).complete([prompt("a", list(range(6)))])
    assert time.monotonic() - start >= 5 / 20 * 0.9
    with pytest.raises(XdrError, match="rate limit"):
        backend(server, rate_limit=0.0)


def test_the_request_timeout_reaches_the_http_back_end() -> None:
    gen = make_generator("openai", model="qwen", base_url="http://127.0.0.1:9/v1", timeout=600.0, concurrency=2)
    assert gen.backend.timeout == 600.0 and gen.backend.concurrency == 2
    assert "timeout" not in gen.config["backend"]  # it does not change the answers, so a resume may change it
