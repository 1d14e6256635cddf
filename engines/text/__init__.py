"""Text front-end for TTS: normalize, split into sentences, phonemize, map to ids.

``TextFrontend`` chains the steps for one language and one phoneme id map;
the functions it uses are importable on their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from engines.text.lexicon import Lexicon
from engines.text.normalize import normalize
from engines.text.phoneme_ids import PhonemeIdMap, check_id_map, default_id_map, phoneme_ids
from engines.text.phonemize import check_language, phonemize
from engines.text.sentences import split_sentences

__all__ = [
    "Lexicon", "SentenceIds", "TextFrontend", "default_id_map", "normalize",
    "phoneme_ids", "phonemize", "split_sentences",
]


@dataclass
class SentenceIds:
    """One sentence on its way to the model."""

    text: str
    """The sentence as written in the source."""
    normalized: str
    """The words to be spoken (numbers, abbreviations... expanded; lexicon applied)."""
    phonemes: list[str]
    """espeak-ng phonemes, punctuation and stress kept."""
    ids: list[int] = field(default_factory=list)
    """Model input ids in Piper's layout (bos, pad-interspersed phonemes, eos)."""


def _speaks(phonemes: list[str]) -> bool:
    """True when the phonemes contain a sound, not only punctuation and spaces."""
    return any(p.isalpha() for p in phonemes)


class TextFrontend:
    """Text -> per-sentence phoneme ids for one language and id map."""

    def __init__(self, language: str = "en-us", id_map: Optional[PhonemeIdMap] = None,
                 lexicon: Optional[Lexicon] = None,
                 vowel_clusters: Optional[set[tuple[str, ...]]] = None) -> None:
        """Raises BadInput when espeak-ng has no voice for ``language``."""
        check_language(language)
        self.language = language
        self.id_map = id_map if id_map is not None else default_id_map()
        check_id_map(self.id_map)
        self.lexicon = lexicon
        self.vowel_clusters = vowel_clusters

    def sentence(self, text: str, lexicon: Optional[Lexicon] = None) -> Optional[SentenceIds]:
        """One sentence of text -> its ids, or None when there is nothing to say."""
        normalized = normalize(text, self.language, lexicon or self.lexicon)
        groups = phonemize(normalized, self.language, self.vowel_clusters)
        phonemes: list[str] = []
        for group in groups:
            # espeak may cut our sentence in two (e.g. at an ellipsis); keep it one utterance.
            if phonemes and phonemes[-1] != " ":
                phonemes.append(" ")
            phonemes.extend(group)
        if not _speaks(phonemes):
            return None
        return SentenceIds(text, normalized, phonemes, phoneme_ids(phonemes, self.id_map))

    def sentences(self, text: str, lexicon: Optional[Lexicon] = None) -> list[SentenceIds]:
        """Split ``text`` into sentences and prepare each; silent pieces are left out."""
        prepared = (self.sentence(s, lexicon) for s in split_sentences(text, self.language))
        return [s for s in prepared if s is not None]
