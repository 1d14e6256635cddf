"""Book import for narration: files -> :class:`Book` with clean chapter text.

``load_book(path)`` reads epub, txt, md, pdf (text layer) and docx; the
functions in :mod:`engines.books.edits` change a chapter list the way the user
asks (merge, split, rename, reorder, include/exclude).
"""
from engines.books.cleanup import CleanupConfig
from engines.books.edits import (merge_chapters, move_chapter, rename_chapter,
                                 reorder_chapters, set_included, split_chapter)
from engines.books.loader import SUPPORTED, load_book, sniff_format
from engines.books.model import Book, Chapter, Cover

__all__ = [
    "Book", "Chapter", "Cover", "CleanupConfig", "SUPPORTED", "load_book", "sniff_format",
    "merge_chapters", "split_chapter", "rename_chapter", "move_chapter", "reorder_chapters",
    "set_included",
]
