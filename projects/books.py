"""Books of a project: import, chapters with their text, edits saved at once, the lexicon.

A book row holds metadata and narration settings; its chapters hold their own
text, so every edit (rename, merge, split, reorder, include/exclude, fix a
sentence) is one UPDATE that survives a crash. Edits keep chapter ids where a
chapter survives, so per-chapter choices (voice override, finished audio)
follow the chapter, not its position. The merge/split logic itself lives in
:mod:`engines.books.edits`; this module applies its result to rows.

The pronunciation lexicon is per project and applies to every narration in it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engines.books import (Book, Chapter, CleanupConfig, load_book, merge_chapters,
                           split_chapter)
from engines.books.model import PARAGRAPH_BREAK
from engines.text import Lexicon
from projects.errors import BadInput, NotFound
from projects.projects import get_project
from projects.records import Project
from projects.store import Store, dumps, loads, now
from projects.workspace import Workspace, atomic_path, safe_filename

BOOKS_DIR = "books"
MAX_LEXICON_WORD_CHARS = 80


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class BookRecord:
    """A stored book."""

    id: int
    project_id: int
    title: str
    author: str
    language: str
    source_format: str
    source_path: str
    cover_path: str | None
    cover_mime: str | None
    settings: dict
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChapterRecord:
    """A stored chapter; ``position`` is 0-based reading order."""

    id: int
    book_id: int
    position: int
    title: str
    text: str
    included: bool
    updated_at: float
    voice: str | None = None
    audio_path: str | None = None
    audio_key: str | None = None
    report: dict = field(default_factory=dict)

    def as_chapter(self) -> Chapter:
        """The engine's view of this chapter (for edits)."""
        return Chapter(self.title, self.text, bool(self.included))

    def paragraphs(self) -> list[str]:
        """Non-empty paragraphs in order."""
        return self.as_chapter().paragraphs()

    def word_count(self) -> int:
        """Words in the chapter text."""
        return len(self.text.split())


@dataclass(frozen=True)
class SentenceRecord:
    """A sentence as last planned for narration."""

    id: int
    chapter_id: int
    position: int
    paragraph: int
    text: str
    normalized: str
    cache_key: str
    status: str
    wer: float | None = None
    heard: str | None = None


def _book(row: dict) -> BookRecord:
    return BookRecord(**{**row, "settings": loads(row["settings"], {})})


def _chapter(row: dict) -> ChapterRecord:
    return ChapterRecord(**{**row, "included": bool(row["included"]),
                            "report": loads(row["report"], {})})


# --------------------------------------------------------------------------- import

def _copy_source(ws: Workspace, project: Project, book_id: int, path: Path) -> Path:
    folder = ws.project_dir(project.slug) / BOOKS_DIR / str(book_id)
    target = folder / safe_filename(path.name, default="book")
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    return target


def _save_cover(ws: Workspace, project: Project, book_id: int, book: Book) -> tuple[str, str] | None:
    if book.cover is None:
        return None
    target = ws.project_dir(project.slug) / BOOKS_DIR / str(book_id) / f"cover.{book.cover.extension()}"
    with atomic_path(target) as tmp:
        tmp.write_bytes(book.cover.data)
    return ws.relative(target), book.cover.mime


def import_book(store: Store, ws: Workspace, project: str | int | Project, path: Path | str,
                cleanup: CleanupConfig | None = None) -> BookRecord:
    """Read a book file (epub, txt, md, pdf, docx) into the project with its chapters.

    BadInput for an empty, corrupt or unsupported file or a pdf without text.
    """
    project = project if isinstance(project, Project) else get_project(store, project)
    path = Path(path)
    book = load_book(path, cleanup)
    t = now()
    with store.db.conn:
        book_id = store.db["books"].insert({
            "project_id": project.id, "title": book.title, "author": book.author,
            "language": book.language, "source_format": book.source_format,
            "created_at": t, "updated_at": t}).last_pk
        store.db["chapters"].insert_all(
            [{"book_id": book_id, "position": n, "title": c.title, "text": c.text,
              "included": int(c.included), "updated_at": t} for n, c in enumerate(book.chapters)])
    source = _copy_source(ws, project, book_id, path)
    values = {"source_path": ws.relative(source)}
    cover = _save_cover(ws, project, book_id, book)
    if cover:
        values.update(cover_path=cover[0], cover_mime=cover[1])
    store.db["books"].update(book_id, values)
    return get_book(store, book_id)


# --------------------------------------------------------------------------- reading

def get_book(store: Store, book_id: int) -> BookRecord:
    """A book by id; NotFound otherwise."""
    row = store.one("SELECT * FROM books WHERE id = ?", [int(book_id)])
    if row is None:
        raise NotFound(f"No book #{book_id}.")
    return _book(row)


