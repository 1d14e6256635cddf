"""EPUB books: spine order, table-of-contents titles, XHTML to paragraphs.

Each spine document named by the table of contents starts a chapter titled
from it; spine documents the table of contents does not name continue the
chapter before them (books often split a long chapter across files). Without a
table of contents every document with text is a chapter, titled by its first
heading.
"""
from __future__ import annotations

import posixpath
import re
import warnings
from pathlib import Path
from urllib.parse import unquote

from engines.books.cleanup import CleanupConfig, clean_paragraph
from engines.books.model import PARAGRAPH_BREAK, Book, Chapter, Cover
from engines.errors import BadInput

#: Elements that end a paragraph.
BLOCK_TAGS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 li blockquote pre section article tr dd dt figcaption "
    "table ul ol header footer aside hr nav".split())
HEADING_TAGS = ("h1", "h2", "h3")
OPENING_TITLE = "Opening"
_FOOTNOTE_TEXT = re.compile(r"^\s*[\[(]?(?:\d{1,3}|[*†‡§a-z])[\])]?\s*$")
_NOTE_TYPES = ("footnote", "endnote", "rearnote", "note")


def _epub_type(el) -> str:
    return " ".join(v for k, v in el.attrib.items() if k.endswith("type")).lower()


def _drop(el) -> None:
    """Remove an element but keep the text that follows it."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail or ""
    prev = el.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(el)


def _is_note_body(el) -> bool:
    """An <aside> holding a footnote or endnote (EPUB 3 semantics)."""
    return el.tag == "aside" and any(t in _epub_type(el) for t in _NOTE_TYPES)


def _is_noteref(el) -> bool:
    """A footnote reference: marked as one, or a superscript number ("word<sup>3</sup>")."""
    if "noteref" in _epub_type(el):
        return True
    if el.tag not in ("sup", "a") or not _FOOTNOTE_TEXT.match(el.text_content() or ""):
        return False
    parent = el.getparent()
    return el.tag == "sup" or (parent is not None and parent.tag == "sup")


def _remove_noise(body, cfg: CleanupConfig) -> None:
    """Scripts, footnote references and bodies, and code when it is skipped."""
    for el in list(body.iter()):
        if not isinstance(el.tag, str):
            continue
        if el.tag in ("script", "style") or _is_note_body(el):
            _drop(el)
        elif cfg.remove_footnote_markers and _is_noteref(el):
            _drop(el)
        elif el.tag == "pre":
            if cfg.code_blocks != "read":
                _drop(el)
            else:
                lines = [ln for ln in el.text_content().split("\n") if ln.strip()]
                for child in list(el):
                    el.remove(child)
                el.text = PARAGRAPH_BREAK.join(lines)


def _leading_heading(body) -> str:
    """Remove and return the heading that opens the document, if one does."""
    heading = next((el for el in body.iter(*HEADING_TAGS)), None)
    if heading is None:
        return ""
    title = " ".join(heading.text_content().split())
    before = " ".join(body.text_content().split())
    if not title or not before.startswith(title):
        return ""
    _drop(heading)
    return title


def html_to_paragraphs(content: bytes, cfg: CleanupConfig) -> tuple[str, list[str]]:
    """XHTML -> (its opening heading, its paragraphs as clean text)."""
    import lxml.html

    try:
        root = lxml.html.fromstring(content)
    except Exception:  # lxml raises several parser errors; all mean unreadable here
        return "", []
    body = root.find(".//body")
    body = root if body is None else body
    _remove_noise(body, cfg)
    heading = _leading_heading(body)
    for el in body.iter():
        if isinstance(el.tag, str) and el.tag in BLOCK_TAGS:
            el.text = PARAGRAPH_BREAK + (el.text or "")
            el.tail = PARAGRAPH_BREAK + (el.tail or "")
    raw = body.text_content()
    paragraphs = [clean_paragraph(p, cfg) for p in re.split(r"\n\s*\n", raw)]
    return heading, [p for p in paragraphs if p]


def _flatten_toc(toc) -> list[tuple[str, str]]:
    """ebooklib's nested table of contents -> [(href, title)] in reading order."""
    out = []
    for entry in toc or []:
        if isinstance(entry, tuple):
            section, children = entry
            if getattr(section, "href", ""):
                out.append((section.href, section.title))
            out.extend(_flatten_toc(children))
        elif getattr(entry, "href", ""):
            out.append((entry.href, entry.title))
    return out


def _toc_titles(book) -> dict[str, str]:
    """Document file name -> title of the first table-of-contents entry pointing at it."""
    titles: dict[str, str] = {}
    for href, title in _flatten_toc(book.toc):
        name = posixpath.normpath(unquote(href.split("#")[0]))
        if name and title and title.strip():
            titles.setdefault(name, " ".join(title.split()))
            titles.setdefault(posixpath.basename(name), " ".join(title.split()))
    return titles


def _spine_documents(book) -> list:
    """Readable XHTML documents in spine order (no nav or cover page)."""
    from ebooklib import epub

    docs = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        skip = isinstance(item, (epub.EpubNav, epub.EpubCoverHtml))
        if isinstance(item, epub.EpubHtml) and not skip:
            docs.append(item)
    return docs


def _chapters(book, cfg: CleanupConfig) -> list[Chapter]:
    titles = _toc_titles(book)
    sections: list[tuple[str, list[str]]] = []
    for n, item in enumerate(_spine_documents(book)):
        heading, paragraphs = html_to_paragraphs(item.get_content(), cfg)
        name = posixpath.normpath(item.get_name())
        toc_title = titles.get(name) or titles.get(posixpath.basename(name))
        if toc_title or not titles or not sections:
            title = toc_title or heading or (OPENING_TITLE if titles else f"Chapter {n + 1}")
            sections.append((title, paragraphs))
        else:
            sections[-1][1].extend(paragraphs)
    return [Chapter(title, PARAGRAPH_BREAK.join(paras)) for title, paras in sections if paras]


def _first_metadata(book, name: str) -> str:
    values = book.get_metadata("DC", name)
    return " ".join(str(values[0][0]).split()) if values and values[0][0] else ""


def _cover(book) -> Cover | None:
    """The cover image: the manifest's cover-image, the OPF cover meta, or an image named cover."""
    import ebooklib

    candidates = list(book.get_items_of_type(ebooklib.ITEM_COVER))
    for _value, attrs in book.get_metadata("OPF", "cover"):
        item = book.get_item_with_id(attrs.get("content", ""))
        if item is not None:
            candidates.append(item)
    candidates += [i for i in book.get_items_of_type(ebooklib.ITEM_IMAGE)
                   if "cover" in (i.get_id() or "").lower() or "cover" in i.get_name().lower()]
    for item in candidates:
        mime = item.media_type or ""
        if mime.startswith("image/") and item.get_content():
            return Cover(item.get_content(), mime)
    return None


def load_epub(path: Path, cfg: CleanupConfig) -> Book:
    """Read an EPUB 2 or 3 book."""
    from ebooklib import epub

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = epub.read_epub(str(path), {"ignore_ncx": True})
    except Exception as err:  # ebooklib raises zip, KeyError, lxml and its own errors
        raise BadInput(f"{path.name} is not a readable EPUB "
                       "(damaged or not an EPUB file).") from err
    authors = [str(v) for v, _ in book.get_metadata("DC", "creator") if v]
    return Book(title=_first_metadata(book, "title") or path.stem, author=", ".join(authors),
                language=_first_metadata(book, "language"), chapters=_chapters(book, cfg),
                cover=_cover(book), source_format="epub")
