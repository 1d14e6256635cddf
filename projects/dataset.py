"""Dataset build: recordings in, transcribed clips grouped by speaker out.

One background job (kind ``dataset_build``) takes a project's recordings
through these stages:

1. **analyse** each source (streaming decode: duration, loudness, peak, clipping);
2. **separate** voice from background (optional; skipped with a notice when the
   model is not installed): the voice goes to ``sources/separated/`` and the
   later stages read it instead of the recording (same length, so times match);
3. **speech**, per source in windows of a few minutes cut in silence found by
   the VAD, so memory stays bounded whatever the file's length: VAD, Whisper
   with word times, clips cut between words, per-clip quality and pitch, clip
   files written and rows upserted;
4. **embed**: a speaker embedding for every clip that lacks one (batched);
5. **cluster**: agglomerative clustering into 'cluster' speakers
   (:func:`recluster`, also what the UI slider and the CLI call).

Resume: each finished source, each finished window of a source and each
finished import is saved with ``ctx.save_state``; a resumed job skips them.
A source that cannot be decoded is marked failed with the reason and the
others go on. Rebuilding the same files upserts clips by their source span,
so nothing is duplicated; a source already built with the same settings is
skipped outright.

Folders or zips of ready clips (optionally with an LJSpeech ``metadata.csv``,
``id|text``) are imported as clips without a source; their transcript comes
from the metadata when present, otherwise from Whisper.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engines import asr, audio, cluster, pitch, quality, segment, separate, speaker, vad
from projects import sources as source_store
from projects.errors import BadInput, Conflict, ModelMissing, NoGPU, StudioError
from projects.jobs import JobContext, JobKind, register, submit
from projects.projects import get_project
from projects.records import Job, Project, Source
from projects.registry import Registry
from projects.store import Store, dumps, loads, now
from projects.workspace import Workspace, atomic_path, safe_filename

KIND = "dataset_build"
#: Seconds of audio decoded per ffmpeg read.
DECODE_BLOCK_S = 30.0
#: Default length of a processing window, in seconds (about 40 MB of audio in memory).
WINDOW_S = 240.0
#: A window ends in the last silence found after this share of its nominal length.
WINDOW_MIN_FRACTION = 0.5
#: Silence (VAD frames below the off threshold) long enough to end a window, in seconds.
WINDOW_CUT_SILENCE_S = 0.4
#: Clips embedded per batch in the embed stage (each batch is saved before the next).
EMBED_BATCH_CLIPS = 48
#: Registry id of the voice/background separation model.
SEPARATION_MODEL = "uvr-mdx-net-voc-ft"
#: Folder (under the project's sources/) holding separated voices.
SEPARATED_SUBDIR = "separated"
#: Share of a source's progress given to analysis, and to separation when it runs
#: (it is the dearest stage on CPU); the speech stage has the rest.
ANALYSE_SHARE = 0.05
SEPARATE_SHARE = 0.5
#: Share of the job's progress bar given to the per-source work (the rest: embed, cluster).
SOURCES_SHARE = 0.88
EMBED_SHARE = 0.10
#: Pitch is tracked at this rate, in Hz: F0 up to 500 Hz needs no more, and YIN
#: costs about half of what it does at 22 kHz (it was the dearest per-clip measure).
PITCH_RATE = 8000
#: Percentiles of clip median pitch reported as a speaker's pitch range.
PITCH_RANGE_PERCENTILES = (10, 90)
#: The folder (under the project's runs/) holding the clustering cache.
RUNS_SUBDIR = "dataset"
#: File name endings imported from clip folders.
CLIP_EXTENSIONS = source_store.CLIP_EXTENSIONS
#: Source statuses after a build.
BUILT, NO_SPEECH, FAILED = "built", "no_speech", "failed"


# --------------------------------------------------------------------------- config

@dataclass
class BuildConfig:
    """Every parameter of a dataset build (what the UI and the CLI expose)."""

    speech_prob: float = 0.5
    """VAD threshold (0..1): frames scoring at least this count as speech."""
    backend: str = "faster-whisper"
    """Whisper implementation: ``faster-whisper`` (CTranslate2) or ``openai-whisper``."""
    model: str = "tiny.en"
    """Whisper model: ``tiny.en`` (bundled), a registry id such as ``whisper-small.en``,
    a size name (``small.en``) or a local model folder."""
    language: str = ""
    """ISO language code (``en``, ``de``...); empty detects it. English-only models ignore it."""
    device: str = "auto"
    """``auto`` (GPU when available), ``cuda`` or ``cpu``."""
    beam_size: int = 1
    """Whisper beam width; 1 is greedy (fastest)."""
    min_seconds: float = 1.5
    """Shortest clip kept, in seconds."""
    max_seconds: float = 12.0
    """Longest clip, in seconds; longer speech is cut at the best pause between words."""
    pad_seconds: float = 0.15
    """Silence kept before the first and after the last word of a clip, in seconds."""
    cluster_criteria: float = cluster.DEFAULT_CRITERIA
    """Cosine similarity (0..1) above which clips are grouped as one speaker."""
    separate: bool = False
    """Separate voice from music/noise first (needs the separation model)."""
    window_s: float = WINDOW_S
    """Seconds of audio processed at once; bounds memory on long files."""

    def validate(self) -> None:
        """Raise BadInput for out-of-range values."""
        if not 0.0 <= self.speech_prob <= 1.0:
            raise BadInput(f"speech_prob must be between 0 and 1, got {self.speech_prob}")
        if not 0.0 <= self.cluster_criteria <= 1.0:
            raise BadInput(f"cluster_criteria must be between 0 and 1, got {self.cluster_criteria}")
        if self.backend not in asr.BACKENDS:
            raise BadInput(f"unknown backend '{self.backend}' (use {' or '.join(asr.BACKENDS)})")
        if self.window_s < 30:
            raise BadInput("window_s must be at least 30 seconds")
        self.segment_config().validate()

    def segment_config(self) -> segment.SegmentConfig:
        """The segmentation part."""
        return segment.SegmentConfig(min_seconds=self.min_seconds, max_seconds=self.max_seconds,
                                     pad_seconds=self.pad_seconds)

    def quality_config(self) -> quality.QualityConfig:
        """Flag thresholds that follow the clip length settings."""
        return quality.QualityConfig(min_seconds=self.min_seconds,
                                     max_seconds=self.max_seconds + 2 * self.pad_seconds)

    def speech_key(self) -> str:
        """Hash of the settings that shape clips: a source built with the same key is skipped."""
        keys = ("speech_prob", "backend", "model", "language", "beam_size", "min_seconds",
                "max_seconds", "pad_seconds", "separate")
        text = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "BuildConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored, values coerced to the field types."""
        out = cls()
        for f in dataclasses.fields(cls):
            if data and data.get(f.name) is not None:
                kind = type(getattr(out, f.name))
                setattr(out, f.name, kind(data[f.name]) if kind is not bool else bool(data[f.name]))
        return out