def list_books(store: Store, project_id: int) -> list[BookRecord]:
    """A project's books, newest first."""
    rows = store.all("SELECT * FROM books WHERE project_id = ? ORDER BY id DESC", [project_id])
    return [_book(r) for r in rows]


def list_chapters(store: Store, book_id: int) -> list[ChapterRecord]:
    """A book's chapters in reading order."""
    rows = store.all("SELECT * FROM chapters WHERE book_id = ? ORDER BY position, id", [book_id])
    return [_chapter(r) for r in rows]


def get_chapter(store: Store, chapter_id: int) -> ChapterRecord:
    """A chapter by id; NotFound otherwise."""
    row = store.one("SELECT * FROM chapters WHERE id = ?", [int(chapter_id)])
    if row is None:
        raise NotFound(f"No chapter #{chapter_id}.")
    return _chapter(row)


def chapter_at(store: Store, book_id: int, number: int) -> ChapterRecord:
    """The chapter at 1-based ``number`` in reading order."""
    chapters = list_chapters(store, book_id)
    if not 1 <= int(number) <= len(chapters):
        raise BadInput(f"There is no chapter {number}; the book has {len(chapters)}.")
    return chapters[int(number) - 1]


def list_sentences(store: Store, chapter_id: int) -> list[SentenceRecord]:
    """A chapter's sentences as planned by the last narration."""
    rows = store.all("SELECT * FROM sentences WHERE chapter_id = ? ORDER BY position", [chapter_id])
    return [SentenceRecord(**r) for r in rows]


def delete_book(store: Store, ws: Workspace, book_id: int) -> None:
    """Remove a book, its chapters and its imported file."""
    book = get_book(store, book_id)
    project = get_project(store, book.project_id)
    store.db.execute("DELETE FROM books WHERE id = ?", [book.id])
    store.db.conn.commit()
    shutil.rmtree(ws.project_dir(project.slug) / BOOKS_DIR / str(book.id), ignore_errors=True)


# --------------------------------------------------------------------------- chapter edits

def _touch(store: Store, book_id: int) -> None:
    store.db["books"].update(book_id, {"updated_at": now()})


def _renumber(store: Store, ids: list[int]) -> None:
    for position, chapter_id in enumerate(ids):
        store.db.execute("UPDATE chapters SET position = ? WHERE id = ?", [position, chapter_id])


def _update_chapter(store: Store, chapter_id: int, values: dict) -> ChapterRecord:
    with store.db.conn:
        store.db["chapters"].update(chapter_id, {**values, "updated_at": now()})
        _touch(store, get_chapter(store, chapter_id).book_id)
    return get_chapter(store, chapter_id)


def rename_chapter(store: Store, chapter_id: int, title: str) -> ChapterRecord:
    """Give a chapter a new, non-empty title."""
    title = " ".join(str(title or "").split())
    if not title:
        raise BadInput("A chapter title cannot be empty.")
    return _update_chapter(store, chapter_id, {"title": title})


def set_chapter_included(store: Store, chapter_id: int, included: bool) -> ChapterRecord:
    """Include a chapter in narration or leave it out."""
    return _update_chapter(store, chapter_id, {"included": int(bool(included))})


def set_chapter_voice(store: Store, chapter_id: int, voice_key: str | None) -> ChapterRecord:
    """Narrate this chapter with another voice (None: the book's voice)."""
    return _update_chapter(store, chapter_id, {"voice": voice_key or None})


def set_chapter_text(store: Store, chapter_id: int, text: str) -> ChapterRecord:
    """Replace a chapter's text (paragraphs separated by blank lines)."""
    paragraphs = [" ".join(p.split()) for p in str(text or "").replace("\r", "").split("\n\n")]
    text = PARAGRAPH_BREAK.join(p for p in paragraphs if p)
    if not text:
        raise BadInput("A chapter cannot be empty; exclude it instead.")
    return _update_chapter(store, chapter_id, {"text": text})


def edit_sentence(store: Store, sentence_id: int, new_text: str) -> ChapterRecord:
    """Change one sentence in its chapter's text; only it is narrated again."""
    row = store.one("SELECT * FROM sentences WHERE id = ?", [int(sentence_id)])
    if row is None:
        raise NotFound(f"No sentence #{sentence_id}.")
    new_text = " ".join(str(new_text or "").split())
    if not new_text:
        raise BadInput("A sentence cannot be empty.")
    chapter = get_chapter(store, row["chapter_id"])
    if row["text"] not in chapter.text:
        raise BadInput("The chapter changed since this sentence was planned; edit the chapter text.")
    return set_chapter_text(store, chapter.id, chapter.text.replace(row["text"], new_text, 1))


