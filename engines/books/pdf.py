"""PDF books: the text layer (pypdf), outline bookmarks as chapters.

A PDF without a text layer (a scan) is refused with a pointer to OCR. With an
outline, each top-level bookmark starts a chapter at its page, or at the line
on that page that repeats the bookmark's title; without one the text is split
at headings like a plain-text book.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from engines.books.chapters import classify_heading
from engines.books.cleanup import CleanupConfig, clean_block, remove_running_lines
from engines.books.model import PARAGRAPH_BREAK, Book, Chapter
from engines.books.text import OPENING_CHAPTER_MIN_WORDS, OPENING_TITLE, book_from_plain_text
from engines.errors import BadInput, CancelFn, ProgressFn, check_cancel, never_cancel, no_progress

log = logging.getLogger(__name__)

#: Fewer visible characters than this per page on average means no text layer.
MIN_CHARS_PER_PAGE = 10
NO_TEXT_LAYER = ("this PDF has no text layer (it is a scan or images); run OCR first, "
                 "for example with ocrmypdf, and import the result")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def extract_pages(reader, progress: ProgressFn, should_cancel: CancelFn) -> list[str]:
    """The text of each page, with progress and cancel checks between pages."""
    pages = []
    total = len(reader.pages)
    for n, page in enumerate(reader.pages):
        check_cancel(should_cancel)
        try:
            pages.append(page.extract_text() or "")
        except Exception as err:  # one broken page should not lose the book
            log.warning("pdf page %d unreadable: %s", n + 1, err)
            pages.append("")
        progress((n + 1) / max(total, 1), f"Reading page {n + 1} of {total}")
    return pages


def outline_entries(reader) -> list[tuple[str, int]]:
    """(title, 0-based page) of the bookmarks that divide the book, in page order."""
    try:
        outline = reader.outline
        top = [item for item in outline if not isinstance(item, list)]
        if len(top) == 1 and len(outline) > 1 and isinstance(outline[1], list):
            top = [item for item in outline[1] if not isinstance(item, list)]  # a title bookmark
        entries = [(" ".join(str(item.title).split()), reader.get_destination_page_number(item))
                   for item in top]
    except Exception as err:  # malformed outlines are common; fall back to headings
        log.warning("pdf outline unreadable: %s", err)
        return []
    entries = [(t, p) for t, p in entries if t and p is not None and p >= 0]
    return sorted(entries, key=lambda e: e[1])


def _find_title_line(lines: list[str], first: int, last: int, title: str) -> int | None:
    key = _norm(title)
    for i in range(first, last):
        if key and _norm(lines[i]) and (_norm(lines[i]) == key or _norm(lines[i]).startswith(key)):
            return i
    return None


def chapters_from_outline(pages: list[str], entries: list[tuple[str, int]],
                          cfg: CleanupConfig) -> list[Chapter]:
    """Cut the page text into chapters at the outline's entries."""
    lines: list[str] = []
    page_start: list[int] = []
    for text in pages:
        page_start.append(len(lines))
        lines.extend(text.split("\n"))
    page_start.append(len(lines))
    cuts = []  # (title, first body line, heading line)
    for title, page in entries:
        first, last = page_start[min(page, len(pages) - 1)], page_start[min(page + 1, len(pages))]
        at = _find_title_line(lines, first, last, title)
        cuts.append((title, first if at is None else at + 1, first if at is None else at))
    chapters = []
    preamble = clean_block("\n".join(lines[: cuts[0][2]]), cfg)
    if sum(len(p.split()) for p in preamble) >= OPENING_CHAPTER_MIN_WORDS:
        chapters.append(Chapter(OPENING_TITLE, PARAGRAPH_BREAK.join(preamble)))
    for n, (title, body_start, _) in enumerate(cuts):
        stop = cuts[n + 1][2] if n + 1 < len(cuts) else len(lines)
        paragraphs = clean_block("\n".join(lines[body_start:stop]), cfg)
        if paragraphs:
            chapters.append(Chapter(title, PARAGRAPH_BREAK.join(paragraphs)))
    return chapters


def separate_headings(pages: list[str]) -> str:
    """Join pages, putting blank lines around heading lines so plain-text detection sees them.

    PDF text has no blank lines; a strong heading ("Chapter 4") that opens a
    page or follows a finished sentence is set apart.
    """
    out: list[str] = []
    for text in pages:
        for n, line in enumerate(text.split("\n")):
            prev = out[-1].strip() if out else ""
            opens = n == 0 or not prev or re.search(r"[.!?\"”’]$", prev)
            if classify_heading(line) and opens:
                out.extend(["", line.strip(), ""])
            else:
                out.append(line)
    return "\n".join(out)


def load_pdf(path: Path, cfg: CleanupConfig, progress: ProgressFn = no_progress,
             should_cancel: CancelFn = never_cancel) -> Book:
    """Read a PDF's text layer into a book."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise BadInput(f"{path.name} is password-protected; remove the password first.")
        pages = extract_pages(reader, progress, should_cancel)
    except BadInput:
        raise
    except Exception as err:  # pypdf raises many error types for damaged files
        raise BadInput(f"{path.name} is not a readable PDF ({type(err).__name__}).") from err
    visible = sum(len(re.sub(r"\s", "", p)) for p in pages)
    if visible < MIN_CHARS_PER_PAGE * max(len(pages), 1):
        raise BadInput(NO_TEXT_LAYER)
    if cfg.remove_running_lines:
        pages = remove_running_lines(pages, is_heading=lambda ln: bool(classify_heading(ln)))
    meta = reader.metadata
    title = str(meta.title or "").strip() if meta else ""
    author = str(meta.author or "").strip() if meta else ""
    entries = outline_entries(reader)
    if entries:
        book = Book(title=title or path.stem, chapters=chapters_from_outline(pages, entries, cfg),
                    source_format="pdf")
    else:
        book = book_from_plain_text(separate_headings(pages), path.stem, cfg, "pdf")
    book.title, book.author = title or book.title, author or book.author
    book.language = _language(reader)
    return book


def _language(reader) -> str:
    try:
        return str(reader.trailer["/Root"].get("/Lang", "") or "")
    except Exception:  # a missing or odd catalog just means no language
        return ""