def asr_config(config: BuildConfig, registry: Registry | None = None) -> asr.AsrConfig:
    """The Whisper settings for a build, with registry ids resolved to installed paths.

    Raises ModelMissing (with download instructions) for a registry model that is
    not installed, so the problem shows before a job is queued.
    """
    registry = registry or Registry()
    model = config.model.strip() or asr.DEFAULT_MODEL
    if config.device == "cuda" and not asr.cuda_available():
        raise NoGPU("Device 'cuda' was chosen but no GPU is available; use auto or cpu.")
    if config.backend == "openai-whisper" and importlib.util.find_spec("whisper") is None:
        raise ModelMissing("The openai-whisper backend needs the package openai-whisper "
                           "(pip install openai-whisper); or use faster-whisper.")
    if config.backend == "faster-whisper":
        model = _faster_whisper_path(model, registry)
    else:
        model = _openai_whisper_path(model, registry)
    return asr.AsrConfig(backend=config.backend, model=model,
                         language=config.language.strip() or None, device=config.device,
                         beam_size=config.beam_size)


def _known(registry: Registry, model_id: str) -> bool:
    return any(e.id == model_id for e in registry.entries())


def _faster_whisper_path(model: str, registry: Registry) -> str:
    if model in (asr.DEFAULT_MODEL, "whisper-tiny.en"):
        return str(registry.path("whisper-tiny.en"))
    for candidate in (model, f"whisper-{model}"):
        if _known(registry, candidate):
            return str(registry.path(candidate))
    return model  # a local folder, or a name faster-whisper finds in its own cache


def _openai_whisper_path(model: str, registry: Registry) -> str:
    for candidate in (model, f"openai-whisper-{model}"):
        if _known(registry, candidate):
            found = Path(registry.path(candidate))
            checkpoints = sorted(found.glob("*.pt")) if found.is_dir() else [found]
            return str(checkpoints[0]) if checkpoints else str(found)
    return model  # a size name openai-whisper loads from its own cache


# --------------------------------------------------------------------------- starting

def start_build(store: Store, ws: Workspace, project_name: str | int,
                files: list[tuple[Path, str | None]] = (),
                config: BuildConfig | None = None) -> tuple[Job, list[str]]:
    """Add files to a project and queue one build over all of its recordings.

    Audio files become sources (the same content twice is one source); a zip or
    folder of clips is unpacked for import. Returns the job and one line per
    file that could not even be added. Recordings already built with the same
    settings are skipped by the job, so running it again is cheap.
    """
    config = config or BuildConfig()
    config.validate()
    asr_config(config)  # fail now, not in the job, when a chosen model is missing
    project = get_project(store, project_name)
    _refuse_parallel_build(store, project)
    imports, problems = [], []
    for path, name in files:
        try:
            if _is_clip_set(Path(path)):
                imports.append(_unpack_clip_set(ws, project, Path(path)))
            else:
                source_store.add_source(store, ws, project, Path(path), name)
        except (StudioError, OSError, zipfile.BadZipFile) as err:
            problems.append(f"{name or Path(path).name}: {err}")
    source_ids = [s.id for s in source_store.list_sources(store, project.id)]
    if not source_ids and not imports:
        raise BadInput("Nothing to build: add recordings (or a zip of clips) first.")
    save_settings(store, project, config)
    params = {"source_ids": source_ids, "imports": imports, "config": config.to_dict()}
    title = f"Build dataset ({len(source_ids)} recording(s)" + \
        (f", {len(imports)} clip set(s))" if imports else ")")
    return submit(store, KIND, params, project_id=project.id, title=title), problems


def _refuse_parallel_build(store: Store, project: Project) -> None:
    row = store.one("SELECT id FROM jobs WHERE kind = ? AND project_id = ? AND status IN "
                    "('queued', 'running')", [KIND, project.id])
    if row:
        raise Conflict(f"A dataset build is already queued or running for this project "
                       f"(job #{row['id']}); cancel it or wait.")


def load_settings(store: Store, project: Project) -> BuildConfig:
    """The build settings last used in this project (defaults otherwise)."""
    row = store.one("SELECT settings FROM projects WHERE id = ?", [project.id])
    return BuildConfig.from_dict(loads(row["settings"] if row else None, {}).get("dataset"))


def save_settings(store: Store, project: Project, config: BuildConfig) -> None:
    """Remember build settings for the next build of this project."""
    row = store.one("SELECT settings FROM projects WHERE id = ?", [project.id])
    settings = loads(row["settings"] if row else None, {})
    settings["dataset"] = config.to_dict()
    store.db["projects"].update(project.id, {"settings": dumps(settings)})


