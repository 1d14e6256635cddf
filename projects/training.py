"""Training runs: data from the store, run records, the ``train_vits`` job, promote and export.

A run is a row in ``runs`` plus a folder ``projects/<slug>/runs/run-<id>/`` that holds
its ``config.json`` (hyper-parameters, model config, data source, voice metadata),
``items.json`` (clips with their phoneme ids, computed once), ``cache/`` (spectrograms),
the checkpoints (``ckpt_*.pt``, ``best.pt``) and ``samples/step_*.wav``. The run's
status is its job's: cancel and resume go through :mod:`projects.jobs`, and a resumed
job continues from the latest checkpoint in the folder.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from projects import jobs
from projects.errors import BadInput, Conflict, NoGPU, NotFound, StudioError
from projects.projects import get_project
from projects.records import Project, from_row
from projects.store import Store, dumps, now
from projects.workspace import Workspace, atomic_path

RUN_KIND = "vits"
JOB_KIND = "train_vits"
CONFIG_NAME = "config.json"
ITEMS_NAME = "items.json"
SAMPLES_DIR = "samples"
#: Fewest usable clips a run accepts (validation takes some of them).
MIN_CLIPS = 5
#: Below this much audio a from-scratch run is warned that it will not learn to speak.
SCRATCH_MIN_MINUTES = 30.0
#: Below this much audio even a fine-tune is warned.
FINETUNE_MIN_MINUTES = 2.0
#: Validation mel loss must exceed the best by this factor to count as rising.
RISE_FACTOR = 1.02
#: Checkpoints in a row above the best before the over-training warning shows.
RISING_CHECKPOINTS = 3
#: Points per series sent to the plots (more is invisible and slow).
PLOT_POINTS = 600
#: Rough GPU memory per clip in a batch, in GB, per preset (measured order of magnitude).
GPU_GB_PER_ITEM = {"tiny": 0.05, "medium": 0.9, "mb-istft": 0.7, "high": 1.3}
#: Weights, gradients and AdamW moments: bytes per parameter.
GPU_BYTES_PER_PARAM = 16
#: Headroom kept free on the GPU for the CUDA context and fragmentation, in GB.
GPU_RESERVE_GB = 1.0
#: Device choice meaning several GPUs at once ("gpus:0,1"), as listed by list_devices.
GPUS_PREFIX = "gpus:"
#: Loss curves the Train tab plots by default.
LOSS_METRICS = ("loss/gen", "loss/disc", "loss/mel", "loss/dur", "loss/kl", "val/mel")
PROGRESS_METRIC = "loss/mel"
#: Cached spectrograms inside a run folder.
CACHE_DIR = "cache"


@dataclass(frozen=True)
class Run:
    """A training run row, with its job's status."""

    id: int
    project_id: int
    kind: str
    preset: str
    out_dir: str
    created_at: float
    job_id: int | None = None
    speaker_id: int | None = None
    name: str = ""
    base: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    max_steps: int = 0
    step: int = 0
    best_step: int | None = None
    best_val: float | None = None
    last_checkpoint: str | None = None
    status: str = "queued"


@dataclass
class RunOptions:
    """What the user chooses when starting a VITS run."""

    preset: str = "tiny"
    """Model preset for a run from scratch (a fine-tune keeps its base voice's shapes)."""
    max_steps: int = 2000
    """Optimiser steps to train."""
    batch_size: int = 8
    """Clips per step; lower it when the GPU runs out of memory."""
    learning_rate: float = 2e-4
    """AdamW learning rate (fine-tunes often use 1e-4)."""
    checkpoint_every: int = 200
    """Steps between checkpoints; each one validates and renders a sample."""
    log_every: int = 10
    """Steps between metric rows."""
    val_items: int = 2
    """Clips held out for validation."""
    keep_last: int = 3
    """Step checkpoints kept besides best.pt."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    precision: str = "fp32"
    """"fp32", "bf16" or "fp16" (mixed precision needs a GPU)."""
    all_clips: bool = False
    """Use every clip of the speaker with text, not only accepted ones (early tests)."""
    base_voice: str | None = None
    """Fine-tune from this library voice (key or name)."""
    base_run: int | None = None
    """Fine-tune from this earlier run's best (or latest) checkpoint."""
    seed: int = 1234
    """Seed of weights, data order and noise."""
    gpus: str = ""
    """Several GPUs training together with DDP, one process each, e.g. "0,1" (batch_size
    is then per GPU); "cpu:N" runs N CPU processes (slow; it checks the multi-GPU path
    on machines without GPUs); empty: one process on ``device``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunOptions":
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def default_options(preset_name: str, finetune: bool = False) -> RunOptions:
    """Sensible defaults per preset (fine-tunes: fewer steps, lower learning rate)."""
    if preset_name == "tiny":
        return RunOptions(preset="tiny", max_steps=2000, batch_size=8, checkpoint_every=200)
    steps = 5000 if finetune else 100_000
    return RunOptions(preset=preset_name, max_steps=steps, batch_size=16,
                      learning_rate=1e-4 if finetune else 2e-4, checkpoint_every=1000,
                      log_every=50)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SpeakerData:
    """A speaker's dataset as the Train tab lists it."""

    id: int
    name: str
    clips: int
    minutes: float
    transcribed: int
    accepted: int
    accepted_transcribed: int

    @property
    def label(self) -> str:
        """One line for pickers."""
        return (f"{self.name} — {self.clips} clips, {self.minutes:.1f} min, "
                f"{self.transcribed} transcribed, {self.accepted_transcribed} accepted with text")


