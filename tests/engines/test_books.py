"""Book import: each format made at test time, chapters and text as a reader expects."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from engines.books import (Chapter, CleanupConfig, load_book, merge_chapters, move_chapter,
                           rename_chapter, reorder_chapters, set_included, split_chapter)
from engines.books.cleanup import readable_urls, remove_running_lines, strip_footnote_markers
from engines.errors import BadInput

# --------------------------------------------------------------------------- makers


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def make_epub(path: Path) -> Path:
    """Three chapters in the TOC; chapter 2 continues in a file the TOC does not name."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("test-book-1")
    book.set_title("The Three Rooms")
    book.set_language("en")
    book.add_author("Ada Writer")
    book.set_cover("cover.png", _png_bytes())
    bodies = {
        "c1.xhtml": "<h1>One</h1><p>The first room was red.<sup>1</sup></p><p>It was warm.</p>"
                    "<aside epub:type='footnote'><p>A note that is not read.</p></aside>",
        "c2.xhtml": "<h1>Two</h1><p>The second room was blue.</p>",
        "c2b.xhtml": "<p>Still in the blue room, the story went on.</p>",
        "c3.xhtml": "<h2>Three</h2><p>The third room was green.</p><pre>x = 1</pre>",
    }
    items = []
    for n, (name, html) in enumerate(bodies.items()):
        item = epub.EpubHtml(title=name, file_name=name, lang="en")
        item.content = f"<html><body>{html}</body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = [epub.Link("c1.xhtml", "Chapter One: Red", "c1"),
                epub.Link("c2.xhtml", "Chapter Two: Blue", "c2"),
                epub.Link("c3.xhtml#top", "Chapter Three: Green", "c3")]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav"] + items
    epub.write_epub(str(path), book)
    return path


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(path: Path, pages: list[list[str]], image_only: bool = False,
             info: dict[str, str] | None = None) -> Path:
    """A minimal valid PDF: Helvetica text lines per page, or one image per page."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    add(b"<< /Type /Catalog /Pages 2 0 R >>")
    add(b"")  # page tree, filled in below
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    image = add(b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
                b"/BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream")
    kids = []
    for lines in pages:
        if image_only:
            ops = "q 612 0 0 792 0 0 cm /Im1 Do Q"
        else:
            ops = "BT /F1 11 Tf 14 TL 72 740 Td " + " ".join(
                f"{_pdf_string(ln)} Tj T*" for ln in lines) + " ET"
        stream = ops.encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> /XObject << /Im1 %d 0 R >> >> >>"
            % (content, font, image)))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info_ref = b""
    if info:
        entries = " ".join(f"/{k} {_pdf_string(v)}" for k, v in info.items())
        info_ref = b" /Info %d 0 R" % add(f"<< {entries} >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, info_ref, xref)
    path.write_bytes(bytes(out))
    return path


def add_outline(path: Path, entries: list[tuple[str, int]]) -> Path:
    """Give a PDF top-level bookmarks (title, 0-based page)."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(path))
    for title, page in entries:
        writer.add_outline_item(title=title, page_number=page)
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


PROSE = [
    "It was a bright cold day in April, and the clocks were striking thir-",
    "teen. The wind blew hard down the long street and the dust rose up in",
    "small swirls around the feet of the people walking home that evening.",
    "Nobody looked up.",
]


def book_pdf_pages() -> list[list[str]]:
    """Three pages with a running header, page numbers and two chapters."""
    return [
        ["The Test Book", "Chapter 1", *PROSE, "1"],
        ["The Test Book", "The second page of the first chapter goes on for a while",
         "and ends here with a full stop.", "2"],
        ["The Test Book", "Chapter 2", "A new chapter starts on the third page of the book",
         "and it also ends with a full stop.", "3"],
    ]


def make_docx(path: Path) -> Path:
    """A Word file with a Title, two Heading 1 chapters and core properties."""
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

    def par(text: str, style: str = "") -> str:
        ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
        return f"<w:p>{ppr}<w:r><w:t>{text}</w:t></w:r></w:p>"

    body = "".join([par("Word Book", "Title"), par("Start", "Heading1"),
                    par("The first part has words."), par("End", "Heading1"),
                    par("The last part has more words.")])
    core = ('<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
            'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            "<dc:title>Word Book</dc:title><dc:creator>Dee Oxford</dc:creator>"
            "</cp:coreProperties>")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", f'<w:document xmlns:w="{w}"><w:body>{body}'
                                              "</w:body></w:document>")
        archive.writestr("docProps/core.xml", core)
    return path


# --------------------------------------------------------------------------- formats