def _is_clip_set(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".zip"


def _unpack_clip_set(ws: Workspace, project: Project, path: Path) -> str:
    """Copy a folder or unzip an archive of clips into the project; returns its stored path."""
    if not path.exists():
        raise BadInput(f"not found: {path}")
    digest = source_store.file_sha256(path) if path.is_file() else \
        hashlib.sha256(str(sorted(p.name for p in path.rglob("*"))).encode()).hexdigest()
    target = ws.project_dir(project.slug) / "sources" / "clip-sets" / f"{digest[:12]}-" \
        f"{safe_filename(path.stem, 'clips')}"
    if not target.exists():
        partial = target.with_name(target.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        if path.is_dir():
            shutil.copytree(path, partial)
        else:
            with zipfile.ZipFile(path) as archive:
                _safe_extract(archive, partial)
        os.replace(partial, target)
    return ws.relative(target)


def _safe_extract(archive: zipfile.ZipFile, folder: Path) -> None:
    """Extract only members that stay inside ``folder`` (no ``../`` escapes)."""
    folder.mkdir(parents=True)
    for member in archive.infolist():
        dest = (folder / member.filename).resolve()
        if not dest.is_relative_to(folder.resolve()) or member.is_dir():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


# --------------------------------------------------------------------------- the job's run

class _Run:
    """What one attempt of a build shares between stages: config, timers, lazy models."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.config = BuildConfig.from_dict(ctx.params.get("config"))
        self.project = get_project(ctx.store, ctx.job.project_id)
        self.rate = int(self.project.sample_rate)
        self.timers: dict[str, float] = dict(ctx.state.get("stage_seconds", {}))
        self.notices: list[str] = list(ctx.state.get("notices", []))
        self.language = self.config.language.strip() or None
        self._transcriber: asr.Transcriber | None = None
        self._separator: separate.MdxSeparator | None = None
        self._separator_missing = False
        self._fraction = 0.0
        self._stage_started = time.monotonic()
        self.audio_seconds = float(ctx.state.get("audio_seconds", 0.0))

    @property
    def transcriber(self) -> asr.Transcriber:
        """Whisper, loaded on first use (a build of imported clips with texts never loads it)."""
        if self._transcriber is None:
            with self.timed("load_models"):
                self._transcriber = asr.make_transcriber(asr_config(self.config))
        return self._transcriber

    def separator(self) -> separate.MdxSeparator | None:
        """The separation model, downloaded and loaded on first use; None (with a notice)
        when it is not installed and cannot be downloaded (offline, say)."""
        if self._separator is None:
            registry = Registry()
            if not registry.is_installed(SEPARATION_MODEL) and not self._download_separator(registry):
                return None
            entry = registry.get(SEPARATION_MODEL)
            with self.timed("load_models"):
                self._separator = separate.MdxSeparator(
                    registry.path(SEPARATION_MODEL) / entry.files[0].name,
                    separate.MdxParams.from_dict(entry.params), self.config.device)
        return self._separator

    def _download_separator(self, registry: Registry) -> bool:
        if self._separator_missing:
            return False
        self.new_stage()

        def progress(fraction: float, message: str) -> None:
            self.progress(self._fraction, "download",
                          f"Downloading the separation model: {message}", fraction)

        try:
            registry.download(SEPARATION_MODEL, progress, self.ctx.should_cancel)
            return True
        except ModelMissing as err:
            self._separator_missing = True
            self.notice(f"Voice separation skipped: the model '{SEPARATION_MODEL}' is not "
                        f"installed and could not be downloaded ({err}) Install it from the "
                        f"Models tab or with `launch.py models download {SEPARATION_MODEL}`. "
                        "Clips were cut from the original audio.")
            return False

    def timed(self, name: str) -> "_Timer":
        """Context manager adding wall time to stage ``name``."""
        return _Timer(self.timers, name)

    def notice(self, text: str) -> None:
        """A plain message for the summary (not an error)."""
        if text not in self.notices:
            self.notices.append(text)
            self.ctx.log.info("notice: %s", text)

    def progress(self, fraction: float, stage: str, message: str, stage_fraction: float) -> None:
        """Job progress with the stage's own ETA in the message."""
        self._fraction = fraction
        eta = _stage_eta(time.monotonic() - self._stage_started, stage_fraction)
        self.ctx.progress(fraction, f"[{stage}] {message}" + (f" · stage ETA {eta}" if eta else ""))

    def new_stage(self) -> None:
        """Restart the stage clock (for the stage ETA)."""
        self._stage_started = time.monotonic()

    def save(self, **updates) -> None:
        """Persist resume state plus the timers so far."""
        self.ctx.save_state(stage_seconds=self.timers, notices=self.notices,
                            audio_seconds=self.audio_seconds, **updates)


class _Timer:
    def __init__(self, timers: dict[str, float], name: str):
        self.timers, self.name = timers, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timers[self.name] = self.timers.get(self.name, 0.0) + time.perf_counter() - self.t0


def _stage_eta(elapsed: float, fraction: float) -> str:
    if fraction <= 0.02 or elapsed < 2:
        return ""
    left = elapsed * (1 - fraction) / fraction
    return f"{left:.0f} s" if left < 90 else f"{left / 60:.0f} min"


def run_build(ctx: JobContext) -> dict:
    """Job kind 'dataset_build': every stage, resumable per source, window and stage."""
    started = time.monotonic()
    run = _Run(ctx)
    _set_torch_threads()
    source_ids = list(ctx.params.get("source_ids", []))
    imports = list(ctx.params.get("imports", []))
    units = max(1, len(source_ids) + len(imports))
    done_sources = set(ctx.state.get("done_sources", []))
    for n, source_id in enumerate(source_ids):
        if source_id in done_sources:
            continue
        ctx.check_cancel()
        _build_source(run, source_store.get_source(ctx.store, source_id), n, units)
        done_sources.add(source_id)
        run.save(done_sources=sorted(done_sources), window_until={})
    done_imports = set(ctx.state.get("done_imports", []))
    for k, stored in enumerate(imports):
        if stored in done_imports:
            continue
        ctx.check_cancel()
        _import_clip_set(run, stored, len(source_ids) + k, units)
        done_imports.add(stored)
        run.save(done_imports=sorted(done_imports))
    _embed_stage(run)
    run.progress(SOURCES_SHARE + EMBED_SHARE, "cluster", "grouping clips by speaker", 0.0)
    with run.timed("cluster"):
        grouping = recluster(ctx.store, ctx.workspace, run.project.id, run.config.cluster_criteria)
    elapsed = float(ctx.state.get("elapsed_s", 0.0)) + time.monotonic() - started
    run.save(elapsed_s=elapsed)
    return _result(run, source_ids, grouping, elapsed)


def _set_torch_threads() -> None:
    """Few threads on small machines: the LSTM encoder gains nothing from more and
    would fight Whisper and ffmpeg for the cores."""
    try:
        import torch
    except ImportError:
        return
    cores = os.cpu_count() or 1
    torch.set_num_threads(1 if cores <= 4 else min(8, cores // 2))


def _result(run: _Run, source_ids: list[int], grouping: dict, elapsed: float) -> dict:
    summary = dataset_summary(run.ctx.store, run.project.id)
    rows = [source_store.get_source(run.ctx.store, i) for i in source_ids]
    failures = {s.name: s.error for s in rows if s.status in (FAILED, NO_SPEECH)}
    line = (f"{summary['clips']} clips from {summary['hours_in']:.2f} h, "
            f"{grouping['speakers']} speaker(s)" +
            (f", {len(failures)} recording(s) without clips" if failures else "") +
            f" in {elapsed:.0f} s")
    return {"summary": line, "failures": failures, "notices": run.notices,
            "stage_seconds": {k: round(v, 3) for k, v in run.timers.items()},
            "audio_seconds": run.audio_seconds, "elapsed_s": round(elapsed, 2),
            "speakers": grouping["speakers"], "clips": summary["clips"]}


# --------------------------------------------------------------------------- per source

def _build_source(run: _Run, source: Source, index: int, units: int) -> None:
    """Analyse, (separate), then the windowed speech stage of one recording."""
    ctx, key = run.ctx, run.config.speech_key()
    built_key = (ctx.store.one("SELECT build_key FROM sources WHERE id = ?", [source.id])
                 or {}).get("build_key")
    if source.status in (BUILT, NO_SPEECH) and built_key == key:
        return  # built earlier with the same settings
    base, share = SOURCES_SHARE * index / units, SOURCES_SHARE / units
    source = _analyse_stage(run, source, base, share * ANALYSE_SHARE)
    if source.status == FAILED:
        return
    base, share = base + share * ANALYSE_SHARE, share * (1 - ANALYSE_SHARE)
    try:
        path, used = _separate_stage(run, source, base, share)
        clips = _speech_stage(run, source, base + used, share - used, path)
    except StudioError as err:  # a decode that fails halfway: this file fails, others go on
        _mark(ctx.store, source.id, FAILED, str(err))
        return
    if clips == 0:
        _mark(ctx.store, source.id, NO_SPEECH, _no_speech_reason(source), key)
    else:
        _mark(ctx.store, source.id, BUILT, None, key)


def _mark(store: Store, source_id: int, status: str, error: str | None,
          key: str | None = None) -> None:
    store.db["sources"].update(source_id, {"status": status, "error": error, "build_key": key})


def _no_speech_reason(source: Source) -> str:
    if source.peak_dbfs is not None and source.peak_dbfs <= audio.SILENCE_DB + 1:
        return "no speech found: the recording is silent"
    if source.lufs is not None and source.lufs < -60:
        return "no speech found: the recording is almost silent"
    return "no speech found (music, noise or speech too faint for the VAD threshold)"


def _analyse_stage(run: _Run, source: Source, base: float, share: float) -> Source:
    """Measure the file unless it already was; a decode failure marks it failed."""
    ctx = run.ctx
    if source.status != "new" and source.duration_s is not None and source.status != FAILED:
        return source
    run.new_stage()

    def progress(fraction: float, message: str) -> None:
        run.progress(base + share * fraction, "analyse", message, fraction)

    try:
        with run.timed("analyse"):
            stats = audio.analyse(ctx.workspace.resolve(source.path), progress=progress,
                                  should_cancel=ctx.should_cancel)
    except StudioError as err:
        ctx.log.warning("source %s failed: %s", source.id, err)
        _mark(ctx.store, source.id, FAILED, str(err))
        return source_store.get_source(ctx.store, source.id)
    values = stats.to_dict()
    row = {k: values.get(k) for k in ("duration_s", "sample_rate", "channels", "lufs",
                                      "peak_dbfs", "rms_dbfs", "clipped_fraction")}
    ctx.store.db["sources"].update(source.id, {**row, "status": "analysed", "error": None})
    return source_store.get_source(ctx.store, source.id)


def separated_path(ws: Workspace, source: Source) -> Path:
    """Where a source's separated voice lives: named by source and model, never by upload."""
    folder = ws.resolve(source.path).parent / SEPARATED_SUBDIR
    return folder / f"src{source.id:05d}-{SEPARATION_MODEL}-voice.wav"


def _separate_stage(run: _Run, source: Source, base: float, share: float) -> tuple[Path, float]:
    """The file the speech stage reads, and the progress share this stage took.

    The recording itself when separation is off or its model is missing;
    otherwise its separated voice, made now unless an earlier run finished it
    (the engine writes it atomically, so a file that exists is complete).
    """
    original = run.ctx.workspace.resolve(source.path)
    separator = run.separator() if run.config.separate else None
    if separator is None:
        return original, 0.0
    target, used = separated_path(run.ctx.workspace, source), share * SEPARATE_SHARE
    if target.is_file():
        return target, used
    run.new_stage()

    def progress(fraction: float, message: str) -> None:
        run.progress(base + used * fraction, "separate", message, fraction)

    with run.timed("separate"):
        separate.separate_file(separator, original, target, progress,
                               run.ctx.should_cancel)
    return target, used


@dataclass
class Window:
    """A stretch of a source, cut in silence: audio at two rates plus VAD scores."""

    start_s: float
    audio: np.ndarray
    """Mono float32 at the project's sample rate."""
    rate: int
    audio16: np.ndarray
    """The same stretch at 16 kHz (for VAD and Whisper)."""
    probs: np.ndarray
    """Speech probability per 32 ms frame from ``start_s``."""

    @property
    def end_s(self) -> float:
        """Where the window ends on the source's time line, in seconds."""
        return self.start_s + len(self.probs) * vad.FRAME_S


def iter_windows(path: Path, rate: int, window_s: float = WINDOW_S,
                 speech_prob: float = 0.5, timers: dict | None = None) -> Iterator[Window]:
    """Decode ``path`` once, streaming, and yield windows about ``window_s`` long.

    Each window ends in the middle of a silence found by the VAD (or, in
    unbroken speech, at its least speech-like frame), so no word is cut by a
    window edge. At most about two windows of audio are held in memory.
    """
    import soxr

    timers = timers if timers is not None else {}
    to16 = soxr.ResampleStream(rate, vad.VAD_RATE, 1, dtype="float32", quality="HQ")
    stream = vad.VadStream()
    buf = _Buffers(rate)
    off = max(0.0, speech_prob - vad.VadConfig().hysteresis)
    blocks = audio.iter_blocks(path, rate, DECODE_BLOCK_S)
    while True:
        t0 = time.perf_counter()
        block = next(blocks, None)
        last = block is None
        lo = to16.resample_chunk(np.zeros(0, np.float32) if last else block, last=last)
        timers["decode"] = timers.get("decode", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        probs = stream.feed(lo)
        if last:  # score the zero-padded final frame too
            scored = sum(len(p) for p in stream.probs)
            probs = np.concatenate([probs, stream.finish()[scored:]])
        timers["vad"] = timers.get("vad", 0.0) + time.perf_counter() - t0
        buf.add(block, lo, probs)
        if last:
            break
        while buf.seconds() >= window_s:
            yield buf.take(_cut_frame(buf.probs, window_s, off))
    if len(buf.probs) or len(buf.audio):
        yield buf.take(len(buf.probs))


def _cut_frame(probs: np.ndarray, window_s: float, off: float) -> int:
    """Frame index to end a window: middle of the last long silence past the minimum."""
    first = int(window_s * WINDOW_MIN_FRACTION / vad.FRAME_S)
    last = min(len(probs), int(2 * window_s / vad.FRAME_S))
    need = max(1, int(WINDOW_CUT_SILENCE_S / vad.FRAME_S))
    quiet = probs[first:last] < off
    run_end, best = None, None
    for i in range(len(quiet) - 1, -1, -1):
        if quiet[i] and run_end is None:
            run_end = i
        elif not quiet[i] and run_end is not None:
            if run_end - i >= need:
                best = (i + 1 + run_end + 1) // 2
                break
            run_end = None
    if best is None and run_end is not None and run_end + 1 >= need:
        best = (run_end + 1) // 2
    if best is None:
        best = int(np.argmin(probs[first:last]))
    return first + best


class _Buffers:
    """Decoded audio (two rates) and VAD scores not yet handed out as windows."""

    def __init__(self, rate: int):
        self.rate = rate
        self.audio = np.zeros(0, np.float32)
        self.audio16 = np.zeros(0, np.float32)
        self.probs = np.zeros(0, np.float32)
        self.start_frame = 0       # absolute VAD frame of probs[0]
        self.start_sample = 0      # absolute project-rate sample of audio[0]

    def add(self, block: np.ndarray | None, lo: np.ndarray, probs: np.ndarray) -> None:
        if block is not None:
            self.audio = np.concatenate([self.audio, block])
        self.audio16 = np.concatenate([self.audio16, lo])
        self.probs = np.concatenate([self.probs, probs])

    def seconds(self) -> float:
        return len(self.probs) * vad.FRAME_S

    def take(self, frames: int) -> Window:
        """Hand out the first ``frames`` VAD frames as a window and drop them."""
        start_s = self.start_frame * vad.FRAME_S
        end_sample = int(round((self.start_frame + frames) * vad.FRAME_S * self.rate))
        cut_hi = end_sample - self.start_sample if frames < len(self.probs) else len(self.audio)
        cut_lo = frames * vad.FRAME if frames < len(self.probs) else len(self.audio16)
        window = Window(start_s, self.audio[:cut_hi], self.rate, self.audio16[:cut_lo],
                        self.probs[:frames])
        self.audio, self.audio16 = self.audio[cut_hi:], self.audio16[cut_lo:]
        self.probs = self.probs[frames:]
        self.start_frame += frames
        self.start_sample += cut_hi
        return window


def _speech_stage(run: _Run, source: Source, base: float, share: float,
                  path: Path | None = None) -> int:
    """VAD, Whisper, clips, quality for one source, window by window. Returns its clip count.

    ``path`` is the audio to cut clips from (the separated voice), by default the recording.
    """
    ctx, config = run.ctx, run.config
    until = float(ctx.state.get("window_until", {}).get(str(source.id), -1.0))
    if until < 0:
        _drop_rebuildable_clips(ctx.store, ctx.workspace, source.id)
    total = source.duration_s or 1.0
    run.new_stage()
    path = path or ctx.workspace.resolve(source.path)
    for window in iter_windows(path, run.rate, config.window_s, config.speech_prob, run.timers):
        ctx.check_cancel()
        if window.end_s <= until + 1e-6:
            continue  # finished before an interruption
        _process_window(run, source, window, base, share, total)
        run.audio_seconds += window.end_s - window.start_s
        run.save(window_until={**ctx.state.get("window_until", {}),
                               str(source.id): window.end_s})
    row = ctx.store.one("SELECT COUNT(*) AS n FROM clips WHERE source_id = ?", [source.id])
    return int(row["n"])


def _drop_rebuildable_clips(store: Store, ws: Workspace, source_id: int) -> None:
    """Before a fresh pass over a source: remove its clips nobody has touched yet
    (unreviewed, not in a user's speaker), so new settings do not add near-duplicates."""
    rows = store.all("""SELECT c.id, c.path FROM clips c LEFT JOIN speakers s ON s.id = c.speaker_id
                        WHERE c.source_id = ? AND c.review = 'unreviewed'
                          AND COALESCE(s.origin, 'cluster') != 'user'""", [source_id])
    for row in rows:
        store.db.execute("DELETE FROM clips WHERE id = ?", [row["id"]])
        _remove_file(ws, row["path"])
    store.db.conn.commit()


def _remove_file(ws: Workspace, stored: str) -> None:
    try:
        ws.resolve(stored).unlink(missing_ok=True)
    except (OSError, StudioError):
        pass


def _process_window(run: _Run, source: Source, window: Window, base: float, share: float,
                    total: float) -> None:
    """Transcribe one window's speech and save its clips."""
    config = run.config
    regions = vad.regions_from_probs(window.probs, vad.VadConfig(speech_prob=config.speech_prob),
                                     len(window.audio16) / vad.VAD_RATE)
    if not regions:
        return
    span = window.end_s - window.start_s

    def progress(fraction: float, message: str) -> None:
        done = (window.start_s + fraction * span) / total
        run.progress(base + share * min(done, 1.0), "transcribe",
                     f"{source.name}: {_clock(window.start_s + fraction * span)} of "
                     f"{_clock(total)}", min(done, 1.0))

    transcriber = run.transcriber
    with run.timed("asr"):
        segments = asr.transcribe_regions(transcriber, window.audio16, regions,
                                          run.language, window.start_s,
                                          progress, run.ctx.should_cancel)
    with run.timed("segment"):
        specs = segment.plan_clips(asr.all_words(segments), config.segment_config(),
                                   window.audio, window.rate, window.start_s)
    run.progress(base + share * min(window.end_s / total, 1.0), "clips",
                 f"{source.name}: saving {len(specs)} clips", min(window.end_s / total, 1.0))
    with run.timed("quality"):
        for spec in specs:
            samples = segment.cut(window.audio, window.rate, spec, window.start_s)
            ratio = _speech_ratio(window, spec, config.speech_prob)
            _save_clip(run, source.id, spec, samples, ratio)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _speech_ratio(window: Window, spec: segment.ClipSpec, threshold: float) -> float:
    """Share of the clip's VAD frames at or above the threshold (no second VAD pass)."""
    a = int((spec.start - window.start_s) / vad.FRAME_S)
    b = max(a + 1, int(np.ceil((spec.end - window.start_s) / vad.FRAME_S)))
    frames = window.probs[max(0, a):b]
    return float((frames >= threshold).mean()) if len(frames) else 0.0


def clip_measures(samples: np.ndarray, rate: int, words: list[asr.Word],
                  config: quality.QualityConfig, ratio: float | None) -> tuple[dict, list[str]]:
    """The ``quality`` dict (with pitch) and ``flags`` list stored on a clip row."""
    q = quality.assess(samples, rate, words, config, ratio)
    p = pitch.pitch_stats(audio.resample(samples, rate, PITCH_RATE), PITCH_RATE).to_dict()
    measures = {**q.to_dict(), "pitch_hz": p["median_hz"], "pitch_p5_hz": p["p5_hz"],
                "pitch_p95_hz": p["p95_hz"]}
    flags = measures.pop("flags")
    return measures, flags


def _word_dicts(words: list[asr.Word]) -> list[dict]:
    return [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
             "prob": round(w.probability, 3)} for w in words]


def _save_clip(run: _Run, source_id: int, spec: segment.ClipSpec, samples: np.ndarray,
               ratio: float) -> None:
    """Write the clip file and insert or update its row (keyed by source span)."""
    ctx = run.ctx
    measures, flags = clip_measures(samples, run.rate, spec.words, run.config.quality_config(),
                                    ratio)
    name = f"src{source_id:05d}-{int(round(spec.start * 1000)):09d}-" \
           f"{int(round(spec.end * 1000)):09d}.wav"
    target = ctx.workspace.project_dir(run.project.slug) / "clips" / name
    audio.write_wav(target, samples, run.rate)
    row = {"project_id": run.project.id, "source_id": source_id, "path": ctx.workspace.relative(target),
           "start_s": spec.start, "end_s": spec.end, "duration_s": len(samples) / run.rate,
           "text": spec.text, "words": dumps(_word_dicts(spec.words)),
           "quality": dumps(measures), "flags": dumps(flags)}
    existing = ctx.store.one("SELECT id FROM clips WHERE source_id = ? AND start_s = ? AND "
                             "end_s = ?", [source_id, spec.start, spec.end])
    if existing:
        ctx.store.db["clips"].update(existing["id"], row)
    else:
        ctx.store.db["clips"].insert({**row, "created_at": now(), "review": "unreviewed"})


# --------------------------------------------------------------------------- clip sets

def read_metadata(folder: Path) -> dict[str, str]:
    """LJSpeech ``metadata.csv`` (``id|text`` or ``id|text|normalised``) as {id: text}."""
    found = sorted(folder.rglob("metadata.csv"))
    if not found:
        return {}
    out = {}
    with open(found[0], encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE):
            if len(row) >= 2 and row[0].strip():
                out[Path(row[0].strip()).stem] = (row[2] if len(row) > 2 and row[2].strip()
                                                  else row[1]).strip()
    return out


def _import_clip_set(run: _Run, stored: str, index: int, units: int) -> None:
    """Import every audio file of an unpacked clip set as a clip (no source)."""
    ctx = run.ctx
    folder = ctx.workspace.resolve(stored)
    texts = read_metadata(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in CLIP_EXTENSIONS)
    base, share = SOURCES_SHARE * index / units, SOURCES_SHARE / units
    run.new_stage()
    for n, path in enumerate(files):
        ctx.check_cancel()
        run.progress(base + share * n / max(1, len(files)), "import",
                     f"{folder.name}: clip {n + 1} of {len(files)}", n / max(1, len(files)))
        try:
            _import_one(run, path, texts.get(path.stem))
        except StudioError as err:
            run.notice(f"{path.name}: skipped ({err})")
    if not files:
        run.notice(f"{folder.name}: no audio files found in the clip set")


def _import_one(run: _Run, path: Path, text: str | None) -> None:
    ctx = run.ctx
    digest = source_store.file_sha256(path)[:16]
    target = ctx.workspace.project_dir(run.project.slug) / "clips" / f"import-{digest}.wav"
    stored = ctx.workspace.relative(target)
    if ctx.store.one("SELECT 1 FROM clips WHERE path = ? AND project_id = ?",
                     [stored, run.project.id]):
        return  # imported before
    samples = audio.load(path, run.rate)
    if not len(samples):
        raise BadInput("no audio")
    words: list[asr.Word] = []
    if text is None:
        with run.timed("asr"):
            segments = run.transcriber.transcribe(audio.resample(samples, run.rate, asr.ASR_RATE),
                                                  run.language)
        words = asr.all_words(segments)
        text = " ".join(w.text for w in words).strip()
    with run.timed("quality"):
        measures, flags = clip_measures(samples, run.rate, words, run.config.quality_config(),
                                        None)
        if text and not words:
            flags = [f for f in flags if f != "no_words"]  # the transcript came with the clip
        audio.write_wav(target, samples, run.rate)
    ctx.store.db["clips"].insert({
        "project_id": run.project.id, "source_id": None, "path": stored, "start_s": None,
        "end_s": None, "duration_s": len(samples) / run.rate, "text": text,
        "words": dumps(_word_dicts(words)), "quality": dumps(measures), "flags": dumps(flags),
        "review": "unreviewed", "created_at": now()})
    run.audio_seconds += len(samples) / run.rate


# --------------------------------------------------------------------------- embeddings

def _embed_stage(run: _Run) -> None:
    """Embed every clip of the project that has no embedding yet, batch by batch."""
    ctx = run.ctx
    rows = ctx.store.all("SELECT id, path FROM clips WHERE project_id = ? AND embedding IS NULL "
                         "ORDER BY id", [run.project.id])
    if not rows:
        return
    run.new_stage()
    with run.timed("load_models"):
        encoder = speaker.get_encoder(run.config.device)
    for first in range(0, len(rows), EMBED_BATCH_CLIPS):
        ctx.check_cancel()
        batch = rows[first:first + EMBED_BATCH_CLIPS]
        fraction = first / len(rows)
        run.progress(SOURCES_SHARE + EMBED_SHARE * fraction, "embed",
                     f"speaker embeddings: {first} of {len(rows)} clips", fraction)
        with run.timed("embed"):
            clips = [_read_clip(ctx.workspace, r["path"]) for r in batch]
            vectors = encoder.embed([c for c, _ in clips], clips[0][1] if clips else run.rate,
                                    should_cancel=ctx.should_cancel)
        with ctx.store.db.conn:
            for row, vec in zip(batch, vectors):
                ctx.store.db.execute("UPDATE clips SET embedding = ? WHERE id = ?",
                                     [vec.astype("<f4").tobytes(), row["id"]])


def _read_clip(ws: Workspace, stored: str) -> tuple[np.ndarray, int]:
    try:
        return audio.read_wav(ws.resolve(stored))
    except StudioError:
        return np.zeros(speaker.EMBED_RATE // 2, np.float32), speaker.EMBED_RATE


# --------------------------------------------------------------------------- clustering

def _tree_for(ws: Workspace, project: Project, ids: np.ndarray,
              embeddings: np.ndarray) -> np.ndarray:
    """The linkage tree of these clips, cached on disk while the clip set is unchanged."""
    cache = ws.project_dir(project.slug) / "runs" / RUNS_SUBDIR / "cluster-tree.npz"
    if cache.exists():
        try:
            with np.load(cache) as saved:
                if np.array_equal(saved["ids"], ids):
                    return saved["tree"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt
    tree = cluster.build_tree(embeddings)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=ids, tree=tree)
    return tree


def recluster(store: Store, ws: Workspace, project_name: str | int,
              threshold: float = cluster.DEFAULT_CRITERIA) -> dict:
    """Group the project's clips into 'cluster' speakers at ``threshold`` (cosine, 0..1).

    Uses stored embeddings only (nothing is transcribed or embedded again); the
    linkage tree is cached, so a new threshold applies in milliseconds. Speakers
    made or edited by the user ('user' origin) and their clips are left alone.
    Returns ``{"speakers": n, "clips": clustered, "threshold": t}``.
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise BadInput(f"threshold must be between 0 and 1, got {threshold}")
    project = get_project(store, project_name)
    rows = store.all("""SELECT c.id, c.embedding FROM clips c
                        LEFT JOIN speakers s ON s.id = c.speaker_id
                        WHERE c.project_id = ? AND c.embedding IS NOT NULL
                          AND COALESCE(s.origin, 'cluster') != 'user' ORDER BY c.id""",
                     [project.id])
    ids = np.array([r["id"] for r in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(r["embedding"], dtype="<f4") for r in rows]) \
        if rows else np.zeros((0, speaker.EMBED_DIM), np.float32)
    labels = cluster.cut_tree(_tree_for(ws, project, ids, vectors), len(ids), float(threshold))
    _replace_cluster_speakers(store, project, ids, labels)
    _remember_threshold(store, project, float(threshold))
    return {"speakers": len(set(labels.tolist())), "clips": len(ids), "threshold": float(threshold)}


def _replace_cluster_speakers(store: Store, project: Project, ids: np.ndarray,
                              labels: np.ndarray) -> None:
    """In one transaction: drop the old 'cluster' speakers, create one per label, assign."""
    taken = {r["name"].lower() for r in store.all(
        "SELECT name FROM speakers WHERE project_id = ? AND origin = 'user'", [project.id])}
    conn = store.db.conn
    with conn:
        conn.execute("UPDATE clips SET speaker_id = NULL WHERE speaker_id IN (SELECT id FROM "
                     "speakers WHERE project_id = ? AND origin = 'cluster')", [project.id])
        conn.execute("DELETE FROM speakers WHERE project_id = ? AND origin = 'cluster'",
                     [project.id])
        number = 1
        for label in sorted(set(labels.tolist())):
            while f"speaker {number}" in taken:
                number += 1
            cur = conn.execute(
                "INSERT INTO speakers (project_id, name, cluster_label, use_for_training, origin,"
                " created_at) VALUES (?, ?, ?, 0, 'cluster', ?)",
                [project.id, f"Speaker {number}", int(label), now()])
            number += 1
            members = ids[labels == label].tolist()
            conn.executemany("UPDATE clips SET speaker_id = ? WHERE id = ?",
                             [(cur.lastrowid, int(i)) for i in members])


def _remember_threshold(store: Store, project: Project, threshold: float) -> None:
    config = load_settings(store, project)
    config.cluster_criteria = threshold
    save_settings(store, project, config)


# --------------------------------------------------------------------------- summary

def dataset_summary(store: Store, project_name: str | int) -> dict:
    """What a build produced: hours in, clips out, speakers with usable minutes and
    pitch range, clips flagged by quality, failures, and the last build's time."""
    project = get_project(store, project_name)
    srcs = source_store.list_sources(store, project.id)
    clips = store.all("SELECT speaker_id, duration_s, flags, quality, review FROM clips "
                      "WHERE project_id = ?", [project.id])
    flag_counts: dict[str, int] = {}
    for c in clips:
        for flag in loads(c["flags"], []):
            flag_counts[flag] = flag_counts.get(flag, 0) + 1
    speakers = [_speaker_summary(s, [c for c in clips if c["speaker_id"] == s["id"]])
                for s in store.all("SELECT * FROM speakers WHERE project_id = ? ORDER BY "
                                   "origin = 'cluster', cluster_label, id", [project.id])]
    job = store.one("SELECT result FROM jobs WHERE kind = ? AND project_id = ? AND status = 'done'"
                    " ORDER BY id DESC LIMIT 1", [KIND, project.id])
    result = loads(job["result"], {}) if job else {}
    processed = [s for s in srcs if s.status in (BUILT, NO_SPEECH)]
    return {
        "project": project.name,
        "hours_in": sum(s.duration_s or 0 for s in processed) / 3600,
        "recordings": len(processed),
        "failed": {s.name: s.error for s in srcs if s.status in (FAILED, NO_SPEECH)},
        "clips": len(clips),
        "clip_minutes": sum(c["duration_s"] for c in clips) / 60,
        "flagged": sum(1 for c in clips if loads(c["flags"], [])),
        "flags": dict(sorted(flag_counts.items(), key=lambda kv: -kv[1])),
        "unassigned": sum(1 for c in clips if c["speaker_id"] is None),
        "speakers": speakers,
        "threshold": load_settings(store, project).cluster_criteria,
        "seconds": result.get("elapsed_s"),
        "stage_seconds": result.get("stage_seconds", {}),
        "notices": result.get("notices", []),
    }


def _speaker_summary(row: dict, clips: list[dict]) -> dict:
    usable = [c for c in clips if not loads(c["flags"], []) and c["review"] != "rejected"]
    pitches = [loads(c["quality"], {}).get("pitch_hz") for c in clips]
    pitches = [p for p in pitches if p]
    lo, hi = (np.percentile(pitches, PITCH_RANGE_PERCENTILES).tolist() if pitches
              else (None, None))
    return {"id": row["id"], "name": row["name"], "origin": row["origin"],
            "clips": len(clips), "minutes": sum(c["duration_s"] for c in clips) / 60,
            "usable_minutes": sum(c["duration_s"] for c in usable) / 60,
            "pitch_hz": float(np.median(pitches)) if pitches else None,
            "pitch_range_hz": [lo, hi] if pitches else None}


def format_summary(summary: dict) -> str:
    """The summary as Markdown (shown in the Dataset tab and printed by the CLI)."""
    took = f" in {summary['seconds']:.0f} s" if summary.get("seconds") else ""
    lines = [f"**{summary['hours_in']:.2f} h** of audio from {summary['recordings']} "
             f"recording(s) → **{summary['clips']} clips** ({summary['clip_minutes']:.1f} min), "
             f"**{len(summary['speakers'])} speaker(s)**{took}; threshold "
             f"{summary['threshold']:.2f}.", ""]
    if summary["speakers"]:
        lines += ["| Speaker | Clips | Minutes | Usable minutes | Pitch (Hz) |",
                  "|---|---|---|---|---|"]
        for s in summary["speakers"]:
            rng = s["pitch_range_hz"]
            shown = f"{s['pitch_hz']:.0f} ({rng[0]:.0f}–{rng[1]:.0f})" if rng else "–"
            lines.append(f"| {s['name']}{' (yours)' if s['origin'] == 'user' else ''} | "
                         f"{s['clips']} | {s['minutes']:.1f} | {s['usable_minutes']:.1f} | {shown} |")
        lines.append("")
    if summary["flags"]:
        flags = ", ".join(f"{k} {v}" for k, v in summary["flags"].items())
        lines.append(f"Flagged by quality: {summary['flagged']} clip(s) — {flags}.")
    if summary["unassigned"]:
        lines.append(f"Clips without a speaker yet: {summary['unassigned']}.")
    for name, reason in summary["failed"].items():
        lines.append(f"- ⚠ {name}: {reason}")
    for notice in summary["notices"]:
        lines.append(f"- ℹ {notice}")
    return "\n".join(lines)


register(JobKind(KIND, run_build, title="Build dataset", heavy=True))
