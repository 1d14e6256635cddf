"""What an imported book is: metadata plus an ordered list of chapters.

A chapter's text is plain prose: paragraphs separated by one blank line
("\n\n"), each paragraph on a single line with its whitespace collapsed. Every
importer produces that shape, so the narration front-end never sees markup.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace

#: Separator between paragraphs inside ``Chapter.text``.
PARAGRAPH_BREAK = "\n\n"


@dataclass(frozen=True)
class Chapter:
    """One unit of narration: a title, its text, and whether to narrate it."""

    title: str
    """Title shown to the user and written into chapter marks and file names."""
    text: str
    """Plain text, paragraphs separated by a blank line."""
    included: bool = True
    """False when the user excluded the chapter (front matter, index...)."""

    def paragraphs(self) -> list[str]:
        """The chapter's paragraphs, in order, without empty ones."""
        return [p for p in self.text.split(PARAGRAPH_BREAK) if p.strip()]

    def word_count(self) -> int:
        """Number of whitespace-separated words in the text."""
        return len(self.text.split())

    def with_paragraphs(self, paragraphs: list[str]) -> "Chapter":
        """A copy whose text is ``paragraphs`` joined by blank lines."""
        return replace(self, text=PARAGRAPH_BREAK.join(paragraphs))

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"title": self.title, "text": self.text, "included": self.included}

    @classmethod
    def from_dict(cls, data: dict) -> "Chapter":
        """Inverse of :meth:`to_dict`."""
        return cls(title=str(data["title"]), text=str(data["text"]),
                   included=bool(data.get("included", True)))


@dataclass(frozen=True)
class Cover:
    """A cover image as found in the book."""

    data: bytes
    """The encoded image file (JPEG, PNG...)."""
    mime: str
    """Its media type, e.g. ``image/jpeg``."""

    def extension(self) -> str:
        """A file extension for the image, without the dot."""
        sub = self.mime.split("/")[-1].lower()
        return {"jpeg": "jpg", "svg+xml": "svg"}.get(sub, sub)


@dataclass
class Book:
    """An imported book: metadata and chapters."""

    title: str
    """Title from the file's metadata, else from its first heading or file name."""
    author: str = ""
    """Author(s) from metadata; empty when unknown."""
    language: str = ""
    """Language code from metadata (e.g. ``en``); empty when unknown."""
    chapters: list[Chapter] = field(default_factory=list)
    """Chapters in reading order."""
    cover: Cover | None = None
    """Cover image when the file carries one."""
    source_format: str = ""
    """Importer that read it: epub, txt, md, pdf or docx."""

    def included_chapters(self) -> list[Chapter]:
        """The chapters the user wants narrated."""
        return [c for c in self.chapters if c.included]

    def word_count(self) -> int:
        """Words over all included chapters."""
        return sum(c.word_count() for c in self.included_chapters())

    def to_dict(self) -> dict:
        """JSON-ready dict; the cover travels base64-encoded."""
        cover = None
        if self.cover is not None:
            cover = {"mime": self.cover.mime,
                     "data": base64.b64encode(self.cover.data).decode("ascii")}
        return {"title": self.title, "author": self.author, "language": self.language,
                "source_format": self.source_format, "cover": cover,
                "chapters": [c.to_dict() for c in self.chapters]}

    @classmethod
    def from_dict(cls, data: dict) -> "Book":
        """Inverse of :meth:`to_dict`."""
        cover = data.get("cover")
        return cls(
            title=data["title"], author=data.get("author", ""),
            language=data.get("language", ""),
            chapters=[Chapter.from_dict(c) for c in data.get("chapters", [])],
            cover=Cover(base64.b64decode(cover["data"]), cover["mime"]) if cover else None,
            source_format=data.get("source_format", ""))