def speaker_data(store: Store, project_id: int) -> list[SpeakerData]:
    """Every speaker of a project with clip, minute and transcript counts."""
    rows = store.all("""
        SELECT s.id, s.name, COUNT(c.id) AS clips, COALESCE(SUM(c.duration_s), 0) / 60.0 AS minutes,
               SUM(TRIM(COALESCE(c.text, '')) != '') AS transcribed,
               SUM(c.review = 'accepted') AS accepted,
               SUM(c.review = 'accepted' AND TRIM(COALESCE(c.text, '')) != '') AS acc_text
        FROM speakers s LEFT JOIN clips c ON c.speaker_id = s.id
        WHERE s.project_id = ? GROUP BY s.id ORDER BY s.name""", [project_id])
    return [SpeakerData(r["id"], r["name"], r["clips"], r["minutes"], r["transcribed"] or 0,
                        r["accepted"] or 0, r["acc_text"] or 0) for r in rows]


def find_speaker(store: Store, project_id: int, name_or_id: str | int) -> dict:
    """A speaker row of the project by id or (case-insensitive) name."""
    row = store.one("SELECT * FROM speakers WHERE project_id = ? AND (CAST(id AS TEXT) = ? "
                    "OR name = ? COLLATE NOCASE)", [project_id, str(name_or_id), str(name_or_id)])
    if row is None:
        raise NotFound(f"No speaker '{name_or_id}' in this project.")
    return row


@dataclass
class ClipText:
    """One training clip before phonemization."""

    path: Path
    text: str
    clip_id: int | None = None


def speaker_clips(store: Store, ws: Workspace, speaker_id: int, all_clips: bool = False
                  ) -> tuple[list[ClipText], int]:
    """A speaker's accepted clips (or all) with text, and how many were left out for no text."""
    review = "" if all_clips else "AND review = 'accepted'"
    rows = store.all(f"SELECT id, path, text FROM clips WHERE speaker_id = ? {review} ORDER BY id",
                     [speaker_id])
    with_text = [r for r in rows if (r["text"] or "").strip()]
    clips = [ClipText(ws.resolve(r["path"]), r["text"].strip(), r["id"]) for r in with_text]
    return clips, len(rows) - len(with_text)


def ljspeech_clips(folder: Path | str) -> list[ClipText]:
    """Clips of an LJSpeech folder (``metadata.csv`` as ``id|text|normalized``, ``wavs/``)."""
    folder = Path(folder)
    meta = folder / "metadata.csv"
    if not meta.is_file():
        raise BadInput(f"{folder} is not an LJSpeech folder (no metadata.csv).")
    clips = []
    with meta.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE):
            if len(row) >= 2 and row[-1].strip():
                clips.append(ClipText(folder / "wavs" / f"{row[0]}.wav", row[-1].strip()))
    return clips


# --------------------------------------------------------------------------- pre-flight


@dataclass
class Preflight:
    """What the check before a run found: problems stop the run, warnings do not."""

    clips: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        """BadInput with every problem in one line, when there are any."""
        if self.problems:
            raise BadInput(" ".join(self.problems))

    def summary(self) -> str:
        """Everything in a few lines for the UI and CLI."""
        head = f"{self.clips} clips, {self.seconds / 60:.1f} min of audio."
        lines = [head] + [f"Problem: {p}" for p in self.problems] + \
            [f"Note: {w}" for w in self.warnings]
        return "\n".join(lines)


def _clip_rates(clips: list[ClipText]) -> tuple[dict[int, int], float, list[Path]]:
    import soundfile as sf

    rates: dict[int, int] = {}
    seconds, missing = 0.0, []
    for clip in clips:
        try:
            info = sf.info(str(clip.path))
        except (RuntimeError, OSError):
            missing.append(clip.path)
            continue
        rates[info.samplerate] = rates.get(info.samplerate, 0) + 1
        seconds += info.duration
    return rates, seconds, missing


def check_data(clips: list[ClipText], no_text: int, model_rate: int, project_rate: int | None,
               opts: RunOptions, finetune: bool) -> Preflight:
    """Counts, transcripts and sample rates of the training clips."""
    rates, seconds, missing = _clip_rates(clips)
    pf = Preflight(clips=len(clips) - len(missing), seconds=seconds)
    if no_text:
        pf.warnings.append(f"{no_text} clips have no transcript and are left out "
                           "(add text in Review to use them).")
    if missing:
        pf.problems.append(f"{len(missing)} clip files are missing or unreadable "
                           f"(first: {missing[0].name}).")
    if pf.clips < MIN_CLIPS:
        hint = "transcribe and accept more clips in Review" if no_text else "accept more clips"
        pf.problems.append(f"Only {pf.clips} usable clips with transcripts; training needs at "
                           f"least {MIN_CLIPS} ({hint}).")
    _check_rates(pf, rates, model_rate, project_rate)
    minimum = FINETUNE_MIN_MINUTES if finetune else SCRATCH_MIN_MINUTES
    if pf.clips >= MIN_CLIPS and seconds / 60 < minimum:
        pf.warnings.append(f"Only {seconds / 60:.1f} min of audio: "
                           f"{'a fine-tune' if finetune else 'a voice from scratch'} "
                           f"usually needs {minimum:.0f}+ min to sound good.")
    if pf.clips - opts.val_items < opts.batch_size and pf.clips >= MIN_CLIPS:
        pf.warnings.append(f"Batch size {opts.batch_size} is more than the "
                           f"{pf.clips - opts.val_items} training clips; batches will be smaller.")
    return pf


