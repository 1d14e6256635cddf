"""Chapter detection: where one chapter ends and the next begins.

Two kinds of input reach this module. Plain text (txt files, pdf pages without
an outline) is scanned line by line for headings such as "Chapter 12",
"CHAPTER TWELVE", "Part II", "Prologue", a lone roman numeral, or failing those
an isolated all-caps line. Structured text (markdown, docx) arrives as
:class:`Block` items with heading levels, and chapters start at the level that
divides the book.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from engines.books.cleanup import CleanupConfig, clean_block, clean_paragraph
from engines.books.model import Chapter

#: Headings are short lines; longer lines are prose.
MAX_HEADING_CHARS = 80
#: A subtitle under "Chapter 3" is a short line of its own.
MAX_SUBTITLE_CHARS = 60
#: All-caps headings: at most this many words (longer caps lines are shouting).
MAX_CAPS_HEADING_WORDS = 10
#: A section whose lines are mostly headings is a table of contents.
TOC_HEADING_FRACTION = 0.6

KIND_CHAPTER = "chapter"
KIND_PART = "part"
KIND_SPECIAL = "special"
KIND_ROMAN = "roman"
KIND_CAPS = "caps"

_NUMBER_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred)(?:[-\s](?:one|two|three|four|five|six|"
    r"seven|eight|nine))?")
_NUMBER = rf"(?:\d{{1,3}}|[ivxlcdm]{{1,7}}|{_NUMBER_WORD})"
_KEYWORD_HEADING = re.compile(
    rf"^(?P<kw>chapter|chap\.|part|book|volume)\s+(?P<num>{_NUMBER})\b[.:]?"
    rf"\s*(?:[-–—:.]\s*)?(?P<rest>.*)$", re.IGNORECASE)
_SPECIAL_HEADING = re.compile(
    r"^(?P<kw>prologue|epilogue|preface|foreword|introduction|afterword|interlude|"
    r"acknowledg(?:e)?ments|appendix(?:\s+[a-z0-9]{1,3})?)[.:]?\s*(?:[-–—:]\s*(?P<rest>.*))?$",
    re.IGNORECASE)
_ROMAN_ALONE = re.compile(r"^[IVXLCDM]{1,7}\.?$")
_SENTENCE_PUNCT = re.compile(r"[.!?,;\"”]$")


@dataclass(frozen=True)
class Heading:
    """A heading found in plain text."""

    start: int
    """Index of the heading line."""
    end: int
    """Index of the first line after the heading (and its subtitle)."""
    title: str
    """Title as it will be shown, e.g. "Chapter 1: The Beginning"."""
    kind: str
    """One of the KIND_* constants."""


@dataclass(frozen=True)
class Block:
    """A unit of structured text: a heading, a paragraph or a code block."""

    kind: str
    """"heading", "paragraph" or "code"."""
    text: str
    """Its text (raw for code, otherwise one paragraph)."""
    level: int = 0
    """Heading level (1 = top); 0 for non-headings."""


def classify_heading(line: str) -> str | None:
    """The kind of a strong heading line, or None when it is not one."""
    line = line.strip()
    if not line or len(line) > MAX_HEADING_CHARS:
        return None
    match = _KEYWORD_HEADING.match(line)
    if match:
        rest = match.group("rest")
        if rest[:1].islower() or (_SENTENCE_PUNCT.search(rest) and len(rest.split()) > 6):
            return None  # prose that happens to start with "Part two of ..."
        is_part = match.group("kw").lower() in ("part", "book", "volume")
        return KIND_PART if is_part else KIND_CHAPTER
    match = _SPECIAL_HEADING.match(line)
    if match and not (match.group("rest") or "")[:1].islower():
        return KIND_SPECIAL
    if _ROMAN_ALONE.match(line):
        return KIND_ROMAN
    return None


def is_caps_heading(line: str) -> bool:
    """An all-caps line short enough to be a heading."""
    letters = [c for c in line if c.isalpha()]
    return (len(letters) >= 3 and all(c.isupper() for c in letters)
            and len(line.strip()) <= MAX_HEADING_CHARS
            and len(line.split()) <= MAX_CAPS_HEADING_WORDS)


def _blank(lines: list[str], i: int) -> bool:
    return i < 0 or i >= len(lines) or not lines[i].strip()


def _tidy_title(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".:").strip()


def _subtitle(lines: list[str], i: int) -> tuple[str, int]:
    """The subtitle line after heading line ``i`` ("CHAPTER I.\\nDown the Rabbit-Hole")."""
    nxt = i + 1
    if not _blank(lines, nxt):
        candidate = lines[nxt].strip()
        if len(candidate) <= MAX_SUBTITLE_CHARS and not classify_heading(candidate):
            return _tidy_title(candidate), nxt + 1
        return "", nxt
    nxt = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), len(lines))
    candidate = lines[nxt].strip() if nxt < len(lines) else ""
    if (candidate and len(candidate) <= MAX_SUBTITLE_CHARS and _blank(lines, nxt + 1)
            and candidate[0].isupper() and not re.search(r"[.!?\"”’]$", candidate)
            and not classify_heading(candidate)):
        return _tidy_title(candidate), nxt + 1
    return "", i + 1


def _has_subtitle_part(line: str) -> bool:
    """True for "Chapter 3: The Storm", False for a bare "Chapter 3"."""
    match = _KEYWORD_HEADING.match(line.strip())
    return bool(match and match.group("rest"))


def _heading_at(lines: list[str], i: int, kind: str) -> Heading:
    title = _tidy_title(lines[i])
    end = i + 1
    if kind in (KIND_CHAPTER, KIND_PART, KIND_ROMAN) and not _has_subtitle_part(lines[i]):
        subtitle, end = _subtitle(lines, i)
        if subtitle:
            title = f"{title}: {subtitle}"
    return Heading(i, end, title, kind)


def find_headings(lines: list[str]) -> list[Heading]:
    """Headings in plain text: strong patterns first, all-caps lines as a fallback."""
    strong, caps = [], []
    i = 0
    while i < len(lines):
        if _blank(lines, i - 1):
            kind = classify_heading(lines[i])
            if kind:
                heading = _heading_at(lines, i, kind)
                strong.append(heading)
                i = heading.end
                continue
            if _blank(lines, i + 1) and is_caps_heading(lines[i]):
                caps.append(Heading(i, i + 1, _tidy_title(lines[i]), KIND_CAPS))
        i += 1
    if strong:
        return strong
    return caps if len(caps) >= 2 else []


def _looks_like_toc(body: list[str]) -> bool:
    content = [ln for ln in body if ln.strip()]
    if not content:
        return False
    headings = sum(1 for ln in content if classify_heading(re.sub(r"\s+\d+$", "", ln)))
    return headings >= TOC_HEADING_FRACTION * len(content)


def split_text(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Split plain text at its headings.

    Returns the text before the first heading and a list of (title, raw body)
    sections. Tables of contents and headings with nothing under them vanish,
    except a "Part" heading, whose title is carried onto the next chapter.
    """
    lines = text.split("\n")
    headings = find_headings(lines)
    if not headings:
        return text, []
    preamble = "\n".join(lines[: headings[0].start])
    sections: list[tuple[str, str]] = []
    carry = ""
    for n, head in enumerate(headings):
        stop = headings[n + 1].start if n + 1 < len(headings) else len(lines)
        body = lines[head.end: stop]
        title = f"{carry}: {head.title}" if carry else head.title
        carry = ""
        if _looks_like_toc(body):
            continue
        if not any(ln.strip() for ln in body):
            carry = title if head.kind == KIND_PART else ""
            continue
        sections.append((title, "\n".join(body)))
    return preamble, sections


