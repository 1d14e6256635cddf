"""User edits on a chapter list, as pure functions.

Each function takes a list of chapters and returns a new list; the input is
never changed, so the caller can store the result (and undo by keeping the old
list). Indices are 0-based; a bad index raises :class:`BadInput`.
"""
from __future__ import annotations

from dataclasses import replace

from engines.books.model import PARAGRAPH_BREAK, Chapter
from engines.errors import BadInput


def _check_index(chapters: list[Chapter], index: int) -> None:
    if not 0 <= index < len(chapters):
        raise BadInput(f"There is no chapter {index + 1}; the book has {len(chapters)}.")


def merge_chapters(chapters: list[Chapter], first: int, last: int) -> list[Chapter]:
    """Merge chapters ``first``..``last`` (inclusive) into one titled like ``first``."""
    _check_index(chapters, first)
    _check_index(chapters, last)
    if last <= first:
        raise BadInput("Pick at least two neighbouring chapters to merge.")
    group = chapters[first: last + 1]
    text = PARAGRAPH_BREAK.join(c.text for c in group if c.text.strip())
    merged = replace(group[0], text=text, included=any(c.included for c in group))
    return chapters[:first] + [merged] + chapters[last + 1:]


def split_chapter(chapters: list[Chapter], index: int, paragraph: int,
                  title: str = "") -> list[Chapter]:
    """Split chapter ``index`` so that a new chapter starts at ``paragraph``."""
    _check_index(chapters, index)
    chapter = chapters[index]
    paragraphs = chapter.paragraphs()
    if not 0 < paragraph < len(paragraphs):
        raise BadInput(f"A split needs a paragraph between 2 and {len(paragraphs)}; "
                       f"got {paragraph + 1}.")
    head = chapter.with_paragraphs(paragraphs[:paragraph])
    tail = replace(chapter.with_paragraphs(paragraphs[paragraph:]),
                   title=title.strip() or f"{chapter.title} (continued)")
    return chapters[:index] + [head, tail] + chapters[index + 1:]


def rename_chapter(chapters: list[Chapter], index: int, title: str) -> list[Chapter]:
    """Give chapter ``index`` a new, non-empty title."""
    _check_index(chapters, index)
    title = " ".join(title.split())
    if not title:
        raise BadInput("A chapter title cannot be empty.")
    return chapters[:index] + [replace(chapters[index], title=title)] + chapters[index + 1:]


def move_chapter(chapters: list[Chapter], index: int, to: int) -> list[Chapter]:
    """Move chapter ``index`` so that it ends up at position ``to``."""
    _check_index(chapters, index)
    _check_index(chapters, to)
    rest = chapters[:index] + chapters[index + 1:]
    return rest[:to] + [chapters[index]] + rest[to:]


def reorder_chapters(chapters: list[Chapter], order: list[int]) -> list[Chapter]:
    """Chapters in the order given by ``order``, a permutation of their indices."""
    if sorted(order) != list(range(len(chapters))):
        raise BadInput("The new order must list every chapter exactly once.")
    return [chapters[i] for i in order]


def set_included(chapters: list[Chapter], index: int, included: bool) -> list[Chapter]:
    """Include chapter ``index`` in narration, or leave it out."""
    _check_index(chapters, index)
    changed = replace(chapters[index], included=bool(included))
    return chapters[:index] + [changed] + chapters[index + 1:]
