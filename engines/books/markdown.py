"""Markdown books (.md): front matter, headings, paragraphs, code; markup removed."""
from __future__ import annotations

import re
from pathlib import Path

from engines.books.chapters import Block, chapters_from_blocks
from engines.books.cleanup import CleanupConfig, normalize_newlines
from engines.books.model import Book
from engines.books.text import decode_text

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_DEFINITION = re.compile(r"^\s*\[(\^?[^\]]+)\]:\s")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")

_INLINE = [
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),                # images
    (re.compile(r"\[\^[^\]]+\]"), ""),                         # footnote references
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),             # [text](url)
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),            # [text][ref]
    (re.compile(r"<((?:https?|ftp)://[^>]+)>"), r"\1"),        # autolinks
    (re.compile(r"</?[a-zA-Z][^>]*>"), ""),                    # inline html
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])"), r"\2"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~>])"), r"\1"),     # escapes
]


def strip_inline(text: str) -> str:
    """Remove inline markdown (emphasis, links, images, code ticks, html)."""
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text


def front_matter(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """YAML-style front matter ("---" ... "---") as a flat dict, and the remaining lines."""
    if not lines or lines[0].strip() != "---":
        return {}, lines
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            meta = {}
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep:
                    meta[key.strip().lower()] = value.strip().strip("'\"")
            return meta, lines[end + 1:]
    return {}, lines


class _BlockBuilder:
    """Accumulates paragraph lines and emits blocks at paragraph boundaries."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.lines: list[str] = []

    def flush(self) -> None:
        """Close the paragraph being collected."""
        if self.lines:
            text = " ".join(strip_inline(ln.strip()) for ln in self.lines)
            self.blocks.append(Block("paragraph", text))
        self.lines = []

    def heading(self, level: int, text: str) -> None:
        """Close the paragraph and add a heading."""
        self.flush()
        self.blocks.append(Block("heading", strip_inline(text), level))


def _read_fence(lines: list[str], i: int) -> tuple[str, int]:
    """The code inside the fence opening at line ``i``, and the line after it."""
    fence = _FENCE.match(lines[i]).group(1)
    body = []
    j = i + 1
    while j < len(lines) and not lines[j].strip().startswith(fence):
        body.append(lines[j])
        j += 1
    return "\n".join(body), j + 1


def parse_blocks(lines: list[str]) -> list[Block]:
    """Markdown lines -> headings, paragraphs and code blocks."""
    out = _BlockBuilder()
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            out.flush()
            code, i = _read_fence(lines, i)
            out.blocks.append(Block("code", code))
            continue
        atx = _ATX.match(line)
        if atx:
            out.heading(len(atx.group(1)), atx.group(2))
        elif _SETEXT.match(line) and len(out.lines) == 1 and line.strip()[0] in "=-":
            text = out.lines.pop()
            out.heading(1 if line.strip()[0] == "=" else 2, text)
        elif not line.strip() or _RULE.match(line) or _TABLE_RULE.match(line):
            out.flush()
        elif _DEFINITION.match(line):
            out.flush()  # link and footnote definitions are not read
        elif line.startswith(("    ", "\t")) and not out.lines:
            out.blocks.append(Block("code", line.strip()))
        else:
            if _LIST_ITEM.match(line):
                out.flush()
            text = _LIST_ITEM.sub("", re.sub(r"^\s*(>\s?)+", "", line))
            out.lines.append(text.replace("|", ", ").strip(" ,"))
        i += 1
    out.flush()
    return out.blocks


def load_markdown(path: Path, cfg: CleanupConfig) -> Book:
    """Read a markdown book; chapters start at its dividing heading level."""
    lines = normalize_newlines(decode_text(path.read_bytes())).split("\n")
    meta, lines = front_matter(lines)
    heading, chapters = chapters_from_blocks(parse_blocks(lines), cfg,
                                             default_title=meta.get("title") or path.stem)
    title = meta.get("title") or heading or path.stem
    return Book(title=title, author=meta.get("author", ""),
                language=meta.get("lang") or meta.get("language", ""),
                chapters=chapters, source_format="md")