def _check_rates(pf: Preflight, rates: dict[int, int], model_rate: int,
                 project_rate: int | None) -> None:
    expected = project_rate or model_rate
    odd = {r: n for r, n in rates.items() if r != expected}
    if odd:
        listed = ", ".join(f"{n} at {r} Hz" for r, n in sorted(odd.items()))
        pf.problems.append(f"Sample-rate mismatch: {listed}, but the clips should be at "
                           f"{expected} Hz (rebuild the dataset at the project's rate).")
    if expected != model_rate:
        pf.warnings.append(f"Clips at {expected} Hz are resampled to the model's {model_rate} Hz.")


def estimate_gpu_gb(preset_name: str, n_params: int, batch_size: int) -> float:
    """Rough GPU memory a run needs (weights, optimiser state, activations), in GB."""
    per_item = GPU_GB_PER_ITEM.get(preset_name, GPU_GB_PER_ITEM["medium"])
    return n_params * GPU_BYTES_PER_PARAM / 1e9 + per_item * batch_size + GPU_RESERVE_GB


def check_device(opts: RunOptions, preset_name: str, n_params: int) -> list[str]:
    """Problems with the chosen device: no GPU, or too little free memory for the batch."""
    import torch

    if opts.gpus:
        return _check_gpus(opts, preset_name, n_params)
    want_gpu = opts.device.startswith("cuda") or (opts.device == "auto" and torch.cuda.is_available())
    if not want_gpu:
        return [] if opts.precision == "fp32" else [f"{opts.precision} training needs a GPU."]
    if not torch.cuda.is_available():
        return ["No GPU is available on this machine; choose the CPU (slow) instead."]
    index = int(opts.device.split(":")[1]) if ":" in opts.device else 0
    return _check_gpu_memory(index, opts, preset_name, n_params)


def _check_gpu_memory(index: int, opts: RunOptions, preset_name: str, n_params: int) -> list[str]:
    import torch

    free, _total = torch.cuda.mem_get_info(index)
    need = estimate_gpu_gb(preset_name, n_params, opts.batch_size)
    if need > free / 1e9:
        fits = max(1, int((free / 1e9 - need + GPU_GB_PER_ITEM.get(preset_name, 0.9)
                           * opts.batch_size) / GPU_GB_PER_ITEM.get(preset_name, 0.9)))
        return [f"Batch size {opts.batch_size} needs about {need:.1f} GB of GPU {index}'s memory "
                f"but only {free / 1e9:.1f} GB are free; try batch size "
                f"{min(fits, opts.batch_size - 1)}."]
    return []


def _check_gpus(opts: RunOptions, preset_name: str, n_params: int) -> list[str]:
    """Several processes: the GPUs exist and each has room for its batch."""
    from engines.vits.distributed import check_gpus, parse_gpus

    try:
        gpus, processes = parse_gpus(opts.gpus)
        check_gpus(gpus)
    except StudioError as err:
        return [str(err)]
    if gpus is None:
        return [] if opts.precision == "fp32" else [f"{opts.precision} training needs a GPU."]
    if processes < 2:
        return ["Multi-GPU training needs at least two GPUs; pick the single GPU as the device."]
    return [p for g in gpus for p in _check_gpu_memory(g, opts, preset_name, n_params)]


def list_devices() -> list[tuple[str, str]]:
    """(label, device) pairs: every CUDA GPU, then the CPU."""
    import torch

    devices = []
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(i)
        devices.append((f"GPU {i}: {props.name} ({props.total_memory / 1e9:.0f} GB)", f"cuda:{i}"))
    if len(devices) > 1:
        ids = ",".join(str(i) for i in range(len(devices)))
        devices.append((f"All {len(devices)} GPUs together (DDP, batch size per GPU)",
                        f"{GPUS_PREFIX}{ids}"))
    devices.append(("CPU (very slow: for tests and tiny runs only)", "cpu"))
    return devices


def apply_device_choice(opts: RunOptions, choice: str) -> RunOptions:
    """Set ``device`` or, for a several-GPU choice from :func:`list_devices`, ``gpus``."""
    if choice.startswith(GPUS_PREFIX):
        return apply_gpus(opts, choice[len(GPUS_PREFIX):])
    opts.device, opts.gpus = choice, ""
    return opts


