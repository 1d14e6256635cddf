#!/usr/bin/env python3
"""Voice Studio: set up its environment, start the studio, or drive it from the shell.

    python3 launch.py            # first run: create .venv and install; then start the studio
    python3 launch.py test       # run the whole test suite
    python3 launch.py --help     # every subcommand

The bootstrap half of this file uses the standard library only, so it runs on a
bare Python 3.11+. Once inside `.venv` it hands over to the CLI below, which
calls the same `projects` functions the UI calls.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
REQUIREMENTS_NODEPS = ROOT / "requirements-nodeps.txt"
STAMP = VENV / ".requirements.sha256"
WORKSPACE_ENV = "VOICE_STUDIO_WORKSPACE"
MIN_PYTHON = (3, 11)


# --------------------------------------------------------------------------- bootstrap

def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _requirements_digest() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, REQUIREMENTS_NODEPS):
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def _running_in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _install_requirements(python: Path) -> None:
    print("Installing Voice Studio's dependencies into .venv "
          "(the first time takes a few minutes)...", flush=True)
    started = time.monotonic()
    pip = [str(python), "-m", "pip", "install", "--progress-bar", "on"]
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    if REQUIREMENTS_NODEPS.exists():
        subprocess.run(pip + ["--no-deps", "-r", str(REQUIREMENTS_NODEPS)], check=True)
    STAMP.write_text(_requirements_digest())
    print(f"Dependencies ready in {time.monotonic() - started:.0f} s.", flush=True)


def ensure_environment() -> None:
    """Create or refresh .venv when needed, then re-run this script inside it."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"Voice Studio needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; "
                 f"this is {sys.version.split()[0]}.")
    if os.environ.get("VOICE_STUDIO_NO_VENV") == "1":
        return  # the caller manages the environment (packagers, debugging)
    up_to_date = STAMP.exists() and STAMP.read_text() == _requirements_digest()
    if _running_in_venv() and up_to_date:
        return
    python = _venv_python()
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not up_to_date:
        try:
            _install_requirements(python)
        except subprocess.CalledProcessError as err:
            sys.exit(f"Installing dependencies failed ({err}). Check your network or "
                     "disk space, then run `python3 launch.py` again.")
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


# --------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py", description="Voice Studio: voice datasets, training and narration.")
    parser.add_argument("--workspace", type=Path,
                        default=Path(os.environ.get(WORKSPACE_ENV, ROOT / "workspace")),
                        help=f"where projects, voices and studio.db live "
                             f"(default: workspace/ here; env {WORKSPACE_ENV})")
    parser.add_argument("--port", type=int, default=7860, help="studio port (default 7860)")
    parser.add_argument("--listen", action="store_true",
                        help="serve on all network interfaces (needs --auth)")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require this login; mandatory with --listen")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("studio", help="start the studio (the default)")
    test = sub.add_parser("test", help="run the test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")
    sub.add_parser("doctor", help="check this machine: Python, torch, GPU, tools, models, disk")
    _add_project_commands(sub)
    _add_job_commands(sub)
    _add_model_commands(sub)
    _add_source_commands(sub)
    _add_narrate_commands(sub)
    _add_dataset_commands(sub)
    _add_train_commands(sub)
    return parser


def _add_project_commands(sub) -> None:
    p = sub.add_parser("project", help="list, create, rename or delete projects")
    ps = p.add_subparsers(dest="action", required=True)
    ps.add_parser("list", help="list projects")
    c = ps.add_parser("create", help="create a project")
    c.add_argument("name")
    r = ps.add_parser("rename", help="rename a project")
    r.add_argument("name")
    r.add_argument("new_name")
    d = ps.add_parser("delete", help="delete a project with all its files")
    d.add_argument("name")
    d.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _add_job_commands(sub) -> None:
    p = sub.add_parser("job", help="list, run, cancel or resume background jobs")
    ps = p.add_subparsers(dest="action", required=True)
    lst = ps.add_parser("list", help="recent jobs")
    lst.add_argument("--all", action="store_true", help="every job, not only the last 20")
    for name, text in (("run", "run a queued or interrupted job here, in the foreground"),
                       ("cancel", "ask a job to stop"),
                       ("resume", "queue an interrupted or cancelled job again"),
                       ("show", "a job's details and the end of its log")):
        a = ps.add_parser(name, help=text)
        a.add_argument("job_id", type=int)


