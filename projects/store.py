"""The SQLite store: one database per workspace, one connection per thread.

Gradio runs handlers on worker threads and every job runs in its own process, so
connections are never shared: :meth:`Store.db` hands each thread its own. WAL
lets the UI read while a job writes; the busy timeout lets writers queue.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from sqlite_utils import Database

from projects.migrations import migrations

BUSY_TIMEOUT_S = 30.0


def connect(path: Path | str) -> Database:
    """Open one connection with the pragmas every connection needs."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    db = Database(conn)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


class Store:
    """The studio database. Create one per process; share it between threads."""

    def __init__(self, path: Path | str, migrate: bool = True):
        self.path = Path(path)
        self._local = threading.local()
        if migrate:
            db = self.db
            if db.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.enable_wal()
            migrations.apply(db)

    @property
    def db(self) -> Database:
        """This thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
        return db

    def schema_version(self) -> list[str]:
        """Names of the applied migrations, oldest first."""
        return [m.name for m in migrations.applied(self.db)]

    # Small helpers shared by the record modules -------------------------------

    def one(self, sql: str, params: Iterable[Any] | dict = ()) -> dict | None:
        """The first row of a query as a dict, or None."""
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def all(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict]:
        """Every row of a query as dicts."""
        return list(self.db.query(sql, params if isinstance(params, dict) else list(params)))

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def now() -> float:
    """Timestamps in the store are Unix seconds."""
    return time.time()


def dumps(value: Any) -> str:
    """JSON for a TEXT column."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None, default: Any = None) -> Any:
    """Parse a JSON TEXT column, tolerating NULL."""
    if not text:
        return default
    return json.loads(text)