def apply_gpus(opts: RunOptions, gpus: str) -> RunOptions:
    """Set ``gpus`` (and the device it implies) from a GPU list such as "0,1" or "cpu:2";
    a single GPU number is an ordinary one-process run on that GPU."""
    gpus = (gpus or "").strip().lower()
    if gpus.isdigit():
        opts.device, opts.gpus = f"cuda:{gpus}", ""
    elif gpus:
        opts.device, opts.gpus = ("cpu" if gpus.startswith("cpu:") else "cuda"), gpus
    return opts


# --------------------------------------------------------------------------- bases


@dataclass
class Base:
    """Where a run starts: model shapes, optional weights, and the voice metadata to export."""

    config: Any
    info: Any
    generator: Any = None
    disc_state: dict | None = None
    description: str = "scratch"


def _voice_info(language: str, sample_rate: int):
    from engines.text import default_id_map
    from engines.vits.piper_import import PiperVoiceInfo

    return PiperVoiceInfo(sample_rate=sample_rate, espeak_voice=language,
                          phoneme_id_map=default_id_map())


def resolve_base(store: Store, ws: Workspace, project: Project, opts: RunOptions,
                 load_weights: bool = True) -> Base:
    """The starting point of a run: a preset, a library voice or an earlier run."""
    from engines.vits.config import preset

    if opts.base_voice and opts.base_run:
        raise BadInput("Start from a library voice or from an earlier run, not both.")
    if opts.base_voice:
        return _voice_base(store, ws, opts.base_voice)
    if opts.base_run:
        return _run_base(store, ws, int(opts.base_run), load_weights)
    config = preset(opts.preset)
    return Base(config, _voice_info(project.language, config.audio.sample_rate))


def _voice_base(store: Store, ws: Workspace, key: str) -> Base:
    from engines.vits.piper_import import load_piper_voice
    from projects import voices

    voice = voices.get_voice(store, ws, key)
    imported = load_piper_voice(voice.onnx_path)
    return Base(imported.config, imported.info, imported.model, None, f"voice {voice.key}")


def _run_base(store: Store, ws: Workspace, run_id: int, load_weights: bool) -> Base:
    import torch
    from engines.vits.config import VitsConfig
    from engines.vits.train import load_generator

    run = get_run(store, run_id)
    path = checkpoint_path(ws, run)
    cfg = read_config(ws, run)
    info = _info_from_dict(cfg["voice"])
    if not load_weights:
        return Base(VitsConfig.from_dict(cfg["vits"]), info, description=f"run #{run_id}")
    gen = load_generator(path)
    disc = torch.load(path, map_location="cpu", weights_only=False)["disc"]
    return Base(gen.config, info, gen, disc, f"run #{run_id} ({path.name})")


def _info_from_dict(data: dict):
    from engines.vits.piper_import import PiperVoiceInfo

    return PiperVoiceInfo(**data)


# --------------------------------------------------------------------------- runs


def _run_from_row(row: dict | None) -> Run | None:
    if row is None:
        return None
    row = dict(row)
    for key in ("base", "config"):
        row[key] = json.loads(row.get(key) or "{}")
    row["status"] = row.pop("job_status", None) or "queued"
    return from_row(Run, row)


_RUN_SQL = "SELECT r.*, j.status AS job_status FROM runs r LEFT JOIN jobs j ON j.id = r.job_id"


def get_run(store: Store, run_id: int) -> Run:
    """A run by id; NotFound otherwise."""
    run = _run_from_row(store.one(_RUN_SQL + " WHERE r.id = ?", [int(run_id)]))
    if run is None:
        raise NotFound(f"No training run #{run_id}.")
    return run


def list_runs(store: Store, project_id: int | None = None) -> list[Run]:
    """Runs, newest first (of one project when given)."""
    where, params = ("", []) if project_id is None else (" WHERE r.project_id = ?", [project_id])
    rows = store.all(_RUN_SQL + where + " ORDER BY r.id DESC", params)
    return [_run_from_row(r) for r in rows]


def run_dir(ws: Workspace, run: Run) -> Path:
    """The run's folder."""
    return ws.resolve(run.out_dir)


