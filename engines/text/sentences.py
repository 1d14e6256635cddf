"""Sentence splitting that knows abbreviations, initials, decimals, ellipses and quotes.

Sentences are the unit of synthesis (one model call each) and of progress
reports, so a wrong split is audible: "Dr. | Smith" gets a pause and a falling
tone in the middle of a name.
"""
from __future__ import annotations

import re

#: Abbreviations that are followed by more of the same sentence (titles, "e.g.").
ENGLISH_NON_FINAL = {
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "gen", "capt", "lt", "col", "sgt", "rev",
    "hon", "fig", "vol", "ch", "no", "vs", "e.g", "i.e", "cf", "approx", "dept", "ave",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}
#: A candidate end: terminators, closing quotes/brackets, then space or the end.
_WESTERN_END = re.compile(r"""([.!?]+|…)(["'”’»)\]]*)(?=\s|$)""")
#: CJK full-width terminators end a sentence without a following space.
_CJK_END = re.compile(r"""([。！？]+)(["'”’」』)\]]*)""")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_INITIAL = re.compile(r"^[A-Z]$")


def _previous_word(text: str, end: int) -> str:
    """The word just before position ``end`` (without its trailing period)."""
    start = end
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in "\"'(“‘":
        start -= 1
    return text[start:end]


def _next_char(text: str, pos: int) -> str:
    rest = text[pos:].lstrip()
    rest = rest.lstrip("\"'“‘(«[")
    return rest[:1]


def _is_boundary(text: str, match: re.Match, language: str) -> bool:
    terminator = match.group(1)
    following = _next_char(text, match.end())
    if not following:
        return True
    if following.islower():
        # "Stop!" he said. / "Wait... what" / e.g. something: the sentence goes on.
        return False
    if terminator != ".":
        return True
    word = _previous_word(text, match.start())
    if _INITIAL.match(word):
        return False
    if language.startswith("en") and word.lower() in ENGLISH_NON_FINAL:
        return False
    return True


def split_paragraph(text: str, language: str = "en-us") -> list[str]:
    """Split one paragraph (no blank lines) into sentences."""
    text = re.sub(r"\s+", " ", text).strip()
    cuts = [m.end() for m in _CJK_END.finditer(text)]
    cuts += [m.end() for m in _WESTERN_END.finditer(text) if _is_boundary(text, m, language)]
    sentences, start = [], 0
    for cut in sorted(set(cuts)):
        piece = text[start:cut].strip()
        if piece:
            sentences.append(piece)
        start = cut
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def split_sentences(text: str, language: str = "en-us") -> list[str]:
    """Split ``text`` into sentences; blank lines always end one (headings, paragraphs)."""
    language = language.lower().replace("_", "-")
    sentences: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        sentences.extend(split_paragraph(paragraph, language))
    return sentences
