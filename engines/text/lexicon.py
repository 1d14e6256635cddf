"""A user lexicon: words the front-end should say differently.

Each entry maps a word (or a few words) to replacement text, or to phonemes
written as ``[[ phonemes ]]`` which go to the model as they are, the same
convention Piper uses. Matching ignores case and respects word boundaries.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from engines.errors import BadInput

#: A block of raw phonemes inside text: ``[[ həlˈoʊ ]]``.
PHONEME_BLOCK = re.compile(r"(\[\[.*?\]\])")


@dataclass
class Lexicon:
    """Word -> replacement text or ``[[ phonemes ]]``, applied before phonemization."""

    entries: dict[str, str] = field(default_factory=dict)
    """Spelling as written in books (any case) -> what to say instead."""

    def __post_init__(self) -> None:
        cleaned = {}
        for word, replacement in self.entries.items():
            word, replacement = word.strip(), replacement.strip()
            if not word:
                raise BadInput("A lexicon entry has an empty word.")
            if replacement.startswith("[[") and not PHONEME_BLOCK.fullmatch(replacement):
                raise BadInput(f"Lexicon entry {word!r}: phonemes must be written as [[ phonemes ]].")
            cleaned[word] = replacement
        self.entries = cleaned
        self._pattern = self._compile()
        self._by_key = {w.casefold(): r for w, r in cleaned.items()}

    def _compile(self) -> Optional[re.Pattern]:
        if not self.entries:
            return None
        # Longest first so "New York City" wins over "New York".
        words = sorted(self.entries, key=len, reverse=True)
        alternatives = "|".join(re.escape(w) for w in words)
        return re.compile(rf"(?<![\w\[])(?:{alternatives})(?![\w\]])", re.IGNORECASE)

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> "Lexicon":
        """Build from a plain mapping (as stored in a project's JSON)."""
        return cls(dict(data))

    def to_dict(self) -> dict[str, str]:
        """The entries as a plain mapping."""
        return dict(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def apply(self, text: str) -> str:
        """Replace every listed word in ``text``; phoneme blocks already there are kept."""
        if self._pattern is None:
            return text
        parts = PHONEME_BLOCK.split(text)
        return "".join(p if PHONEME_BLOCK.fullmatch(p) else self._replace(p) for p in parts)

    def _replace(self, text: str) -> str:
        return self._pattern.sub(lambda m: self._by_key[m.group(0).casefold()], text)
