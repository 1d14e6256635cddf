"""Plain-text books (.txt): decoding, Project Gutenberg framing, chapters."""
from __future__ import annotations

import re
from pathlib import Path

from engines.books.chapters import chapters_from_text
from engines.books.cleanup import CleanupConfig, clean_block, normalize_newlines, split_blocks
from engines.books.model import PARAGRAPH_BREAK, Book, Chapter

#: Text before the first heading becomes its own chapter from this many words
#: on; shorter openings are a title page and only lend the book its title.
OPENING_CHAPTER_MIN_WORDS = 50
#: Title/author lines are looked for in this many lines at the top.
HEADER_SCAN_LINES = 80
OPENING_TITLE = "Opening"
#: A first line longer than this is prose, not a title.
MAX_TITLE_CHARS = 80

#: Tried in order on files without a UTF-16 byte-order mark.
_ENCODINGS = ("utf-8-sig", "cp1252")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$",
                              re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*$",
                            re.IGNORECASE | re.MULTILINE)


def decode_text(data: bytes) -> str:
    """Bytes of a text file -> str, trying UTF-8 (with BOM), UTF-16, then Windows-1252."""
    encodings = ("utf-16",) if data[:2] in (b"\xff\xfe", b"\xfe\xff") else _ENCODINGS
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")


def strip_gutenberg_frame(text: str) -> tuple[str, str]:
    """Cut Project Gutenberg's licence header and footer; also return the header."""
    start = _GUTENBERG_START.search(text)
    if not start:
        return text, ""
    end = _GUTENBERG_END.search(text, start.end())
    body = text[start.end(): end.start() if end else len(text)]
    return body, text[: start.start()]


def header_field(text: str, name: str) -> str:
    """The value of a "Title: ..." style line near the top of ``text``."""
    head = "\n".join(text.split("\n")[:HEADER_SCAN_LINES])
    match = re.search(rf"^\s*{name}\s*:\s*(.+)$", head, re.IGNORECASE | re.MULTILINE)
    return match.group(1).strip() if match else ""


def title_page_guess(preamble: str) -> tuple[str, str]:
    """(title, author) from a short title page: first line, and a "by ..." line."""
    blocks = split_blocks(preamble)
    lines = [ln for block in blocks[:3] for ln in block]
    first = lines[0] if lines else ""
    # A title stands alone above the text: a block of its own, short, no full stop.
    looks_like_title = (len(blocks[0]) <= 2 and len(first) <= MAX_TITLE_CHARS
                        and not re.search(r"[.,;!?]$", first)) if blocks else False
    title = first if looks_like_title else ""
    author = next((re.sub(r"^by\s+", "", ln, flags=re.IGNORECASE) for ln in lines[1:4]
                   if re.match(r"^by\s+\S", ln, re.IGNORECASE)), "")
    return title, author


def book_from_plain_text(text: str, fallback_title: str, cfg: CleanupConfig,
                         source_format: str = "txt") -> Book:
    """Build a book from plain text (also used for pdfs without an outline)."""
    text = normalize_newlines(text)
    body, header = strip_gutenberg_frame(text)
    preamble, chapters = chapters_from_text(body, cfg)
    preamble_paras = clean_block(preamble, cfg)
    guess_title, guess_author = title_page_guess(preamble)
    title = header_field(header or body, "Title") or guess_title or fallback_title
    author = header_field(header or body, "Author") or guess_author
    opening_words = sum(len(p.split()) for p in preamble_paras)
    if not chapters:
        chapters = [Chapter(title, PARAGRAPH_BREAK.join(preamble_paras))] if preamble_paras else []
    elif opening_words >= OPENING_CHAPTER_MIN_WORDS:
        chapters = [Chapter(OPENING_TITLE, PARAGRAPH_BREAK.join(preamble_paras))] + chapters
    return Book(title=title[:200], author=author[:200], chapters=chapters,
                source_format=source_format)


def load_txt(path: Path, cfg: CleanupConfig) -> Book:
    """Read a .txt book."""
    return book_from_plain_text(decode_text(path.read_bytes()), path.stem, cfg)