def test_epub_three_chapters_with_metadata_and_cover(tmp_path):
    book = load_book(make_epub(tmp_path / "rooms.epub"))
    assert [c.title for c in book.chapters] == [
        "Chapter One: Red", "Chapter Two: Blue", "Chapter Three: Green"]
    assert (book.title, book.author, book.language) == ("The Three Rooms", "Ada Writer", "en")
    assert book.cover is not None and book.cover.mime == "image/png"
    assert book.cover.data.startswith(b"\x89PNG")
    one, two, three = book.chapters
    assert one.paragraphs() == ["The first room was red.", "It was warm."]  # marker, note gone
    assert two.paragraphs() == ["The second room was blue.",
                                "Still in the blue room, the story went on."]
    assert three.paragraphs() == ["The third room was green."]  # heading and code not read


def test_epub_code_blocks_read_when_asked(tmp_path):
    book = load_book(make_epub(tmp_path / "rooms.epub"), CleanupConfig(code_blocks="read"))
    assert book.chapters[2].paragraphs() == ["The third room was green.", "x = 1"]


def test_txt_chapter_headings_of_every_kind(tmp_path):
    text = "\n".join([
        "The Long Walk", "by Sam Teller", "", "Prologue", "", "Before it all began.", "",
        "CHAPTER ONE", "", "The road was long and the sun was hot on the back of his neck as",
        "he walked, and the dust of the exam-", "ple road got in his eyes.", "", "14", "",
        "Chapter 2: The River", "", "Water ran fast.", "", "III.", "", "A third part, by number.",
        "", "CHAPTER TWELVE", "The Hill", "", "Up and up.", "", "Epilogue", "", "The end came.",
    ])
    path = tmp_path / "walk.txt"
    path.write_text(text, encoding="utf-8")
    book = load_book(path)
    assert [c.title for c in book.chapters] == [
        "Prologue", "CHAPTER ONE", "Chapter 2: The River", "III", "CHAPTER TWELVE: The Hill",
        "Epilogue"]
    assert (book.title, book.author) == ("The Long Walk", "Sam Teller")
    walk = book.chapters[1].paragraphs()
    assert len(walk) == 1 and "the dust of the example road" in walk[0]
    assert "14" not in book.chapters[1].text


def test_gutenberg_text_skips_licence_and_table_of_contents(tmp_path):
    text = "\n".join([
        "The Project Gutenberg eBook of Alice", "", "Title: Alice in Wonderland", "",
        "Author: Lewis Carroll", "", "*** START OF THE PROJECT GUTENBERG EBOOK ALICE ***", "",
        "Contents", "", " CHAPTER I.     Down the Rabbit-Hole", " CHAPTER II.    The Pool of Tears",
        "", "", "CHAPTER I.", "Down the Rabbit-Hole", "", "", "Alice was beginning to get tired.",
        "", "", "CHAPTER II.", "The Pool of Tears", "", "", "Curiouser and curiouser!", "",
        "*** END OF THE PROJECT GUTENBERG EBOOK ALICE ***", "", "Licence text to be skipped.",
    ])
    path = tmp_path / "alice.txt"
    path.write_text(text, encoding="utf-8")
    book = load_book(path)
    assert (book.title, book.author) == ("Alice in Wonderland", "Lewis Carroll")
    assert [(c.title, c.text) for c in book.chapters] == [
        ("CHAPTER I: Down the Rabbit-Hole", "Alice was beginning to get tired."),
        ("CHAPTER II: The Pool of Tears", "Curiouser and curiouser!")]


