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


def cmd_narrate(args) -> int:
    from projects import books, narrate
    from projects.errors import NotFound

    ws, store = _open(args)
    try:
        project = project_store.get_project(store, args.project)
    except NotFound:
        project = project_store.create_project(store, ws, args.project)
    settings = narrate.settings_for_format(args.format, args.voice, not args.no_check)
    book = books.import_book(store, ws, project, args.book)
    print(f"Imported '{book.title}': {len(books.list_chapters(store, book.id))} chapters.")
    print(narrate.RETAILER_NOTICE)
    final = run_in_foreground(store, ws, narrate.start_narration(store, ws, book.id, settings))
    if final.status == "done":
        for report in final.result.get("reports", []):
            problems = report.get("problems") or []
            print(f"  {'ok ' if not problems else 'MISS'} {report['chapter']}: RMS "
                  f"{report['rms_db']} dB, true peak {report['true_peak_db']} dBTP"
                  + (f" — {'; '.join(problems)}" if problems else ""))
        for path in narrate.copy_outputs(ws, final.result, args.out):
            print(f"wrote {path}")
    return _report(final)


def cmd_voices(args) -> int:
    from projects import voices

    ws, store = _open(args)
    if args.action == "export":
        return cmd_voices_export(args)
    if args.action == "import":
        v = voices.import_piper_voice(store, ws, args.onnx, args.config, args.name)
        print(f"Imported voice '{v.name}' ({v.language}, {v.sample_rate} Hz) as '{v.key}'.")
        return 0
    if args.action in ("rename", "delete", "zip"):
        return _voice_library_action(store, ws, args)
    for v in voices.list_tts_voices(store, ws):
        print(f"{v.key:<30} {v.name:<30} {v.language:<8} {v.sample_rate} Hz  {v.origin}")
    return 0


def cmd_dataset_export(args) -> int:
    from projects import export, review

    ws, store = _open(args)
    project = project_store.get_project(store, args.project)
    ids = [review.find_speaker(store, project.id, s)["id"] for s in args.speaker]
    result = export.export_speakers(store, ws, project, ids, args.format, out=args.out,
                                    make_zip=not args.no_zip)
    print(f"Exported {', '.join(result.speakers)}: {result.summary()}")
    print(f"folder: {result.folder}")
    if result.zip_path:
        print(f"zip:    {result.zip_path}")
    return 0


def cmd_dataset_build(args) -> int:
    from projects import dataset
    from projects.errors import NotFound

    ws, store = _open(args)
    try:
        project_store.get_project(store, args.project)
    except NotFound:
        project_store.create_project(store, ws, args.project)
    config = dataset.BuildConfig(
        speech_prob=args.speech_prob, backend=args.backend, model=args.model,
        language=args.language, device=args.device, min_seconds=args.min_seconds,
        max_seconds=args.max_seconds, pad_seconds=args.pad_seconds,
        cluster_criteria=args.cluster_criteria, separate=args.separate)
    job, problems = dataset.start_build(store, ws, args.project,
                                        [(Path(f), None) for f in args.files], config)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if args.no_wait:
        print(f"Queued job #{job.id}.")
        return 0
    final = run_in_foreground(store, ws, job)
    if final.status == "done":
        print(dataset.format_summary(dataset.dataset_summary(store, args.project)))
    return _report(final)


def cmd_dataset_recluster(args) -> int:
    from projects import dataset

    ws, store = _open(args)
    started = time.perf_counter()
    result = dataset.recluster(store, ws, args.project, args.threshold)
    print(f"{result['clips']} clips in {result['speakers']} speaker(s) at threshold "
          f"{result['threshold']:.2f} ({(time.perf_counter() - started) * 1000:.0f} ms).")
    print(dataset.format_summary(dataset.dataset_summary(store, args.project)))
    return 0


#: ``dataset <action>`` handlers; the dataset builder adds build and recluster here.
DATASET_ACTIONS: dict[str, Callable] = {"export": cmd_dataset_export, "build": cmd_dataset_build,
                                        "recluster": cmd_dataset_recluster}


def cmd_dataset(args) -> int:
    return DATASET_ACTIONS[args.action](args)


def _run_options(args):
    from projects import training

    finetune = bool(args.from_voice or args.from_run)
    opts = training.default_options(args.preset, finetune)
    overrides = {"max_steps": args.steps, "batch_size": args.batch_size,
                 "learning_rate": args.learning_rate, "checkpoint_every": args.checkpoint_every}
    for key, value in overrides.items():
        if value is not None:
            setattr(opts, key, value)
    opts.device, opts.all_clips = args.device, args.all_clips
    training.apply_gpus(opts, args.gpus)
    opts.base_voice, opts.base_run = args.from_voice, args.from_run
    return opts


def _wait_for_run(store: Store, ws: Workspace, run, no_wait: bool) -> int:
    from projects import training

    if no_wait:
        print(f"Queued run #{run.id} as job #{run.job_id}; the studio starts it, or run "
              f"`launch.py job run {run.job_id}`.")
        return 0
    final = run_in_foreground(store, ws, jobs.get_job(store, run.job_id))
    print(f"Run folder: {training.run_dir(ws, training.get_run(store, run.id))}")
    return _report(final)


def cmd_train(args) -> int:
    from projects import training
    from projects.errors import NotFound

    ws, store = _open(args)
    if args.action == "list":
        pid = project_store.get_project(store, args.project).id if args.project else None
        for r in training.list_runs(store, pid):
            best = f"best val {r.best_val:.3f} @ {r.best_step}" if r.best_val is not None else ""
            print(f"#{r.id:<4} {r.status:<11} {r.preset:<9} {r.name:<20} "
                  f"step {r.step}/{r.max_steps}  {best}")
        return 0
    if args.action == "resume":
        return _wait_for_run(store, ws, training.resume_run(store, args.run_id), args.no_wait)
    try:
        project_store.get_project(store, args.project)
    except NotFound:
        if not args.ljspeech:
            raise
        project_store.create_project(store, ws, args.project)
    opts = _run_options(args)
    check = training.preflight(store, ws, args.project, args.speaker, opts, args.ljspeech)
    print(check.summary())
    if args.check:
        return EXIT_USER_ERROR if check.problems else 0
    run = training.start_run(store, ws, args.project, args.speaker, opts, args.ljspeech)
    return _wait_for_run(store, ws, run, args.no_wait)


def _voice_library_action(store, ws, args) -> int:
    """`voices rename|delete|zip`: manage one library voice."""
    from projects import voices
    from projects.errors import BadInput

    if args.action == "rename":
        v = voices.rename_voice(store, ws, args.key, args.new_name)
        print(f"Voice '{v.slug}' is now called '{v.name}'.")
    elif args.action == "delete":
        if not args.yes:
            raise BadInput(f"Add --yes to delete voice '{args.key}' and its files.")
        print(f"Deleted voice '{voices.delete_voice(store, ws, args.key)}'.")
    else:
        print(f"wrote {voices.export_voice_zip(store, ws, args.key, args.out)}")
    return 0


def cmd_voices_export(args) -> int:
    from projects import training

    ws, store = _open(args)
    onnx_path, json_path = training.export_checkpoint(store, ws, args.run_id, args.out,
                                                      args.checkpoint)
    print(f"wrote {onnx_path}\nwrote {json_path}")
    return 0


COMMANDS: dict[str, Callable] = {
    "doctor": cmd_doctor, "project": cmd_project, "job": cmd_job,
    "models": cmd_models, "sources": cmd_sources,
    "narrate": cmd_narrate, "voices": cmd_voices,
    "dataset": cmd_dataset, "train": cmd_train,
}
