"""Text cleanup between a book file and narration.

Turns raw extracted text (hard-wrapped lines, page numbers, running heads,
hyphenated line ends, footnote markers, URLs) into clean paragraphs that read
aloud well. Every step is a small pure function; :func:`clean_block` chains them
according to a :class:`CleanupConfig`.
"""
from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Callable

#: A line shorter than this fraction of the block's median line length, ending
#: a sentence, is taken as the last line of a paragraph (pdf text has no blank
#: lines between paragraphs).
SHORT_LINE_FRACTION = 0.75
#: Blocks of wrapped text need this median line length (characters) before the
#: short-line rule applies; shorter lines are verse or dialogue, kept as is.
MIN_WRAPPED_MEDIAN_CHARS = 40
#: A line is a running header/footer when it sits in the top or bottom lines of
#: at least this fraction of pages.
RUNNING_LINE_PAGE_FRACTION = 0.5
#: How many lines at the top and bottom of a page are searched for running lines.
RUNNING_LINE_DEPTH = 2
#: Running-line detection needs at least this many pages, and a line must repeat
#: on at least this many.
RUNNING_LINE_MIN_PAGES = 3
#: URL paths longer than this (characters) are dropped when read aloud.
MAX_SPOKEN_URL_PATH = 30

CODE_SKIP = "skip"
CODE_READ = "read"

_PAGE_NUMBER = re.compile(
    r"^\s*(?:page\s+)?[-–—]?\s*(?:\d{1,4}|[ivxlc]{1,7})\s*[-–—]?\s*"
    r"(?:(?:of|/)\s*\d{1,4})?\s*$", re.IGNORECASE)
_ROMAN_HEADING = re.compile(r"^\s*[IVXLCDM]{1,7}\.?\s*$")
_SUPERSCRIPT_MARK = re.compile(r"(?<=\w|[.,;:!?\"'”’)])[\u00b9\u00b2\u00b3\u2070-\u2079]+")
_BRACKET_MARK = re.compile(r"(?<=[\w.,;:!?\"'”’)])\[(?:\d{1,3}|[a-z]|\*)\]")
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_SENTENCE_END = re.compile(r"[.!?:;\"'”’)]\s*$")
_HYPHEN_END = re.compile(r"(\w)[-\u2010\u00ad]$")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])(?=\s|$)")