def merge_with_next(store: Store, chapter_id: int) -> ChapterRecord:
    """Merge a chapter with the one after it; the merged chapter keeps the first's id."""
    chapter = get_chapter(store, chapter_id)
    rows = list_chapters(store, chapter.book_id)
    index = [c.id for c in rows].index(chapter.id)
    merged = merge_chapters([c.as_chapter() for c in rows], index, index + 1)[index]
    with store.db.conn:
        store.db.execute("DELETE FROM chapters WHERE id = ?", [rows[index + 1].id])
        store.db["chapters"].update(chapter.id, {"text": merged.text, "included": int(merged.included),
                                                 "updated_at": now()})
        _renumber(store, [c.id for i, c in enumerate(rows) if i != index + 1])
        _touch(store, chapter.book_id)
    return get_chapter(store, chapter.id)


def split_chapter_at(store: Store, chapter_id: int, paragraph: int, title: str = "") -> ChapterRecord:
    """Start a new chapter at 1-based ``paragraph``; returns the new chapter."""
    chapter = get_chapter(store, chapter_id)
    rows = list_chapters(store, chapter.book_id)
    index = [c.id for c in rows].index(chapter.id)
    head, tail = split_chapter([c.as_chapter() for c in rows], index, int(paragraph) - 1,
                               title)[index:index + 2]
    with store.db.conn:
        store.db["chapters"].update(chapter.id, {"text": head.text, "updated_at": now()})
        new_id = store.db["chapters"].insert({
            "book_id": chapter.book_id, "position": index + 1, "title": tail.title,
            "text": tail.text, "included": int(tail.included), "voice": chapter.voice,
            "updated_at": now()}).last_pk
        ids = [c.id for c in rows]
        _renumber(store, ids[:index + 1] + [new_id] + ids[index + 1:])
        _touch(store, chapter.book_id)
    return get_chapter(store, new_id)


def move_chapter_to(store: Store, chapter_id: int, number: int) -> list[ChapterRecord]:
    """Move a chapter to 1-based position ``number``; returns the new order."""
    chapter = get_chapter(store, chapter_id)
    ids = [c.id for c in list_chapters(store, chapter.book_id)]
    if not 1 <= int(number) <= len(ids):
        raise BadInput(f"There is no position {number}; the book has {len(ids)} chapters.")
    ids.remove(chapter.id)
    ids.insert(int(number) - 1, chapter.id)
    with store.db.conn:
        _renumber(store, ids)
        _touch(store, chapter.book_id)
    return list_chapters(store, chapter.book_id)


# --------------------------------------------------------------------------- settings

def save_book_settings(store: Store, book_id: int, settings: dict) -> BookRecord:
    """Remember a book's narration settings (a plain dict; see projects.narrate)."""
    get_book(store, book_id)
    store.db["books"].update(int(book_id), {"settings": dumps(settings), "updated_at": now()})
    return get_book(store, book_id)


# --------------------------------------------------------------------------- lexicon

def lexicon_entries(store: Store, project_id: int) -> dict[str, str]:
    """The project's lexicon as word -> replacement, sorted by word."""
    rows = store.all("SELECT word, replacement FROM lexicon WHERE project_id = ? "
                     "ORDER BY word COLLATE NOCASE", [project_id])
    return {r["word"]: r["replacement"] for r in rows}


def get_lexicon(store: Store, project_id: int) -> Lexicon:
    """The project's lexicon, ready for the text front-end."""
    return Lexicon.from_dict(lexicon_entries(store, project_id))


def set_lexicon_entry(store: Store, project_id: int, word: str, replacement: str) -> dict[str, str]:
    """Add or change one entry (replacement text, or phonemes as ``[[ ... ]]``)."""
    word, replacement = " ".join(str(word or "").split()), str(replacement or "").strip()
    if not word or not replacement:
        raise BadInput("A lexicon entry needs a word and what to say instead.")
    if len(word) > MAX_LEXICON_WORD_CHARS:
        raise BadInput(f"A lexicon word is at most {MAX_LEXICON_WORD_CHARS} characters.")
    Lexicon({word: replacement})  # validates phoneme blocks
    with store.db.conn:
        store.db.execute("DELETE FROM lexicon WHERE project_id = ? AND word = ? COLLATE NOCASE",
                         [project_id, word])
        store.db["lexicon"].insert({"project_id": project_id, "word": word,
                                    "replacement": replacement})
    return lexicon_entries(store, project_id)


def remove_lexicon_entry(store: Store, project_id: int, word: str) -> dict[str, str]:
    """Delete one entry (case-insensitive)."""
    store.db.execute("DELETE FROM lexicon WHERE project_id = ? AND word = ? COLLATE NOCASE",
                     [project_id, " ".join(str(word or "").split())])
    store.db.conn.commit()
    return lexicon_entries(store, project_id)
