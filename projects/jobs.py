"""Background jobs: a row in SQLite plus a separate OS process.

A job moves through ``queued → running → done | failed | cancelled``; a running
job whose process vanished becomes ``interrupted``. Interrupted, cancelled and
failed jobs of a resumable kind can be queued again: the kind's ``run`` reads
``ctx.state`` to skip the units it already finished.

The worker (``run_job``) writes status, progress, ETA, metrics and errors; the
UI and CLI only read rows, so they never block and always agree. One heavy
(GPU) job runs at a time; others wait in the queue.
"""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from projects.errors import Cancelled, Conflict, NotFound, StudioError
from projects.records import Job, from_row
from projects.store import Store, dumps, now
from projects.workspace import Workspace

HEARTBEAT_S = 5.0          # how often a worker proves it is alive
STALE_AFTER_S = 60.0       # a running job silent this long is presumed dead
CLAIM_GRACE_S = 60.0       # a claimed job must report its pid within this time
PROGRESS_EVERY_S = 0.3     # progress writes are throttled to this interval
CANCEL_POLL_S = 0.5        # how often the worker re-reads the cancel flag
MAX_LIGHT_JOBS = 2         # CPU jobs that may run beside the heavy one
WAIT_POLL_S = 1.0

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- kinds

@dataclass(frozen=True)
class JobKind:
    """What a job does. Modules register their kinds at import (see projects.kinds)."""

    name: str
    #: The work itself; returns a small JSON-able result dict (or None).
    run: Callable[["JobContext"], dict | None]
    #: Shown in job lists.
    title: str
    #: Needs the GPU slot: only one heavy job runs at a time.
    heavy: bool = False
    #: Can continue from ``ctx.state`` after an interruption.
    resumable: bool = True


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Make a job kind known to the worker."""
    KINDS[kind.name] = kind
    return kind


def job_kind(name: str) -> JobKind:
    """Look a kind up, importing every workflow module first."""
    import projects.kinds  # noqa: F401  (registers the kinds)

    if name not in KINDS:
        raise NotFound(f"Unknown job kind '{name}'.")
    return KINDS[name]


# --------------------------------------------------------------------------- rows

def submit(store: Store, kind: str, params: dict, project_id: int | None = None,
           title: str | None = None) -> Job:
    """Queue a job; the studio's runner (or ``job run ID``) starts it."""
    spec = job_kind(kind)
    job_id = store.db["jobs"].insert({
        "kind": kind, "project_id": project_id, "title": title or spec.title,
        "params": dumps(params), "status": "queued", "heavy": int(spec.heavy),
        "created_at": now(), "message": "Waiting to start",
    }).last_pk
    return get_job(store, job_id)


def get_job(store: Store, job_id: int) -> Job:
    """A job by id; NotFound otherwise."""
    job = from_row(Job, store.one("SELECT * FROM jobs WHERE id = ?", [job_id]))
    if job is None:
        raise NotFound(f"No job #{job_id}.")
    return job


def list_jobs(store: Store, limit: int | None = 20, project_id: int | None = None,
              kind: str | None = None) -> list[Job]:
    """Active jobs first, then the most recent ones."""
    where, params = [], []
    if project_id is not None:
        where.append("project_id = ?")
        params.append(project_id)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    sql = ("SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") +
           " ORDER BY status NOT IN ('queued','running'), id DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [from_row(Job, r) for r in store.all(sql, params)]


def cancel(store: Store, job_id: int) -> Job:
    """Stop a job: a queued one at once, a running one at its next unit."""
    job = get_job(store, job_id)
    if job.status == "queued":
        _finish(store, job_id, "cancelled", message="Cancelled before it started")
    elif job.status == "running":
        store.db["jobs"].update(job_id, {"cancel_requested": 1, "message": "Cancelling..."})
    else:
        raise Conflict(f"Job #{job_id} is not running (it is {job.status}).")
    return get_job(store, job_id)


def resume(store: Store, job_id: int) -> Job:
    """Queue an interrupted, cancelled or failed job again, keeping its state."""
    job = get_job(store, job_id)
    if job.status not in ("interrupted", "cancelled", "failed"):
        raise Conflict(f"Job #{job_id} is {job.status}; only stopped jobs can be resumed.")
    if not job_kind(job.kind).resumable:
        raise Conflict(f"Jobs of kind '{job.kind}' cannot be resumed; start a new one.")
    store.db["jobs"].update(job_id, {
        "status": "queued", "cancel_requested": 0, "error": None, "pid": None,
        "finished_at": None, "eta_s": None, "message": "Waiting to resume"})
    return get_job(store, job_id)


