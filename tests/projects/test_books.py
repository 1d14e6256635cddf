"""Books in a project: import of each format, chapter edits saved at once, lexicon, voices."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from projects import books, voices
from projects.errors import BadInput, Conflict, NotFound
from projects.store import Store
from tests.engines.test_books import book_pdf_pages, make_epub, make_pdf

TXT = """The Lighthouse Keeper

Chapter 1

Anna climbed the stairs of the lighthouse. The lamp was cold.

She lit it before the storm arrived.

Chapter 2

The ship saw the light. It turned away from the rocks.

Chapter 3

Morning came, calm and grey.
"""

MD = """---
title: Notes from the Garden
author: Ben Gardener
---

# Spring

The first shoots come up in March.

# Summer

Tomatoes ripen in the heat.
"""


def titles(store, book_id):
    return [c.title for c in books.list_chapters(store, book_id)]


def test_import_epub_keeps_chapters_metadata_and_cover(store, ws, project, tmp_path):
    book = books.import_book(store, ws, project, make_epub(tmp_path / "rooms.epub"))
    assert (book.title, book.author, book.language) == ("The Three Rooms", "Ada Writer", "en")
    chapters = books.list_chapters(store, book.id)
    assert [c.title for c in chapters] == ["Chapter One: Red", "Chapter Two: Blue",
                                           "Chapter Three: Green"]
    assert "second room was blue" in chapters[1].text and "went on" in chapters[1].text
    assert ws.resolve(book.cover_path).read_bytes()[:4] == b"\x89PNG"
    assert ws.resolve(book.source_path).is_file()


def test_import_txt_md_and_pdf(store, ws, project, tmp_path):
    (tmp_path / "keeper.txt").write_text(TXT)
    txt = books.import_book(store, ws, project, tmp_path / "keeper.txt")
    assert titles(store, txt.id) == ["Chapter 1", "Chapter 2", "Chapter 3"]
    assert books.list_chapters(store, txt.id)[0].paragraphs() == [
        "Anna climbed the stairs of the lighthouse. The lamp was cold.",
        "She lit it before the storm arrived."]

    (tmp_path / "garden.md").write_text(MD)
    md = books.import_book(store, ws, project, tmp_path / "garden.md")
    assert (md.title, md.author) == ("Notes from the Garden", "Ben Gardener")
    assert titles(store, md.id) == ["Spring", "Summer"]

    pdf = books.import_book(store, ws, project, make_pdf(tmp_path / "b.pdf", book_pdf_pages()))
    chapters = books.list_chapters(store, pdf.id)
    assert [c.title for c in chapters] == ["Chapter 1", "Chapter 2"]
    assert "thirteen" in chapters[0].text and "The Test Book" not in chapters[0].text
    assert [b.id for b in books.list_books(store, project.id)] == [pdf.id, md.id, txt.id]


def test_chapter_edits_are_saved_at_once_and_keep_ids(store, ws, project, tmp_path):
    (tmp_path / "keeper.txt").write_text(TXT)
    book = books.import_book(store, ws, project, tmp_path / "keeper.txt")
    one, two, three = books.list_chapters(store, book.id)
    books.rename_chapter(store, one.id, "  The   Climb ")
    books.set_chapter_voice(store, two.id, "some-voice")
    books.set_chapter_included(store, three.id, False)
    # A fresh connection sees every edit: nothing waits for a save button.
    fresh = Store(ws.db_path, migrate=False)
    rows = books.list_chapters(fresh, book.id)
    assert [r.title for r in rows] == ["The Climb", "Chapter 2", "Chapter 3"]
    assert rows[1].voice == "some-voice" and rows[2].included is False

    new = books.split_chapter_at(store, one.id, 2, "The Storm")
    assert titles(store, book.id) == ["The Climb", "The Storm", "Chapter 2", "Chapter 3"]
    assert new.text == "She lit it before the storm arrived."
    books.move_chapter_to(store, three.id, 1)
    assert titles(store, book.id) == ["Chapter 3", "The Climb", "The Storm", "Chapter 2"]
    merged = books.merge_with_next(store, one.id)
    assert merged.id == one.id and merged.paragraphs()[-1] == new.text
    assert titles(store, book.id) == ["Chapter 3", "The Climb", "Chapter 2"]
    assert books.get_chapter(store, two.id).voice == "some-voice"  # followed its chapter
    assert [c.position for c in books.list_chapters(store, book.id)] == [0, 1, 2]


def test_bad_edits_say_what_is_wrong(store, ws, project, tmp_path):
    (tmp_path / "keeper.txt").write_text(TXT)
    book = books.import_book(store, ws, project, tmp_path / "keeper.txt")
    last = books.list_chapters(store, book.id)[-1]
    with pytest.raises(BadInput, match="empty"):
        books.rename_chapter(store, last.id, "   ")
    with pytest.raises(BadInput, match="neighbouring|no chapter"):
        books.merge_with_next(store, last.id)
    with pytest.raises(BadInput, match="split"):
        books.split_chapter_at(store, last.id, 1)
    with pytest.raises(BadInput, match="empty"):
        books.set_chapter_text(store, last.id, "\n\n")
    with pytest.raises(NotFound):
        books.get_chapter(store, 9999)


def test_lexicon_per_project_case_insensitive(store, ws, project):
    from projects.projects import create_project

    books.set_lexicon_entry(store, project.id, "Nguyen", "win")
    books.set_lexicon_entry(store, project.id, "nguyen", "nwin")  # replaces, not duplicates
    books.set_lexicon_entry(store, project.id, "GIF", "[[ dʒˈɪf ]]")
    assert books.lexicon_entries(store, project.id) == {"GIF": "[[ dʒˈɪf ]]", "nguyen": "nwin"}
    assert books.get_lexicon(store, project.id).apply("Mr NGUYEN") == "Mr nwin"
    other = create_project(store, ws, "Other")
    assert books.lexicon_entries(store, other.id) == {}
    with pytest.raises(BadInput):
        books.set_lexicon_entry(store, project.id, "word", "[[ unclosed")
    assert books.remove_lexicon_entry(store, project.id, "gif") == {"nguyen": "nwin"}


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"", "empty"),
    ("blank.md", b"\n\n   \n", "no text"),
    ("broken.epub", b"PK\x03\x04 not really a zip", "epub"),
])
def test_bad_book_files_get_clear_messages(store, ws, project, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        books.import_book(store, ws, project, path)
    assert books.list_books(store, project.id) == []


def test_pdf_without_text_layer_is_refused(store, ws, project, tmp_path):
    path = make_pdf(tmp_path / "scan.pdf", [["x"], ["y"]], image_only=True)
    with pytest.raises(BadInput, match="(?i)text layer|OCR"):
        books.import_book(store, ws, project, path)


def test_epub_without_content_is_refused(store, ws, project, tmp_path):
    path = tmp_path / "hollow.epub"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", "<container/>")
    with pytest.raises(BadInput):
        books.import_book(store, ws, project, path)


# --------------------------------------------------------------------------- voices

def test_bundled_voice_is_always_listed(store, ws):
    listed = voices.list_tts_voices(store, ws)
    assert listed[0].key == voices.BUNDLED_VOICE_ID and listed[0].language == "en-us"
    assert listed[0].sample_rate == 22050
    with pytest.raises(BadInput, match="Choose a voice"):
        voices.get_voice(store, ws, "")
    with pytest.raises(NotFound, match="No voice 'nobody'"):
        voices.get_voice(store, ws, "nobody")


def test_import_piper_voice_copies_and_records_it(store, ws, tmp_path):
    bundled = voices.bundled_voice()
    config = json.loads(Path(f"{bundled.onnx_path}.json").read_text())
    config["espeak"]["voice"] = "en-gb"
    (tmp_path / "mine.onnx.json").write_text(json.dumps(config))
    (tmp_path / "mine.onnx").symlink_to(bundled.onnx_path)
    voice = voices.import_piper_voice(store, ws, tmp_path / "mine.onnx", name="My Narrator")
    assert voice.key == "my-narrator" and voice.language == "en-gb"
    assert voice.onnx_path.parent == ws.voices_dir() / "my-narrator"
    assert not voice.onnx_path.is_symlink() and voice.onnx_path.stat().st_size > 1_000_000
    assert [v.key for v in voices.list_tts_voices(store, ws)] == [voices.BUNDLED_VOICE_ID,
                                                                 "my-narrator"]
    assert voices.get_voice(store, ws, "My Narrator") == voice
    with pytest.raises(Conflict):
        voices.import_piper_voice(store, ws, tmp_path / "mine.onnx", name="My Narrator")


def test_import_refuses_files_that_are_not_piper_voices(store, ws, tmp_path):
    (tmp_path / "fake.onnx").write_bytes(b"not a model")
    with pytest.raises(BadInput, match="config"):
        voices.import_piper_voice(store, ws, tmp_path / "fake.onnx")
    (tmp_path / "fake.onnx.json").write_text('{"audio": {}}')
    with pytest.raises(BadInput, match="Piper's format"):
        voices.import_piper_voice(store, ws, tmp_path / "fake.onnx")
    bundled = voices.bundled_voice()
    (tmp_path / "fake.onnx.json").write_text(Path(f"{bundled.onnx_path}.json").read_text())
    with pytest.raises(BadInput, match="not an ONNX model"):
        voices.import_piper_voice(store, ws, tmp_path / "fake.onnx")
    assert voices.list_tts_voices(store, ws)[1:] == []
