"""Word documents (.docx), read straight from their XML: no extra dependency.

A .docx is a zip holding ``word/document.xml`` (paragraphs with style ids),
``word/styles.xml`` (style id -> name, outline level) and
``docProps/core.xml`` (title, creator, language).
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from engines.books.chapters import Block, chapters_from_blocks
from engines.books.cleanup import CleanupConfig
from engines.books.model import Book
from engines.errors import BadInput

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC = "{http://purl.org/dc/elements/1.1/}"
#: Heading level given to the "Title" style: above every "Heading N".
TITLE_LEVEL = 0


def _style_levels(archive: zipfile.ZipFile) -> dict[str, int]:
    """Style id -> heading level, from style names ("heading 2") or outline levels."""
    try:
        root = ElementTree.fromstring(archive.read("word/styles.xml"))
    except KeyError:
        return {}
    levels = {}
    for style in root.iter(f"{_W}style"):
        sid = style.get(f"{_W}styleId", "")
        name_el = style.find(f"{_W}name")
        name = (name_el.get(f"{_W}val", "") if name_el is not None else "").lower()
        outline = style.find(f"{_W}pPr/{_W}outlineLvl")
        match = re.fullmatch(r"heading\s*(\d)", name)
        if name == "title":
            levels[sid] = TITLE_LEVEL
        elif match:
            levels[sid] = int(match.group(1))
        elif outline is not None:
            levels[sid] = int(outline.get(f"{_W}val", "9")) + 1
    return levels


def _paragraph_level(par: ElementTree.Element, styles: dict[str, int]) -> int | None:
    style = par.find(f"{_W}pPr/{_W}pStyle")
    sid = style.get(f"{_W}val", "") if style is not None else ""
    if sid in styles:
        return styles[sid]
    match = re.fullmatch(r"(?i)heading(\d)", sid)
    if match:
        return int(match.group(1))
    return TITLE_LEVEL if sid.lower() == "title" else None


def _paragraph_text(par: ElementTree.Element) -> str:
    parts = []
    for el in par.iter():
        if el.tag == f"{_W}t" and el.text:
            parts.append(el.text)
        elif el.tag in (f"{_W}tab", f"{_W}br", f"{_W}cr"):
            parts.append(" ")
    return "".join(parts)


def _core_properties(archive: zipfile.ZipFile) -> dict[str, str]:
    try:
        root = ElementTree.fromstring(archive.read("docProps/core.xml"))
    except KeyError:
        return {}
    return {name: (root.findtext(f"{_DC}{name}") or "").strip()
            for name in ("title", "creator", "language")}


def docx_blocks(archive: zipfile.ZipFile) -> list[Block]:
    """Headings and paragraphs of the document body, in order."""
    styles = _style_levels(archive)
    root = ElementTree.fromstring(archive.read("word/document.xml"))
    blocks = []
    for par in root.iter(f"{_W}p"):
        text = _paragraph_text(par).strip()
        if not text:
            continue
        level = _paragraph_level(par, styles)
        blocks.append(Block("heading", text, level) if level is not None
                      else Block("paragraph", text))
    return blocks


def load_docx(path: Path, cfg: CleanupConfig) -> Book:
    """Read a .docx book; chapters start at its dividing heading level."""
    try:
        with zipfile.ZipFile(path) as archive:
            blocks = docx_blocks(archive)
            core = _core_properties(archive)
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as err:
        raise BadInput(f"{path.name} is not a readable Word document ({err}).") from err
    heading, chapters = chapters_from_blocks(blocks, cfg, default_title=path.stem)
    return Book(title=core.get("title") or heading or path.stem,
                author=core.get("creator", ""), language=core.get("language", ""),
                chapters=chapters, source_format="docx")
