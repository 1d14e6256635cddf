"""Phonemization with espeak-ng, exactly as Piper voices were trained.

We drive the espeak-ng that piper-tts bundles (``piper.espeakbridge`` and its
data) rather than phonemizer + espeakng-loader: the bridge returns espeak's own
clause terminators and sentence ends, which is how Piper's training data was
phonemized, while phonemizer re-inserts punctuation on its own (quotes and
brackets Piper never saw) and does not split sentences the same way. Same
phonemes in, same ids out, so Piper voices and our models share one path.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

from engines.errors import BadInput
from engines.text.lexicon import PHONEME_BLOCK

#: Terminators after which espeak continues the same sentence; Piper adds a space after them.
CLAUSE_TERMINATORS = (",", ":", ";")
#: espeak marks words read in another language as "(en)word(ko)"; Piper drops the marks.
_LANGUAGE_FLAGS = re.compile(r"\([^)]+\)")

# espeak-ng keeps one global state (current voice, buffers): one caller at a time.
_ESPEAK_LOCK = threading.Lock()
_initialized = False
_current_voice: Optional[str] = None


def espeak_data_dir() -> Path:
    """The espeak-ng data folder shipped inside piper-tts."""
    from piper.phonemize_espeak import ESPEAK_DATA_DIR

    return Path(ESPEAK_DATA_DIR)


def _bridge():
    global _initialized
    from piper import espeakbridge

    if not _initialized:
        espeakbridge.initialize(str(espeak_data_dir()))
        _initialized = True
    return espeakbridge


@lru_cache(maxsize=1)
def language_index() -> dict[str, str]:
    """Language code (lower case, as in espeak's voice files) -> espeak voice name."""
    ranked: dict[str, tuple[int, str]] = {}
    for path in (espeak_data_dir() / "lang").rglob("*"):
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "language":
                priority = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 5
                code = fields[1].lower()
                if code not in ranked or priority < ranked[code][0]:
                    ranked[code] = (priority, path.name)
    return {code: name for code, (_, name) in ranked.items()}


def _select_voice(bridge, language: str) -> None:
    """Make ``language`` espeak's current voice; codes like "en_GB" or "en-gb" work too."""
    global _current_voice
    if language == _current_voice:
        return
    candidates = [language, language.replace("_", "-")]
    alias = language_index().get(language.lower().replace("_", "-"))
    if alias:
        candidates.append(alias)
    for name in candidates:
        try:
            bridge.set_voice(name)
        except RuntimeError:
            continue
        _current_voice = language
        return
    raise BadInput(f"espeak-ng has no voice for language {language!r}.")


def check_language(language: str) -> None:
    """Raise :class:`BadInput` unless espeak-ng can speak ``language``."""
    with _ESPEAK_LOCK:
        _select_voice(_bridge(), language)


def _split_clauses(clauses: Iterable[tuple[str, str, bool]]) -> list[list[str]]:
    """espeak clauses -> phoneme lists per sentence, Piper's way."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for phonemes, terminator, end_of_sentence in clauses:
        phonemes = _LANGUAGE_FLAGS.sub("", phonemes) + terminator
        if terminator in CLAUSE_TERMINATORS:
            phonemes += " "
        # NFD separates accents (e.g. nasal tilde) into their own phonemes.
        current.extend(unicodedata.normalize("NFD", phonemes))
        if end_of_sentence:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _espeak_sentences(text: str, language: str) -> list[list[str]]:
    with _ESPEAK_LOCK:
        bridge = _bridge()
        _select_voice(bridge, language)
        return _split_clauses(bridge.get_phonemes(text))


def merge_vowel_clusters(phonemes: list[str], clusters: set[tuple[str, ...]]) -> list[str]:
    """Join adjacent phonemes that a voice treats as one symbol (e.g. "a", "ɪ" -> "aɪ")."""
    if not clusters:
        return phonemes
    longest = max(len(c) for c in clusters)
    out: list[str] = []
    i = 0
    while i < len(phonemes):
        for n in range(min(longest, len(phonemes) - i), 1, -1):
            if tuple(phonemes[i:i + n]) in clusters:
                out.append("".join(phonemes[i:i + n]))
                i += n
                break
        else:
            out.append(phonemes[i])
            i += 1
    return out


def phonemize(text: str, language: str = "en-us",
              vowel_clusters: Optional[set[tuple[str, ...]]] = None) -> list[list[str]]:
    """Phonemes per sentence (espeak's sentences), punctuation and stress kept.

    ``[[ phonemes ]]`` blocks pass through as they are, joined to the sentence
    around them, exactly as Piper treats them.
    """
    sentences: list[list[str]] = []
    parts = PHONEME_BLOCK.split(text)
    after_block = False
    for i, part in enumerate(parts):
        if PHONEME_BLOCK.fullmatch(part):
            if not sentences:
                sentences.append([])
            if i > 0 and parts[i - 1].endswith(" "):
                sentences[-1].append(" ")
            sentences[-1].extend(part[2:-2].strip())
            if i < len(parts) - 1 and parts[i + 1].startswith(" "):
                sentences[-1].append(" ")
            after_block = True
            continue
        found = _espeak_sentences(part, language) if part else []
        if after_block and found:
            sentences[-1].extend(found.pop(0))
        sentences.extend(found)
        after_block = False
    sentences = [s for s in sentences if s]
    if vowel_clusters:
        sentences = [merge_vowel_clusters(s, vowel_clusters) for s in sentences]
    return sentences