def _add_model_commands(sub) -> None:
    p = sub.add_parser("models", help="pretrained models: list, download, import")
    ps = p.add_subparsers(dest="action")
    ps.add_parser("list", help="installed and missing models (the default)")
    d = ps.add_parser("download", help="download a model and verify its checksum")
    d.add_argument("model_id")
    i = ps.add_parser("import", help="install a model from local files")
    i.add_argument("model_id")
    i.add_argument("files", nargs="+", type=Path)


def _add_source_commands(sub) -> None:
    p = sub.add_parser("sources", help="add recordings to a project and analyse them")
    ps = p.add_subparsers(dest="action", required=True)
    a = ps.add_parser("add", help="copy recordings into a project and run the analysis job")
    a.add_argument("--project", required=True)
    a.add_argument("files", nargs="+", type=Path)
    a.add_argument("--no-wait", action="store_true", help="queue the job and return")
    lst = ps.add_parser("list", help="a project's recordings with their measurements")
    lst.add_argument("--project", required=True)


def _add_narrate_commands(sub) -> None:
    n = sub.add_parser("narrate", help="narrate a book file into chapter files or an M4B")
    n.add_argument("--project", required=True, help="project (created when missing)")
    n.add_argument("--book", required=True, type=Path, help="epub, txt, md, pdf or docx")
    n.add_argument("--voice", default="piper-en_US-joe-medium",
                   help="TTS voice key or name (`launch.py voices list`)")
    n.add_argument("--out", required=True, type=Path, help="folder for the finished files")
    n.add_argument("--format", default="m4b", choices=("m4b", "mp3", "wav", "flac"))
    n.add_argument("--no-check", action="store_true",
                   help="skip the Whisper back-check of every sentence (faster)")
    v = sub.add_parser("voices", help="TTS voices: list, import a Piper voice")
    vs = v.add_subparsers(dest="action")
    vs.add_parser("list", help="voices that can narrate (the default)")
    i = vs.add_parser("import", help="copy a Piper voice (.onnx + .onnx.json) into the library")
    i.add_argument("onnx", type=Path)
    i.add_argument("--config", type=Path, help="its JSON config (default: beside the .onnx)")
    i.add_argument("--name", help="name shown in the studio")
    x = vs.add_parser("export", help="export a training run's checkpoint as a Piper voice")
    x.add_argument("run_id", type=int)
    x.add_argument("--out", required=True, type=Path, help="folder for the .onnx and .onnx.json")
    x.add_argument("--checkpoint", help="'best' (default), a step number or a file name")
    r = vs.add_parser("rename", help="give a library voice a new name (its key stays)")
    r.add_argument("key", help="voice key or name (`launch.py voices list`)")
    r.add_argument("new_name")
    d = vs.add_parser("delete", help="remove a library voice and its files")
    d.add_argument("key", help="voice key or name")
    d.add_argument("--yes", action="store_true", help="confirm: the voice's files are deleted")
    z = vs.add_parser("zip", help="write a voice's .onnx + .onnx.json as one zip")
    z.add_argument("key", help="voice key or name")
    z.add_argument("--out", required=True, type=Path, help="folder for the zip")


