"""The command-line front end: each handler parses nothing, calls `projects`, prints.

launch.py owns the argument parser; ``dispatch`` maps its parsed commands here.
A StudioError prints its one line and exits 2, as the design asks; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from projects import jobs, projects as project_store, sources
from projects.errors import StudioError
from projects.format import human_duration as format_duration
from projects.records import Job
from projects.registry import Registry
from projects.store import Store
from projects.workspace import Workspace

EXIT_USER_ERROR = 2
PROGRESS_BAR_CHARS = 30


def dispatch(command: str, args) -> int:
    """Run one parsed command; returns the process exit code."""
    handler = COMMANDS.get(command)
    if handler is None:
        print(f"Unknown command {command!r}; see --help.", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return handler(args) or 0
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 130


def _open(args) -> tuple[Workspace, Store]:
    ws = Workspace.open(args.workspace)
    return ws, Store(ws.db_path)


# --------------------------------------------------------------------------- progress output

def progress_line(fraction: float, message: str, eta_s: float | None = None) -> str:
    """A one-line text progress bar."""
    filled = int(round(fraction * PROGRESS_BAR_CHARS))
    eta = f" ETA {format_duration(eta_s)}" if eta_s else ""
    return f"[{'#' * filled}{'.' * (PROGRESS_BAR_CHARS - filled)}] {fraction * 100:5.1f}%{eta}  {message}"


def _print_progress(fraction: float, message: str, eta_s: float | None = None) -> None:
    end = "\n" if not sys.stdout.isatty() else "\r"
    print(progress_line(fraction, message, eta_s)[:150].ljust(150 if end == "\r" else 0), end=end,
          flush=True)


def run_in_foreground(store: Store, ws: Workspace, job: Job) -> Job:
    """Run a job in this process while a thread prints its progress from the store."""
    import threading

    stop = threading.Event()

    def watch() -> None:
        watcher = Store(ws.db_path, migrate=False)
        last = None
        while not stop.wait(0.5):
            row = jobs.get_job(watcher, job.id)
            if row.status == "running" and (row.progress, row.message) != last:
                last = (row.progress, row.message)
                _print_progress(row.progress, row.message, row.eta_s)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        final = jobs.run_job(store, ws, job.id, on_wait=print)
    finally:
        stop.set()
        thread.join()
    print()
    return final


def _report(job: Job) -> int:
    if job.status == "done":
        print(f"Job #{job.id} done: {job.message}")
        return 0
    print(f"Job #{job.id} {job.status}: {job.error or job.message}", file=sys.stderr)
    return EXIT_USER_ERROR if job.status == "failed" else 1


# --------------------------------------------------------------------------- commands

def cmd_doctor(args) -> int:
    from projects.doctor import run_doctor

    ws = Workspace.open(args.workspace)
    checks = run_doctor(ws)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for c in checks:
        print(f"[{marks[c.level]}] {c.name:<28} {c.detail}")
        if c.fix:
            print(f"       {'':<28} -> {c.fix}")
    failed = sum(c.level == "fail" for c in checks)
    print(f"\n{failed} problem(s) to fix." if failed else "\nAll essential checks passed.")
    return 1 if failed else 0


def cmd_project(args) -> int:
    ws, store = _open(args)
    if args.action == "list":
        rows = project_store.list_projects(store)
        if not rows:
            print("No projects yet: `launch.py project create NAME`.")
        for p in rows:
            st = project_store.project_stats(store, p.id)
            print(f"{p.id:>4}  {p.name:<30} {st['sources']} recordings, "
                  f"{st['seconds'] / 60:.1f} min, {st['clips']} clips")
    elif args.action == "create":
        p = project_store.create_project(store, ws, args.name)
        print(f"Created project '{p.name}' in {ws.project_dir(p.slug)}")
    elif args.action == "rename":
        p = project_store.rename_project(store, args.name, args.new_name)
        print(f"Renamed to '{p.name}'.")
    elif args.action == "delete":
        p = project_store.get_project(store, args.name)
        if not args.yes and not _confirm(f"Delete project '{p.name}' and all its files?"):
            print("Kept.")
            return 1
        project_store.delete_project(store, ws, p.id)
        print(f"Deleted project '{p.name}'.")
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question} Pass --yes to confirm when not running interactively.")
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_job(args) -> int:
    ws, store = _open(args)
    if args.action == "list":
        jobs.reap_orphans(store)
        for j in jobs.list_jobs(store, limit=None if args.all else 20):
            eta = f" ETA {format_duration(j.eta_s)}" if j.status == "running" and j.eta_s else ""
            print(f"#{j.id:<4} {j.status:<11} {j.progress * 100:5.1f}%{eta}  {j.title}"
                  f"  — {j.error or j.message}")
        return 0
    if args.action == "run":
        return _report(run_in_foreground(store, ws, jobs.get_job(store, args.job_id)))
    if args.action == "cancel":
        j = jobs.cancel(store, args.job_id)
        print(f"Job #{j.id}: {j.message}")
    elif args.action == "resume":
        j = jobs.resume(store, args.job_id)
        print(f"Job #{j.id} queued again; the studio starts it, or run "
              f"`launch.py job run {j.id}`.")
    elif args.action == "show":
        j = jobs.get_job(store, args.job_id)
        print(f"#{j.id} {j.kind} {j.status} {j.progress * 100:.1f}% — {j.error or j.message}")
        log_path = ws.job_log(j.id)
        if log_path.exists():
            print("".join(log_path.read_text(errors="replace").splitlines(True)[-20:]))
    return 0


def cmd_models(args) -> int:
    registry = Registry()
    action = args.action or "list"
    if action == "list":
        for r in registry.status():
            size = f"{r['size_mb']:>8.1f} MB" if r["size_mb"] else " " * 11
            mark = "installed" if r["installed"] else "missing  "
            licence = r["licence"] if len(r["licence"]) <= 24 else r["licence"][:23] + "…"
            print(f"{mark}  {r['id']:<30} {r['task']:<11}{size}  {licence:<24}  {r['title']}")
        return 0
    if action == "download":
        path = registry.download(args.model_id, progress=_print_progress)
        print(f"\nInstalled in {path}")
    elif action == "import":
        path = registry.import_files(args.model_id, args.files)
        print(f"Imported into {path}")
    return 0


def cmd_sources(args) -> int:
    ws, store = _open(args)
    if args.action == "list":
        project = project_store.get_project(store, args.project)
        for s in sources.list_sources(store, project.id):
            if s.status == "analysed":
                print(f"{s.id:>4}  {s.name:<40} {format_duration(s.duration_s):>12}  "
                      f"{s.lufs:6.1f} LUFS  peak {s.peak_dbfs:5.1f} dBFS")
            else:
                print(f"{s.id:>4}  {s.name:<40} {s.status}: {s.error or ''}")
        return 0
    job, problems = sources.add_and_analyse(store, ws, args.project,
                                            [(Path(f), None) for f in args.files])
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if job is None:
        print("Nothing new to analyse.")
        return EXIT_USER_ERROR if problems else 0
    if args.no_wait:
        print(f"Queued job #{job.id}.")
        return 0
    final = run_in_foreground(store, ws, job)
    for name, reason in final.result.get("failures", {}).items():
        print(f"failed: {name}: {reason}", file=sys.stderr)
    return _report(final)


COMMANDS: dict[str, Callable] = {
    "doctor": cmd_doctor, "project": cmd_project, "job": cmd_job,
    "models": cmd_models, "sources": cmd_sources,
}
