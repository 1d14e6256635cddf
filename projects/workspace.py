"""Where things live on disk, and turning user-given names into safe file names.

Layout of a workspace::

    studio.db                 the SQLite store
    projects/<slug>/          one folder per project (sources/, clips/, runs/, exports/)
    voices/<slug>/            voices usable from any project
    logs/jobs/<id>.log        each job's full log, tracebacks included
"""
from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from projects.errors import BadInput

MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class Workspace:
    """A workspace folder; every path the app writes is derived from here."""

    root: Path

    @classmethod
    def open(cls, root: Path | str) -> "Workspace":
        """Create the folder if needed and check that it is writable."""
        path = Path(root).expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
            for sub in ("projects", "voices", "logs/jobs"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BadInput(f"Cannot use workspace {path}: {err.strerror or err}") from err
        return cls(path)

    @property
    def db_path(self) -> Path:
        return self.root / "studio.db"

    def project_dir(self, slug: str) -> Path:
        return self.root / "projects" / slug

    def voices_dir(self) -> Path:
        return self.root / "voices"

    def job_log(self, job_id: int) -> Path:
        return self.root / "logs" / "jobs" / f"{job_id}.log"

    def relative(self, path: Path) -> str:
        """A path inside the workspace as stored in the database (posix, relative)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def resolve(self, stored: str) -> Path:
        """The absolute path of a stored relative path, refusing escapes."""
        path = (self.root / stored).resolve()
        if not path.is_relative_to(self.root):
            raise BadInput(f"Stored path leaves the workspace: {stored}")
        return path


def slugify(name: str) -> str:
    """A folder-safe, lowercase ASCII name for a user-given title."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return text[:MAX_NAME_CHARS] or "untitled"


def safe_filename(name: str, default: str = "file") -> str:
    """Keep an uploaded file's readable name but never let it become a path.

    Directory parts, control characters and leading dots are dropped; letters of
    any script are kept so a user still recognises "Interview – Zoë.mp3".
    """
    base = Path(str(name).replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*/')
    base = base.strip().lstrip(".")
    if len(base) > MAX_NAME_CHARS:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: MAX_NAME_CHARS - len(ext) - 1] + dot + ext) if dot else base[:MAX_NAME_CHARS]
    return base or default


def check_display_name(name: str, what: str = "Name") -> str:
    """Trim a user-entered name and reject empty or overlong ones."""
    cleaned = " ".join(str(name or "").split())
    if not cleaned:
        raise BadInput(f"{what} cannot be empty.")
    if len(cleaned) > MAX_NAME_CHARS:
        raise BadInput(f"{what} is too long (at most {MAX_NAME_CHARS} characters).")
    return cleaned


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