def test_txt_without_headings_is_one_chapter(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("Just a few lines of text,\nwrapped by hand.\n\nAnd a second paragraph.\n")
    book = load_book(path)
    assert len(book.chapters) == 1
    assert book.chapters[0].paragraphs() == ["Just a few lines of text, wrapped by hand.",
                                             "And a second paragraph."]


def test_txt_all_caps_headings_when_nothing_stronger(tmp_path):
    path = tmp_path / "caps.txt"
    path.write_text("THE FIRST NIGHT\n\nDark it was.\n\nTHE SECOND NIGHT\n\nDarker still.\n")
    assert [c.title for c in load_book(path).chapters] == ["THE FIRST NIGHT", "THE SECOND NIGHT"]


def test_markdown_chapters_metadata_and_code(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("---\ntitle: A Guide\nauthor: Mo Dee\n---\n\n# A Guide\n\n"
                    "## Getting Started\n\nRead **this** first, see [the site](https://x.org).\n\n"
                    "```\npip install thing\n```\n\n## Going Further\n\n- one step\n- two steps\n"
                    "\nVisit https://www.example.com/docs for more.\n")
    book = load_book(path)
    assert (book.title, book.author) == ("A Guide", "Mo Dee")
    assert [c.title for c in book.chapters] == ["Getting Started", "Going Further"]
    assert book.chapters[0].paragraphs() == ["Read this first, see the site."]
    assert book.chapters[1].paragraphs() == ["one step", "two steps",
                                             "Visit example dot com slash docs for more."]
    read = load_book(path, CleanupConfig(code_blocks="read"))
    assert "pip install thing" in read.chapters[0].paragraphs()


def test_pdf_with_outline_uses_bookmarks_and_strips_running_lines(tmp_path):
    path = make_pdf(tmp_path / "book.pdf", book_pdf_pages(),
                    info={"Title": "The Test Book", "Author": "P. D. Eff"})
    add_outline(path, [("Chapter 1", 0), ("Chapter 2", 2)])
    book = load_book(path)
    assert (book.title, book.author) == ("The Test Book", "P. D. Eff")
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    first = book.chapters[0].text
    assert "striking thirteen. The wind" in first
    assert "The Test Book" not in first and "Nobody looked up." in first
    assert not any(p.strip().isdigit() for p in book.chapters[0].paragraphs())
    assert book.chapters[1].paragraphs() == [
        "A new chapter starts on the third page of the book and it also ends with a full stop."]


def test_pdf_without_outline_splits_at_headings(tmp_path):
    book = load_book(make_pdf(tmp_path / "plain.pdf", book_pdf_pages()))
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    assert "The Test Book" not in " ".join(c.text for c in book.chapters)


def test_docx_headings_become_chapters(tmp_path):
    book = load_book(make_docx(tmp_path / "w.docx"))
    assert (book.title, book.author) == ("Word Book", "Dee Oxford")
    assert [(c.title, c.text) for c in book.chapters] == [
        ("Start", "The first part has words."), ("End", "The last part has more words.")]


# --------------------------------------------------------------------------- bad input


def test_pdf_without_text_layer_says_run_ocr(tmp_path):
    path = make_pdf(tmp_path / "scan.pdf", [[], []], image_only=True)
    with pytest.raises(BadInput, match="no text layer.*OCR"):
        load_book(path)


def test_corrupt_epub_is_refused(tmp_path):
    path = tmp_path / "broken.epub"
    make_epub(path)
    path.write_bytes(path.read_bytes()[:300])  # truncated download
    with pytest.raises(BadInput, match="not a readable EPUB"):
        load_book(path)


@pytest.mark.parametrize("name,content,message", [
    ("empty.txt", b"", "empty"),
    ("blank.md", b"   \n\n```\ncode only\n```\n", "no text to narrate"),
    ("data.xyz", bytes(range(256)) * 4, "Unsupported book format"),
])
def test_unusable_files_get_one_line_messages(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message) as err:
        load_book(path)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- cleanup


def test_cleanup_reads_urls_and_drops_footnote_markers():
    assert readable_urls("See https://docs.example.com/a/b?q=1.") == \
        "See docs dot example dot com slash a slash b."
    assert readable_urls("Write to ann@mail.example.org") == \
        "Write to ann at mail dot example dot org"
    assert strip_footnote_markers("A claim¹ and another[3], then [sic] stays.") == \
        "A claim and another, then [sic] stays."


def test_running_headers_and_footers_removed_only_when_repeated():
    bodies = ["Rain fell.", "The sun rose.", "Wind blew.", "Snow came.", "Night fell."]
    pages = [f"My Book\n{body}\nPage {n}" for n, body in enumerate(bodies, start=1)]
    cleaned = remove_running_lines(pages)
    assert [p.strip() for p in cleaned] == bodies
    assert remove_running_lines(["Alone\nbody", "Other\nbody"]) == ["Alone\nbody", "Other\nbody"]


# --------------------------------------------------------------------------- edits


def _chapters() -> list[Chapter]:
    return [Chapter("A", "a1\n\na2\n\na3"), Chapter("B", "b1"), Chapter("C", "c1")]


def test_chapter_edits_return_new_lists():
    original = _chapters()
    merged = merge_chapters(original, 0, 1)
    assert [c.title for c in merged] == ["A", "C"]
    assert merged[0].paragraphs() == ["a1", "a2", "a3", "b1"]
    split = split_chapter(original, 0, 2, "A, part two")
    assert [(c.title, c.text) for c in split[:2]] == [("A", "a1\n\na2"), ("A, part two", "a3")]
    assert rename_chapter(original, 1, "  Bee  ")[1].title == "Bee"
    assert [c.title for c in move_chapter(original, 2, 0)] == ["C", "A", "B"]
    assert [c.title for c in reorder_chapters(original, [1, 2, 0])] == ["B", "C", "A"]
    assert set_included(original, 1, False)[1].included is False
    assert [c.title for c in original] == ["A", "B", "C"] and original[1].included


@pytest.mark.parametrize("edit", [
    lambda cs: merge_chapters(cs, 1, 1), lambda cs: split_chapter(cs, 0, 0),
    lambda cs: rename_chapter(cs, 5, "x"), lambda cs: rename_chapter(cs, 0, " "),
    lambda cs: reorder_chapters(cs, [0, 0, 1]),
])
def test_bad_edits_raise_bad_input(edit):
    with pytest.raises(BadInput):
        edit(_chapters())
