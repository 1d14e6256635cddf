"""``load_book``: pick the importer for a file and check the result is narratable."""
from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

from engines.books.cleanup import CleanupConfig
from engines.books.docx import load_docx
from engines.books.epub import load_epub
from engines.books.markdown import load_markdown
from engines.books.model import Book
from engines.books.pdf import load_pdf
from engines.books.text import load_txt
from engines.errors import BadInput, CancelFn, ProgressFn, never_cancel, no_progress

SUPPORTED = ("epub", "txt", "md", "pdf", "docx")
_SUFFIXES = {".epub": "epub", ".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md",
             ".pdf": "pdf", ".docx": "docx"}
#: Bytes read to sniff a file with an unknown extension.
SNIFF_BYTES = 4096


def sniff_format(path: Path) -> str | None:
    """The book format of ``path``, from its extension or else its first bytes."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt:
        return fmt
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
        if "word/document.xml" in names:
            return "docx"
        return "epub" if "META-INF/container.xml" in names else None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut at the end of the sniffed bytes is still text.
        return "txt" if err.start >= len(head) - 3 and b"\0" not in head else None
    return None if b"\0" in head else "txt"


def _finish(book: Book) -> Book:
    """Drop empty chapters, name untitled ones, refuse a book with nothing to read."""
    chapters = [c for c in book.chapters if c.text.strip()]
    if not chapters:
        raise BadInput("This book has no text to narrate (it is empty once markup is removed).")
    chapters = [c if c.title.strip() else replace(c, title=f"Chapter {n + 1}")
                for n, c in enumerate(chapters)]
    return replace(book, chapters=chapters, title=book.title.strip() or "Untitled")


def load_book(path: str | Path, cfg: CleanupConfig | None = None,
              progress: ProgressFn = no_progress,
              should_cancel: CancelFn = never_cancel) -> Book:
    """Import an epub, txt, md, pdf or docx file as a :class:`Book` with chapters.

    Raises :class:`BadInput` for a missing, empty, damaged or unsupported file
    and for a PDF without a text layer.
    """
    path = Path(path)
    cfg = cfg or CleanupConfig()
    if not path.is_file():
        raise BadInput(f"No such book file: {path}")
    if path.stat().st_size == 0:
        raise BadInput(f"{path.name} is empty.")
    fmt = sniff_format(path)
    if fmt is None:
        raise BadInput(f"Unsupported book format '{path.suffix or path.name}'; "
                       f"import one of: {', '.join(SUPPORTED)}.")
    progress(0.0, f"Reading {path.name}")
    if fmt == "pdf":
        book = load_pdf(path, cfg, progress, should_cancel)
    else:
        book = {"epub": load_epub, "txt": load_txt, "md": load_markdown,
                "docx": load_docx}[fmt](path, cfg)
    progress(1.0, f"Read {len(book.chapters)} chapters")
    return _finish(book)
