"""Typed, read-only views of the store's rows.

Reads return these dataclasses; writes go through the functions of the module
that owns each table (projects.py, sources.py, jobs.py ...).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from projects.store import loads

T = TypeVar("T")

_JSON_FIELDS = {"params", "state", "result", "words", "quality", "flags", "config"}


def from_row(cls: type[T], row: dict | None) -> T | None:
    """Build a record from a row dict, decoding JSON columns and ignoring extras."""
    if row is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in row.items():
        if key not in names:
            continue
        values[key] = loads(value, {} if key not in ("words", "flags") else []) \
            if key in _JSON_FIELDS and isinstance(value, (str, type(None))) else value
    return cls(**values)


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    slug: str
    sample_rate: int
    language: str
    created_at: float


@dataclass(frozen=True)
class Source:
    id: int
    project_id: int
    name: str
    path: str
    sha256: str
    size_bytes: int
    status: str
    created_at: float
    error: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    lufs: float | None = None
    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    clipped_fraction: float | None = None


@dataclass(frozen=True)
class Speaker:
    id: int
    project_id: int
    name: str
    created_at: float
    cluster_label: int | None = None
    use_for_training: int = 0


@dataclass(frozen=True)
class Clip:
    id: int
    project_id: int
    path: str
    duration_s: float
    created_at: float
    source_id: int | None = None
    speaker_id: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    text: str = ""
    words: list = field(default_factory=list)
    quality: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)
    embedding: bytes | None = None
    review: str = "unreviewed"


JOB_ACTIVE = ("queued", "running")
JOB_FINISHED = ("done", "failed", "cancelled", "interrupted")


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    created_at: float
    project_id: int | None = None
    title: str = ""
    params: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    heavy: int = 0
    progress: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: str | None = None
    pid: int | None = None
    cancel_requested: int = 0
    attempts: int = 0
    started_at: float | None = None
    heartbeat_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status in JOB_ACTIVE

    def elapsed_s(self) -> float:
        """Seconds since the latest start, up to now or the finish."""
        if not self.started_at:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at


@dataclass(frozen=True)
class Voice:
    id: int
    name: str
    slug: str
    kind: str
    path: str
    created_at: float
    language: str = ""
    sample_rate: int | None = None
    origin: str = ""
    size_bytes: int = 0
    config: dict = field(default_factory=dict)


def as_dict(record: Any) -> dict:
    """A record as a plain dict (for JSON APIs)."""
    return dataclasses.asdict(record)