def read_config(ws: Workspace, run: Run) -> dict:
    """The run's ``config.json``."""
    return json.loads((run_dir(ws, run) / CONFIG_NAME).read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _data_source(store: Store, ws: Workspace, project: Project, speaker: str | int | None,
                 ljspeech: str | Path | None, opts: RunOptions) -> tuple[dict, list[ClipText], int]:
    if ljspeech:
        folder = Path(ljspeech).expanduser().resolve()
        return {"ljspeech": str(folder)}, ljspeech_clips(folder), 0
    if speaker in (None, ""):
        raise BadInput("Choose a speaker to train on.")
    row = find_speaker(store, project.id, speaker)
    clips, no_text = speaker_clips(store, ws, row["id"], opts.all_clips)
    if not clips and not no_text and not opts.all_clips:
        raise BadInput(f"Speaker '{row['name']}' has no accepted clips; accept clips in Review "
                       "first (or allow all clips).")
    return {"speaker_id": row["id"], "speaker": row["name"], "all_clips": opts.all_clips}, clips, no_text


def preflight(store: Store, ws: Workspace, project_name: str | int, speaker: str | int | None,
              opts: RunOptions, ljspeech: str | Path | None = None) -> Preflight:
    """The check before a run: data, transcripts, sample rates and device memory."""
    project = get_project(store, project_name)
    _source, clips, no_text = _data_source(store, ws, project, speaker, ljspeech, opts)
    base = resolve_base(store, ws, project, opts, load_weights=False)
    finetune = bool(opts.base_voice or opts.base_run)
    project_rate = None if ljspeech else project.sample_rate
    pf = check_data(clips, no_text, base.config.audio.sample_rate, project_rate, opts, finetune)
    pf.problems += check_device(opts, base.config.name, _param_count(base.config))
    return pf


def _param_count(config) -> int:
    from engines.vits.models import VitsGenerator

    return sum(p.numel() for p in VitsGenerator(config).parameters())


def start_run(store: Store, ws: Workspace, project_name: str | int, speaker: str | int | None,
              opts: RunOptions, ljspeech: str | Path | None = None) -> Run:
    """Check, record and queue a VITS run; BadInput/NoGPU when the check finds problems."""
    pf = preflight(store, ws, project_name, speaker, opts, ljspeech)
    if any("No GPU" in p for p in pf.problems):
        raise NoGPU(" ".join(pf.problems))
    pf.raise_problems()
    project = get_project(store, project_name)
    source, _clips, _ = _data_source(store, ws, project, speaker, ljspeech, opts)
    base = resolve_base(store, ws, project, opts, load_weights=False)
    run_id = store.db["runs"].insert({
        "project_id": project.id, "kind": RUN_KIND, "preset": base.config.name,
        "speaker_id": source.get("speaker_id"), "out_dir": "", "created_at": now(),
        "name": source.get("speaker") or Path(source.get("ljspeech", "data")).name,
        "base": dumps({"voice": opts.base_voice, "run": opts.base_run}),
        "config": dumps(opts.to_dict()), "max_steps": opts.max_steps}).last_pk
    folder = ws.project_dir(project.slug) / "runs" / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / CONFIG_NAME, {
        "run_id": run_id, "kind": RUN_KIND, "options": opts.to_dict(),
        "train": _train_config(opts, base).to_dict(), "vits": base.config.to_dict(),
        "voice": asdict(base.info), "data": source, "base": base.description,
        "preflight": {"clips": pf.clips, "seconds": pf.seconds, "warnings": pf.warnings}})
    title = f"Train VITS #{run_id}: {source.get('speaker') or 'LJSpeech'} ({base.config.name})"
    job = jobs.submit(store, JOB_KIND, {"run_id": run_id}, project_id=project.id, title=title)
    store.db["runs"].update(run_id, {"out_dir": ws.relative(folder), "job_id": job.id})
    return get_run(store, run_id)


def _train_config(opts: RunOptions, base: Base):
    from engines.vits.train import TrainConfig

    return TrainConfig(preset=base.config.name, batch_size=opts.batch_size,
                       learning_rate=opts.learning_rate, max_steps=opts.max_steps,
                       log_every=opts.log_every, checkpoint_every=opts.checkpoint_every,
                       keep_last=opts.keep_last, val_items=opts.val_items,
                       precision=opts.precision, device=opts.device, seed=opts.seed)


def resume_run(store: Store, run_id: int) -> Run:
    """Queue a stopped run again; it continues from its latest checkpoint."""
    run = get_run(store, run_id)
    if run.job_id is None:
        raise Conflict(f"Run #{run_id} has no job to resume.")
    jobs.resume(store, run.job_id)
    return get_run(store, run_id)


def cancel_run(store: Store, run_id: int) -> Run:
    """Ask a run to stop; it saves a checkpoint first."""
    run = get_run(store, run_id)
    if run.job_id is None:
        raise Conflict(f"Run #{run_id} has no job.")
    jobs.cancel(store, run.job_id)
    return get_run(store, run_id)


def delete_run(store: Store, ws: Workspace, run_id: int) -> None:
    """Delete a stopped run: its row, its job with metrics, and its folder."""
    run = get_run(store, run_id)
    if run.status in ("queued", "running"):
        raise Conflict(f"Run #{run_id} is {run.status}; cancel it first.")
    folder = run_dir(ws, run) if run.out_dir else None
    store.db.execute("DELETE FROM runs WHERE id = ?", [run_id])
    if run.job_id is not None:
        store.db.execute("DELETE FROM jobs WHERE id = ?", [run.job_id])
    if folder is not None and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- checkpoints


def checkpoints(ws: Workspace, run: Run) -> list[tuple[str, Path]]:
    """(label, path) of the run's checkpoints: best first, then steps newest first."""
    from engines.vits.train import BEST_NAME, CHECKPOINT_GLOB

    folder = run_dir(ws, run)
    found = []
    if (folder / BEST_NAME).is_file():
        label = f"best (step {run.best_step})" if run.best_step else "best"
        found.append((label, folder / BEST_NAME))
    for path in sorted(folder.glob(CHECKPOINT_GLOB), reverse=True):
        found.append((f"step {_step_of(path)}", path))
    return found