def chapters_from_text(text: str, cfg: CleanupConfig) -> tuple[str, list[Chapter]]:
    """Plain text -> (raw text before the first heading, cleaned chapters)."""
    preamble, sections = split_text(text)
    chapters = []
    for title, body in sections:
        paragraphs = clean_block(body, cfg)
        if paragraphs:
            chapters.append(Chapter(title=title, text="\n\n".join(paragraphs)))
    return preamble, chapters


def chapter_level(levels: list[int]) -> int | None:
    """The heading level that divides a book into chapters.

    The top level, unless it occurs once at the very start (the book's title),
    in which case the next level down.
    """
    if not levels:
        return None
    counts = Counter(levels)
    ordered = sorted(counts)
    top = ordered[0]
    if counts[top] == 1 and levels[0] == top and len(ordered) > 1:
        return ordered[1]
    return top


def chapters_from_blocks(blocks: list[Block], cfg: CleanupConfig,
                         default_title: str = "Chapter") -> tuple[str, list[Chapter]]:
    """Structured blocks -> (title heading if the book starts with one, chapters).

    Headings deeper than the chapter level stay in the text as paragraphs (they
    are read aloud); text before the first chapter heading becomes an opening
    chapter when there is any.
    """
    level = chapter_level([b.level for b in blocks if b.kind == "heading"])
    book_heading = ""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for block in blocks:
        if block.kind == "heading" and level is not None and block.level < level \
                and not book_heading and not any(p for _, p in sections):
            book_heading = _tidy_title(block.text)
        elif block.kind == "heading" and block.level == level:
            sections.append((_tidy_title(block.text), []))
        elif block.kind == "code":
            if cfg.code_blocks == "read":
                sections[-1][1].extend(clean_block(block.text, _no_join(cfg)))
        else:
            text = clean_paragraph(block.text, cfg)
            if text:
                sections[-1][1].append(text)
    chapters = [Chapter(title=title or (book_heading or default_title), text="\n\n".join(paras))
                for title, paras in sections if paras]
    return book_heading, chapters


def _no_join(cfg: CleanupConfig) -> CleanupConfig:
    """Code is line-oriented: read each line as its own paragraph."""
    return CleanupConfig.from_dict({**cfg.to_dict(), "join_wrapped_lines": False,
                                    "remove_page_numbers": False})