@dataclass
class CleanupConfig:
    """Which cleanup steps run on imported text."""

    remove_page_numbers: bool = True
    """Drop lines that are only a page number ("12", "- 12 -", "Page 12 of 300")."""
    remove_running_lines: bool = True
    """Drop headers/footers repeated at the top or bottom of most pdf pages."""
    fix_hyphenation: bool = True
    """Join words hyphenated across a line break ("exam-\\nple" -> "example")."""
    join_wrapped_lines: bool = True
    """Join hard-wrapped lines into paragraphs; blank lines separate paragraphs."""
    remove_footnote_markers: bool = True
    """Drop footnote markers such as "word¹" or "word[3]"."""
    readable_urls: bool = True
    """Rewrite URLs and e-mail addresses as words ("example dot com")."""
    code_blocks: str = CODE_SKIP
    """"skip" leaves code blocks out of narration; "read" keeps them as text."""

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CleanupConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def normalize_newlines(text: str) -> str:
    """Unix newlines, no BOM, no form feeds, no trailing spaces on lines."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def is_page_number(line: str) -> bool:
    """True when the line holds nothing but a page number."""
    return bool(line.strip()) and bool(_PAGE_NUMBER.match(line))


def drop_page_numbers(lines: list[str]) -> list[str]:
    """Remove page-number lines, keeping a lone upper-case roman numeral (a heading)."""
    return [ln for ln in lines if not is_page_number(ln) or _ROMAN_HEADING.match(ln)]


def _line_key(line: str, is_heading: Callable[[str], bool]) -> str:
    """A line's identity across pages: digits masked ("Page 3" ~ "Page 4"), except
    for headings, where the number is what tells "Chapter 1" from "Chapter 2"."""
    text = _SPACES.sub(" ", line.strip().lower())
    return text if is_heading(line) else re.sub(r"\d+", "#", text)


def _edge_keys(lines: list[str], is_heading: Callable[[str], bool]) -> set[str]:
    """Keys of the first and last few non-empty lines of a page."""
    content = [ln for ln in lines if ln.strip()]
    edge = content[:RUNNING_LINE_DEPTH] + content[-RUNNING_LINE_DEPTH:]
    return {_line_key(ln, is_heading) for ln in edge}


def _never(line: str) -> bool:
    return False


def remove_running_lines(pages: list[str],
                         is_heading: Callable[[str], bool] = _never) -> list[str]:
    """Strip headers/footers that repeat at the top or bottom of most pages.

    ``is_heading`` marks lines (e.g. "Chapter 2") whose numbers must match
    exactly before they count as repeated.
    """
    if len(pages) < RUNNING_LINE_MIN_PAGES:
        return pages
    split = [p.split("\n") for p in pages]
    edges = [_edge_keys(lines, is_heading) for lines in split]
    counts = Counter(key for keys in edges for key in keys)
    need = max(RUNNING_LINE_MIN_PAGES, RUNNING_LINE_PAGE_FRACTION * len(pages))
    running = {k for k, n in counts.items() if n >= need and k}
    if not running:
        return pages
    return ["\n".join(ln for ln in lines
                      if not (_line_key(ln, is_heading) in running & keys))
            for lines, keys in zip(split, edges)]


def split_blocks(text: str) -> list[list[str]]:
    """Group lines into blocks separated by blank lines."""
    blocks: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            blocks[-1].append(line.strip())
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _ends_paragraph(line: str, median: float) -> bool:
    """A short line that ends a sentence closes its paragraph in wrapped text."""
    return len(line) < SHORT_LINE_FRACTION * median and bool(_SENTENCE_END.search(line))


def split_wrapped_block(lines: list[str]) -> list[list[str]]:
    """Split a block of wrapped lines where a short sentence-final line ends a paragraph."""
    if len(lines) < 3:
        return [lines]
    median = statistics.median(len(ln) for ln in lines)
    if median < MIN_WRAPPED_MEDIAN_CHARS:
        return [lines]
    groups: list[list[str]] = [[]]
    for line in lines:
        groups[-1].append(line)
        if _ends_paragraph(line, median):
            groups.append([])
    return [g for g in groups if g]


def join_lines(lines: list[str], fix_hyphenation: bool = True) -> str:
    """Join wrapped lines into one paragraph, undoing end-of-line hyphenation."""
    out = ""
    for line in lines:
        line = line.strip()
        if not out:
            out = line
        elif fix_hyphenation and _HYPHEN_END.search(out) and line[:1].islower():
            out = out[:-1] + line
        else:
            out = f"{out} {line}"
    return out


def strip_footnote_markers(text: str) -> str:
    """Remove footnote markers: superscript digits and bracketed numbers after a word."""
    return _BRACKET_MARK.sub("", _SUPERSCRIPT_MARK.sub("", text))


def _speak_host(host: str) -> str:
    """'docs.example.com' -> 'docs dot example dot com'."""
    return " dot ".join(part for part in host.split(".") if part)


def speak_url(url: str) -> str:
    """A URL as words: scheme and www dropped, dots and slashes spoken, queries dropped."""
    url = re.sub(r"^(?:https?|ftp)://", "", url, flags=re.IGNORECASE)
    url = re.sub(r"^www\.", "", url, flags=re.IGNORECASE)
    url = re.split(r"[?#]", url)[0].rstrip("/")
    host, _, path = url.partition("/")
    spoken = _speak_host(host)
    if path and len(path) <= MAX_SPOKEN_URL_PATH:
        words = [re.sub(r"[-_.]+", " ", seg) for seg in path.split("/") if seg]
        spoken += "".join(f" slash {w}" for w in words)
    return spoken


def readable_urls(text: str) -> str:
    """Rewrite URLs and e-mail addresses so a voice reads them sensibly."""
    def url_sub(match: re.Match) -> str:
        raw = match.group(0)
        trail = re.search(r"[.,;:!?]+$", raw)
        core = raw[: trail.start()] if trail else raw
        return speak_url(core) + (trail.group(0) if trail else "")

    def mail_sub(match: re.Match) -> str:
        user, _, host = match.group(0).partition("@")
        return f"{user.replace('.', ' dot ')} at {_speak_host(host)}"

    return _URL.sub(url_sub, _EMAIL.sub(mail_sub, text))


def clean_paragraph(text: str, cfg: CleanupConfig) -> str:
    """Per-paragraph fixes: footnote markers, URLs, soft hyphens, whitespace."""
    text = text.replace("\u00ad", "")
    if cfg.remove_footnote_markers:
        text = strip_footnote_markers(text)
    if cfg.readable_urls:
        text = readable_urls(text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text))
    return text.strip()


def clean_block(raw: str, cfg: CleanupConfig) -> list[str]:
    """Raw extracted text -> clean paragraphs, per ``cfg``."""
    lines = normalize_newlines(raw).split("\n")
    if cfg.remove_page_numbers:
        lines = drop_page_numbers(lines)
    paragraphs = []
    for block in split_blocks("\n".join(lines)):
        if not cfg.join_wrapped_lines:
            groups = [[ln] for ln in block]
        else:
            groups = split_wrapped_block(block)
        for group in groups:
            text = clean_paragraph(join_lines(group, cfg.fix_hyphenation), cfg)
            if text:
                paragraphs.append(text)
    return paragraphs