def _step_of(path: Path) -> int:
    match = re.search(r"(\d+)", path.stem)
    return int(match.group(1)) if match else 0


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest step checkpoint in a run folder, if any."""
    from engines.vits.train import CHECKPOINT_GLOB

    found = sorted(folder.glob(CHECKPOINT_GLOB))
    return found[-1] if found else None


def checkpoint_path(ws: Workspace, run: Run, checkpoint: str | int | None = None) -> Path:
    """A checkpoint by step, file name or label; default: best, else the latest."""
    folder = run_dir(ws, run)
    if checkpoint in (None, "", "best"):
        for _label, path in checkpoints(ws, run):
            return path
        raise NotFound(f"Run #{run.id} has no checkpoint yet.")
    text = str(checkpoint)
    if text.startswith("best"):
        return checkpoint_path(ws, run)
    digits = re.sub(r"\D", "", text)
    candidates = [folder / Path(text).name] + ([folder / f"ckpt_{int(digits):08d}.pt"] if digits else [])
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(f"Run #{run.id} has no checkpoint '{checkpoint}'.")


def samples(ws: Workspace, run: Run) -> list[tuple[int, Path]]:
    """(step, wav) of the samples rendered at each checkpoint, oldest first."""
    folder = run_dir(ws, run) / SAMPLES_DIR
    return [(_step_of(p), p) for p in sorted(folder.glob("step_*.wav"))]


# --------------------------------------------------------------------------- the job


class _TrainingJob:
    """One execution of a run's job: data, start state, callbacks into the store."""

    def __init__(self, ctx: jobs.JobContext):
        self.ctx, self.store, self.ws = ctx, ctx.store, ctx.workspace
        self.run = get_run(self.store, ctx.params["run_id"])
        self.folder = run_dir(self.ws, self.run)
        self.cfg = read_config(self.ws, self.run)
        self.project = get_project(self.store, self.run.project_id)

    def items(self) -> list:
        """Training items; phoneme ids are computed once and kept in items.json."""
        from engines.vits.train import TrainItem

        path = self.folder / ITEMS_NAME
        if not path.is_file():
            self.ctx.progress(0.0, "Phonemizing transcripts")
            _write_json(path, self._phonemize(self._clips()))
        entries = json.loads(path.read_text(encoding="utf-8"))
        return [TrainItem(self.ws.root / e["path"] if not Path(e["path"]).is_absolute()
                          else Path(e["path"]), e["ids"]) for e in entries]

    def _clips(self) -> list[ClipText]:
        data = self.cfg["data"]
        if "ljspeech" in data:
            return ljspeech_clips(data["ljspeech"])
        clips, _ = speaker_clips(self.store, self.ws, data["speaker_id"], data.get("all_clips", False))
        return clips

    def _phonemize(self, clips: list[ClipText]) -> list[dict]:
        from engines.text import TextFrontend

        voice = self.cfg["voice"]
        frontend = TextFrontend(voice["espeak_voice"], voice["phoneme_id_map"])
        entries = []
        for clip in clips:
            sentence = frontend.sentence(clip.text)
            if sentence is None:
                self.ctx.log.warning("clip %s has nothing to pronounce; left out", clip.path)
                continue
            path = self.ws.relative(clip.path) if clip.path.resolve().is_relative_to(self.ws.root) \
                else str(clip.path)
            entries.append({"path": path, "text": clip.text, "ids": sentence.ids,
                            "clip_id": clip.clip_id})
        if len(entries) < MIN_CLIPS:
            raise BadInput(f"Only {len(entries)} clips have pronounceable text; "
                           f"training needs at least {MIN_CLIPS}.")
        return entries

    def state(self, train_cfg):
        """Resume from the latest checkpoint, or start from the run's base."""
        from engines.vits.config import VitsConfig
        from engines.vits.train import RunState

        latest = latest_checkpoint(self.folder)
        if latest is not None:
            self.ctx.log.info("resuming from %s", latest.name)
            self.ctx.save_state(resumed_from=_step_of(latest))
            return RunState.load_checkpoint(latest, device=train_cfg.device)
        opts = RunOptions.from_dict(self.cfg["options"])
        base = resolve_base(self.store, self.ws, self.project, opts) if (
            opts.base_voice or opts.base_run) else None
        config = VitsConfig.from_dict(self.cfg["vits"])
        state = RunState.create(train_cfg, config, init_generator=base.generator if base else None)
        if base is not None and base.disc_state is not None:
            state.disc.load_state_dict(base.disc_state)
        return state

    def on_metrics(self, step: int, values: dict[str, float]) -> None:
        """Finite metrics into the store (NaN marks a skipped batch, not a value)."""
        import torch

        if torch.cuda.is_available():
            values["gpu/mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        finite = {k: v for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if finite:
            self.ctx.metric(step, finite)

    def on_checkpoint(self, path: Path, info: dict) -> None:
        """Sample WAV, validation metric and the run row after each checkpoint."""
        from engines import audio as audio_io

        step = int(info["step"])
        if "sample" in info:
            audio_io.write_wav(self.folder / SAMPLES_DIR / f"step_{step:08d}.wav",
                               info["sample"], info["sample_rate"])
        update = {"step": step, "last_checkpoint": self.ws.relative(path)}
        val = info.get("val/mel")
        if val is not None and math.isfinite(val):
            self.ctx.metric(step, {"val/mel": val})
            if info.get("best"):
                update.update(best_step=step, best_val=float(val))
        self.store.db["runs"].update(self.run.id, update)
        self.ctx.save_state(checkpoint=path.name, step=step)


def _run_training_job(ctx: jobs.JobContext) -> dict:
    from engines.vits import train as vits_train

    job = _TrainingJob(ctx)
    train_cfg = vits_train.TrainConfig.from_dict(job.cfg["train"])
    items = job.items()
    gpus = RunOptions.from_dict(job.cfg["options"]).gpus
    if gpus:
        step = _train_distributed(job, train_cfg, items, gpus)
    else:
        state = job.state(train_cfg)
        ctx.log.info("training run #%s from step %s to %s on %s", job.run.id, state.step,
                     train_cfg.max_steps, state.device)
        step = vits_train.run(train_cfg, items, job.folder, progress=ctx.progress,
                              should_cancel=ctx.should_cancel, on_metrics=job.on_metrics,
                              on_checkpoint=job.on_checkpoint, state=state,
                              cache_dir=job.folder / CACHE_DIR).step
    run = get_run(ctx.store, job.run.id)
    best = f"; best validation mel {run.best_val:.3f} at step {run.best_step}" if run.best_val else ""
    return {"summary": f"Trained to step {step}{best}", "step": step,
            "best_step": run.best_step, "best_val": run.best_val,
            "resumed_from": ctx.state.get("resumed_from")}


def _train_distributed(job: _TrainingJob, train_cfg, items: list, gpus: str) -> int:
    """Several processes (torchrun, DDP); this job process only starts and follows them."""
    from engines.vits import distributed
    from engines.vits.config import VitsConfig

    gpu_ids, processes = distributed.parse_gpus(gpus)
    distributed.check_gpus(gpu_ids)
    start = latest_checkpoint(job.folder)
    if start is None:  # the ranks all load one start state: build it once, on the CPU
        state = job.state(distributed.build_config(train_cfg))
        start = distributed.save_start(state, train_cfg, job.folder)
    else:
        job.ctx.log.info("resuming from %s", start.name)
        job.ctx.save_state(resumed_from=_step_of(start))
    job.ctx.progress(0.0, "Preparing features for the training processes")
    distributed.prepare_features(train_cfg, VitsConfig.from_dict(job.cfg["vits"]), items,
                                 job.folder / CACHE_DIR)
    spec = distributed.DistSpec(
        start=str(start), out_dir=str(job.folder), cache_dir=str(job.folder / CACHE_DIR),
        items=[{"audio": str(i.audio), "ids": list(i.ids), "speaker": i.speaker} for i in items],
        backend="gloo" if gpu_ids is None else "nccl", gpus=gpu_ids, processes=processes)
    job.ctx.log.info("training run #%s with %s processes (%s)", job.run.id, processes, gpus)
    return distributed.DistributedRun(spec).run(
        progress=job.ctx.progress, should_cancel=job.ctx.should_cancel,
        on_metrics=job.on_metrics, on_checkpoint=job.on_checkpoint)


jobs.register(jobs.JobKind(JOB_KIND, _run_training_job, "Train VITS", heavy=True, resumable=True))


# --------------------------------------------------------------------------- watching


def plot_series(store: Store, job_id: int, names: tuple[str, ...] | list[str] = LOSS_METRICS,
                max_points: int = PLOT_POINTS, x_axis: str = "step",
                smoothing: float = 0.0) -> dict[str, tuple[list[float], list[float]]]:
    """Metric curves for display: bucket-averaged in SQL to ``max_points``, then EMA-smoothed.

    ``x_axis`` is "step", "time" (seconds since the first row) or "epoch".
    """
    names = list(names)
    if not names:
        return {}
    span = _step_span(store, job_id, names)
    if span is None:
        return {}
    bucket = max(1, math.ceil((span["hi"] - span["lo"] + 1) / max_points))
    # One indexed query per name: bucket averages keep the curve's shape at any run length.
    t_col = "AVG(t)" if x_axis == "time" else "0"
    series: dict[str, tuple[list[float], list[float]]] = {}
    for name in names:
        rows = store.db.execute(
            f"SELECT AVG(step), AVG(value), {t_col} FROM metrics WHERE job_id = ? AND name = ? "
            "GROUP BY step / ? ORDER BY MIN(step)", [job_id, name, bucket]).fetchall()
        if rows:
            series[name] = ([r[0] if x_axis != "time" else r[2] - span["t0"] for r in rows],
                            [r[1] for r in rows])
    if x_axis == "epoch":
        series = _to_epochs(store, job_id, series)
    return {k: (xs, _ema(ys, smoothing)) for k, (xs, ys) in series.items()}


def _step_span(store: Store, job_id: int, names: list[str]) -> dict | None:
    """Lowest and highest step over the names, and the time of the first row (index-only)."""
    ends = []
    for name in names:
        for order in ("ASC", "DESC"):
            row = store.one(f"SELECT step, t FROM metrics WHERE job_id = ? AND name = ? "
                            f"ORDER BY step {order} LIMIT 1", [job_id, name])
            if row:
                ends.append(row)
    if not ends:
        return None
    first = min(ends, key=lambda r: r["step"])
    return {"lo": first["step"], "hi": max(r["step"] for r in ends), "t0": first["t"]}


def _to_epochs(store: Store, job_id: int, series: dict) -> dict:
    """Re-express step positions as (fractional) epochs using the logged train/epoch."""
    rows = store.all("SELECT step, value FROM metrics WHERE job_id = ? AND name = 'train/epoch' "
                     "ORDER BY step", [job_id])
    if not rows:
        return series
    import numpy as np

    steps = np.array([r["step"] for r in rows], float)
    epochs = np.array([r["value"] for r in rows], float)
    return {k: (list(np.interp(xs, steps, epochs)), ys) for k, (xs, ys) in series.items()}


def _ema(values: list[float], smoothing: float) -> list[float]:
    if smoothing <= 0 or not values:
        return values
    out, acc = [], values[0]
    for v in values:
        acc = smoothing * acc + (1 - smoothing) * v
        out.append(acc)
    return out


def overtraining_warning(store: Store, run: Run) -> str | None:
    """A warning when validation loss kept rising for several checkpoints after the best."""
    if run.job_id is None:
        return None
    rows = store.all("SELECT step, value FROM metrics WHERE job_id = ? AND name = 'val/mel' "
                     "ORDER BY step", [run.job_id])
    if len(rows) <= RISING_CHECKPOINTS:
        return None
    best = min(rows, key=lambda r: r["value"])
    after = [r for r in rows if r["step"] > best["step"]]
    if len(after) >= RISING_CHECKPOINTS and all(r["value"] > best["value"] * RISE_FACTOR
                                                for r in after[-RISING_CHECKPOINTS:]):
        return (f"Validation loss has been rising for {len(after)} checkpoints: the model may be "
                f"over-training. The best checkpoint is step {best['step']} "
                f"(validation mel {best['value']:.3f}); promote that one.")
    return None


def run_status(store: Store, run: Run) -> dict:
    """Step, epoch, speed, elapsed, ETA, GPU memory and last checkpoint of a run."""
    latest = {r["name"]: r["value"] for r in store.all(
        "SELECT name, value FROM metrics WHERE job_id = ? AND step = (SELECT MAX(step) FROM "
        "metrics WHERE job_id = ? AND name = 'loss/mel')", [run.job_id, run.job_id])} \
        if run.job_id else {}
    step_row = store.one("SELECT MAX(step) AS s FROM metrics WHERE job_id = ?", [run.job_id]) \
        if run.job_id else None
    job = jobs.get_job(store, run.job_id) if run.job_id else None
    return {
        "status": run.status, "step": max(run.step, (step_row or {}).get("s") or 0),
        "max_steps": run.max_steps, "epoch": latest.get("train/epoch"),
        "steps_per_s": latest.get("speed/steps_per_s"), "loss_mel": latest.get("loss/mel"),
        "gpu_gb": latest.get("gpu/mem_gb"), "elapsed_s": job.elapsed_s() if job else 0.0,
        "eta_s": job.eta_s if job and job.status == "running" else None,
        "last_checkpoint": Path(run.last_checkpoint).name if run.last_checkpoint else None,
        "message": (job.error or job.message) if job else "",
    }


# --------------------------------------------------------------------------- voices


def export_checkpoint(store: Store, ws: Workspace, run_id: int, out_dir: Path | str,
                      checkpoint: str | int | None = None, name: str | None = None
                      ) -> tuple[Path, Path]:
    """Export a run's checkpoint as a Piper voice (``.onnx`` + ``.onnx.json``) into out_dir."""
    from engines.vits.export_onnx import export_piper_voice
    from engines.vits.train import load_generator

    run = get_run(store, run_id)
    path = checkpoint_path(ws, run, checkpoint)
    info = _info_from_dict(read_config(ws, run)["voice"])
    stem = name or f"run-{run.id}-{_step_label(path, run)}"
    target = Path(out_dir) / f"{stem}.onnx"
    return export_piper_voice(load_generator(path), target, info)


def _step_label(path: Path, run: Run) -> str:
    return f"step{run.best_step}" if path.name == "best.pt" and run.best_step else \
        f"step{_step_of(path)}"


def promote_checkpoint(store: Store, ws: Workspace, run_id: int,
                       checkpoint: str | int | None = None, name: str | None = None):
    """Turn a checkpoint into a library voice (exported Piper ONNX); returns the TtsVoice."""
    from projects import voices

    run = get_run(store, run_id)
    path = checkpoint_path(ws, run, checkpoint)
    step = run.best_step if path.name == "best.pt" else _step_of(path)
    display = name or f"{run.name} run {run.id} step {step}"
    with tempfile.TemporaryDirectory(dir=ws.root) as tmp:
        onnx_path, json_path = export_checkpoint(store, ws, run_id, tmp, checkpoint, "voice")
        voice = voices.import_piper_voice(store, ws, onnx_path, json_path, name=display)
    store.db.execute("UPDATE voices SET origin = ?, config = ? WHERE slug = ?",
                     [f"run #{run.id}", dumps({"run_id": run.id, "step": step,
                                               "checkpoint": path.name}), voice.key])
    return voices.get_voice(store, ws, voice.key)