def _add_train_commands(sub) -> None:
    p = sub.add_parser("train", help="train VITS voices (runs are resumable jobs)")
    ps = p.add_subparsers(dest="action", required=True)
    v = ps.add_parser("vits", help="check the data, then train a VITS voice on one speaker")
    v.add_argument("--project", required=True, help="project (created for --ljspeech)")
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--speaker", help="speaker name or id (its accepted clips with text)")
    src.add_argument("--ljspeech", type=Path, help="an LJSpeech folder instead of a speaker")
    v.add_argument("--preset", default="tiny", help="tiny, medium, mb-istft or high")
    v.add_argument("--from-voice", help="fine-tune from this library voice (key or name)")
    v.add_argument("--from-run", type=int, help="fine-tune from this run's best checkpoint")
    v.add_argument("--steps", type=int, help="optimiser steps (default per preset)")
    v.add_argument("--batch-size", type=int, help="clips per step (default per preset)")
    v.add_argument("--learning-rate", type=float)
    v.add_argument("--checkpoint-every", type=int)
    v.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    v.add_argument("--gpus", help="train on several GPUs at once with DDP, e.g. 0,1 "
                   "(one process per GPU; --batch-size is per GPU)")
    v.add_argument("--all-clips", action="store_true",
                   help="use every clip with text, not only accepted ones")
    v.add_argument("--check", action="store_true", help="only run the pre-flight check")
    v.add_argument("--no-wait", action="store_true", help="queue the job and return")
    r = ps.add_parser("resume", help="continue a stopped run from its latest checkpoint")
    r.add_argument("run_id", type=int)
    r.add_argument("--no-wait", action="store_true", help="queue the job and return")
    lst = ps.add_parser("list", help="training runs with status and best validation loss")
    lst.add_argument("--project")


def _add_dataset_commands(sub) -> None:
    p = sub.add_parser("dataset", help="build, re-cluster and export speaker datasets")
    ps = p.add_subparsers(dest="action", required=True)
    _add_dataset_build_commands(ps)
    e = ps.add_parser("export", help="write a speaker's accepted clips for other tools")
    e.add_argument("--project", required=True)
    e.add_argument("--speaker", required=True, action="append",
                   help="speaker name or id (repeat with --format multi)")
    e.add_argument("--format", required=True, choices=("ljspeech", "vits", "multi", "rvc"))
    e.add_argument("--out", required=True, type=Path, help="folder to write (a zip goes beside it)")
    e.add_argument("--no-zip", action="store_true", help="do not write the zip")



def _add_dataset_build_commands(ps) -> None:
    b = ps.add_parser("build", help="recordings -> transcribed clips grouped by speaker")
    b.add_argument("--project", required=True, help="project (created when missing)")
    b.add_argument("files", nargs="*", type=Path,
                   help="recordings, or zips/folders of clips (LJSpeech metadata.csv optional)")
    b.add_argument("--speech-prob", type=float, default=0.5, help="VAD threshold 0..1 (0.5)")
    b.add_argument("--backend", default="faster-whisper",
                   choices=("faster-whisper", "openai-whisper"))
    b.add_argument("--model", default="tiny.en",
                   help="Whisper model: tiny.en (bundled) or a registry id such as whisper-small.en")
    b.add_argument("--language", default="", help="language code, empty = detect")
    b.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    b.add_argument("--min-seconds", type=float, default=1.5, help="shortest clip (1.5)")
    b.add_argument("--max-seconds", type=float, default=12.0, help="longest clip (12)")
    b.add_argument("--pad-seconds", type=float, default=0.15, help="silence kept around clips")
    b.add_argument("--cluster-criteria", type=float, default=0.70,
                   help="cosine similarity 0..1 to group clips as one speaker (0.70)")
    b.add_argument("--separate", action="store_true",
                   help="separate voice from music first (needs the separation model)")
    b.add_argument("--no-wait", action="store_true", help="queue the job and return")
    r = ps.add_parser("recluster", help="regroup clips by speaker at a new threshold (instant)")
    r.add_argument("--project", required=True)
    r.add_argument("--threshold", type=float, required=True, help="cosine similarity 0..1")

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "studio"
    if command == "test":
        return _run_tests(args.pytest_args)
    if command == "studio":
        from studio.app import serve  # heavy imports only after the environment is ready

        return serve(workspace=args.workspace, port=args.port, listen=args.listen,
                     auth=args.auth, open_browser=not args.no_browser)
    from projects import cli

    return cli.dispatch(command, args)


def _run_tests(pytest_args: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", *pytest_args]
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    ensure_environment()
    sys.exit(main())