def metrics(store: Store, job_id: int, names: list[str] | None = None,
            max_points: int | None = None) -> dict[str, list[tuple[int, float, float]]]:
    """A job's metrics as ``{name: [(step, value, t), ...]}``, optionally thinned."""
    sql = "SELECT name, step, value, t FROM metrics WHERE job_id = ?"
    params: list = [job_id]
    if names:
        sql += " AND name IN (%s)" % ",".join("?" * len(names))
        params += names
    out: dict[str, list] = {}
    for row in store.db.execute(sql + " ORDER BY name, step", params).fetchall():
        out.setdefault(row[0], []).append((row[1], row[2], row[3]))
    if max_points:
        out = {k: v[:: max(1, len(v) // max_points)] for k, v in out.items()}
    return out


def _finish(store: Store, job_id: int, status: str, message: str = "",
            error: str | None = None, result: dict | None = None) -> None:
    values = {"status": status, "finished_at": now(), "eta_s": None, "pid": None,
              "cancel_requested": 0, "error": error}
    if message:
        values["message"] = message
    if result is not None:
        values["result"] = dumps(result)
    if status == "done":
        values["progress"] = 1.0
    store.db["jobs"].update(job_id, values)


# --------------------------------------------------------------------------- liveness

def pid_alive(pid: int | None) -> bool:
    """True when a process with this pid exists (zombies count as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not collected it yet
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def reap_orphans(store: Store) -> list[int]:
    """Mark running jobs whose process is gone as interrupted; return their ids."""
    reaped = []
    t = now()
    for row in store.all("SELECT * FROM jobs WHERE status = 'running'"):
        job = from_row(Job, row)
        claimed_without_pid = job.pid is None and t - (job.started_at or 0) > CLAIM_GRACE_S
        silent = t - (job.heartbeat_at or job.started_at or t) > STALE_AFTER_S
        if claimed_without_pid or (job.pid is not None and (not pid_alive(job.pid) or silent)):
            store.db["jobs"].update(job.id, {
                "status": "interrupted", "pid": None, "eta_s": None, "finished_at": t,
                "message": "Interrupted: its process stopped. Resume to continue."})
            reaped.append(job.id)
    return reaped


def claim(store: Store, job_id: int, pid: int | None) -> bool:
    """Atomically move a job to running if it may start now (GPU slot, light limit)."""
    db = store.db
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return False
    try:
        job = from_row(Job, store.one("SELECT * FROM jobs WHERE id = ?", [job_id]))
        if job is None or job.status not in ("queued", "interrupted"):
            db.execute("ROLLBACK")
            return False
        running = store.all("SELECT heavy FROM jobs WHERE status = 'running'")
        heavy_busy = any(r["heavy"] for r in running)
        light_count = sum(1 for r in running if not r["heavy"])
        if (job.heavy and heavy_busy) or (not job.heavy and light_count >= MAX_LIGHT_JOBS):
            db.execute("ROLLBACK")
            return False
        t = now()
        db.execute("UPDATE jobs SET status='running', pid=?, started_at=?, heartbeat_at=?, "
                   "attempts=attempts+1, cancel_requested=0, error=NULL, finished_at=NULL, "
                   "message='Starting' WHERE id=?", [pid, t, t, job_id])
        db.execute("COMMIT")
        return True
    except BaseException:
        db.rollback()
        raise


def next_queued(store: Store) -> list[Job]:
    """Queued jobs, oldest first."""
    rows = store.all("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id")
    return [from_row(Job, r) for r in rows]


# --------------------------------------------------------------------------- worker side

class JobContext:
    """What a running job sees: its parameters, saved state, and the reporting calls."""

    def __init__(self, store: Store, ws: Workspace, job: Job, logger: logging.Logger):
        self.store, self.workspace, self.job, self.log = store, ws, job, logger
        self.params: dict = dict(job.params)
        self.state: dict = dict(job.state)
        self._t0 = time.monotonic()
        self._f0 = job.progress if job.state else 0.0
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancel = False

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress 0..1 with a message; the ETA is derived from the rate."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        t = time.monotonic()
        if t - self._last_write < PROGRESS_EVERY_S and fraction < 1.0:
            return
        self._last_write = t
        done = fraction - self._f0
        eta = (t - self._t0) * (1.0 - fraction) / done if done > 1e-4 else None
        self.store.db["jobs"].update(self.job.id, {
            "progress": fraction, "message": message[:300], "eta_s": eta,
            "heartbeat_at": now()})

    def metric(self, step: int, values: dict[str, float]) -> None:
        """Record metrics keyed ``group/name`` for one step."""
        t = now()
        rows = [{"job_id": self.job.id, "step": int(step), "name": k, "value": float(v), "t": t}
                for k, v in values.items()]
        self.store.db["metrics"].insert_all(rows)

    def should_cancel(self) -> bool:
        """True once the user asked to cancel (re-read from the store, throttled)."""
        t = time.monotonic()
        if not self._cancel and t - self._last_cancel_check >= CANCEL_POLL_S:
            self._last_cancel_check = t
            row = self.store.one("SELECT cancel_requested FROM jobs WHERE id = ?", [self.job.id])
            self._cancel = bool(row and row["cancel_requested"])
        return self._cancel

    def check_cancel(self) -> None:
        """Raise Cancelled when the user asked to stop."""
        if self.should_cancel():
            raise Cancelled()

    def save_state(self, **updates) -> None:
        """Persist resume state at once: whatever is saved here survives a crash."""
        self.state.update(updates)
        self.store.db["jobs"].update(self.job.id, {"state": dumps(self.state)})


class _Heartbeat(threading.Thread):
    """Keeps ``heartbeat_at`` fresh while a long unit runs without reporting."""

    def __init__(self, store_path: Path, job_id: int):
        super().__init__(daemon=True)
        self.store_path, self.job_id = store_path, job_id
        self.stopped = threading.Event()

    def run(self) -> None:
        store = Store(self.store_path, migrate=False)
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                store.db["jobs"].update(self.job_id, {"heartbeat_at": now()})
            except sqlite3.OperationalError:
                pass  # the database is busy; the next beat will do


def _job_logger(ws: Workspace, job_id: int) -> logging.Logger:
    logger = logging.getLogger(f"voice_studio.job.{job_id}")
    logger.setLevel(logging.INFO)
    _close_handlers(logger)  # a logger of the same job id may point at another workspace
    handler = logging.FileHandler(ws.job_log(job_id), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def _close_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def wait_for_slot(store: Store, job_id: int, on_wait: Callable[[str], None] | None = None) -> None:
    """Block until the job can be claimed by this process."""
    announced = False
    while not claim(store, job_id, os.getpid()):
        job = get_job(store, job_id)
        if job.status not in ("queued", "interrupted"):
            raise Conflict(f"Job #{job_id} is {job.status}; nothing to run.")
        if on_wait and not announced:
            on_wait("Waiting for the running GPU job to finish...")
            announced = True
        time.sleep(WAIT_POLL_S)


def run_job(store: Store, ws: Workspace, job_id: int, claimed: bool = False,
            on_wait: Callable[[str], None] | None = None) -> Job:
    """Run one job in this process, from claim to final status. Returns the final row."""
    if claimed:
        store.db["jobs"].update(job_id, {"pid": os.getpid(), "heartbeat_at": now()})
    else:
        job = get_job(store, job_id)
        if job.status == "cancelled" or job.status == "failed":
            resume(store, job_id)
        wait_for_slot(store, job_id, on_wait)
    job = get_job(store, job_id)
    logger = _job_logger(ws, job_id)
    logger.info("job %s (%s) started, attempt %s, pid %s", job_id, job.kind, job.attempts,
                os.getpid())
    beat = _Heartbeat(store.path, job_id)
    beat.start()
    try:
        _execute(store, ws, job, logger)
    finally:
        beat.stopped.set()
        _close_handlers(logger)
    return get_job(store, job_id)


def _execute(store: Store, ws: Workspace, job: Job, logger: logging.Logger) -> None:
    ctx = JobContext(store, ws, job, logger)
    try:
        result = job_kind(job.kind).run(ctx) or {}
    except Cancelled:
        logger.info("cancelled")
        _finish(store, job.id, "cancelled", message="Cancelled; finished work was kept")
    except KeyboardInterrupt:
        logger.info("interrupted")
        _finish(store, job.id, "interrupted", message="Interrupted. Resume to continue.")
        raise
    except StudioError as err:
        logger.error("failed: %s", err)
        _finish(store, job.id, "failed", message="Failed", error=str(err))
    except Exception as err:  # a bug: the user gets one line, the log gets everything
        logger.error("crashed:\n%s", traceback.format_exc())
        _finish(store, job.id, "failed", message="Failed",
                error=f"Unexpected error ({type(err).__name__}: {err}); "
                      f"the full traceback is in {ws.job_log(job.id)}")
    else:
        logger.info("done: %s", result)
        _finish(store, job.id, "done", message=result.get("summary", "Done"), result=result)


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a killed worker records 'interrupted'."""
    def handler(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------- studio side

class JobRunner(threading.Thread):
    """The studio's scheduler: reaps orphans and starts queued jobs as processes."""

    def __init__(self, ws: Workspace, poll_s: float = 1.0):
        super().__init__(daemon=True, name="job-runner")
        self.ws, self.poll_s = ws, poll_s
        self.store = Store(ws.db_path, migrate=False)
        self.children: dict[int, subprocess.Popen] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.tick()
            except Exception:  # the scheduler must outlive any single bad row
                log.exception("job runner tick failed")
            self.stopped.wait(self.poll_s)

    def tick(self) -> None:
        """One scheduling pass."""
        self.children = {j: p for j, p in self.children.items() if p.poll() is None}
        reap_orphans(self.store)
        for job in next_queued(self.store):
            if claim(self.store, job.id, None):
                self._spawn(job.id)

    def _spawn(self, job_id: int) -> None:
        cmd = [sys.executable, "-m", "projects.worker", str(job_id),
               "--workspace", str(self.ws.root), "--claimed"]
        with open(self.ws.job_log(job_id), "ab") as out:
            proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.children[job_id] = proc
        self.store.db["jobs"].update(job_id, {"pid": proc.pid})

    def stop(self) -> None:
        self.stopped.set()
