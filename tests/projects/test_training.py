"""Training runs as jobs: data from the store, metrics, checkpoints, samples, cancel/resume,
pre-flight errors, promote → voice → synthesize, export → Piper's runtime, fast plot data."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from engines import audio as audio_io
from projects import jobs, synthesis, training
from projects.errors import BadInput, NoGPU
from projects.projects import create_project
from projects.store import Store, now
from projects.workspace import Workspace
from tests.speech import speak

RATE = 22050
#: Short phrases keep tiny training steps around a second on a busy 2-core CPU.
PHRASES = ["The weather was warm.", "We walked to the station.", "Close the window please.",
           "The children played football.", "She reads a book.", "Open your books.",
           "Fresh bread and cheese.", "A cup of coffee."]
TINY = dict(preset="tiny", batch_size=2, log_every=1, val_items=2, keep_last=2, seed=3)


def add_speaker(store, ws, project, name="Joe", speaker=0, phrases=PHRASES, review="accepted",
                text=True, rate=RATE):
    """A speaker with one clip per phrase, written like the dataset builder writes clips."""
    sid = store.db["speakers"].insert({"project_id": project.id, "name": name, "created_at": now(),
                                       "origin": "user", "use_for_training": 1}).last_pk
    for i, phrase in enumerate(phrases):
        audio, sr = speak(phrase, speaker)
        audio = audio_io.resample(audio, sr, rate)
        path = ws.project_dir(project.slug) / "clips" / f"{name}-{i}.wav"
        audio_io.write_wav(path, audio, rate)
        store.db["clips"].insert({
            "project_id": project.id, "speaker_id": sid, "path": ws.relative(path),
            "duration_s": len(audio) / rate, "text": phrase if text else "", "review": review,
            "created_at": now()})
    return sid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run (4 steps, checkpoints at 2 and 4) shared by the read-only tests."""
    ws = Workspace.open(tmp_path_factory.mktemp("train") / "workspace")
    store = Store(ws.db_path)
    project = create_project(store, ws, "Train test")
    add_speaker(store, ws, project)
    opts = training.RunOptions(max_steps=4, checkpoint_every=2, **TINY)
    run = training.start_run(store, ws, project.name, "Joe", opts)
    started = time.perf_counter()
    job = jobs.run_job(store, ws, run.job_id)
    print(f"4 tiny steps as a job: {time.perf_counter() - started:.1f} s")
    assert job.status == "done", job.error
    yield store, ws, project, training.get_run(store, run.id)
    store.close()


def test_job_records_metrics_checkpoints_samples_and_config(trained):
    store, ws, _project, run = trained
    assert run.status == "done" and run.step == 4 and run.best_step in (2, 4)
    folder = training.run_dir(ws, run)
    assert (folder / "config.json").is_file() and (folder / "items.json").is_file()
    assert (folder / "best.pt").is_file() and (folder / "ckpt_00000004.pt").is_file()
    series = jobs.metrics(store, run.job_id)
    for name in ("loss/gen", "loss/disc", "loss/mel", "loss/dur", "loss/kl", "opt/lr",
                 "opt/grad_norm", "speed/steps_per_s"):
        assert [s for s, _v, _t in series[name]] == [1, 2, 3, 4], name
    assert [s for s, _v, _t in series["val/mel"]] == [2, 4]
    assert np.isfinite([v for _s, v, _t in series["loss/mel"]]).all()
    steps = [step for step, _path in training.samples(ws, run)]
    assert steps == [2, 4]
    audio, rate = sf.read(training.samples(ws, run)[-1][1])
    assert rate == RATE and len(audio) > RATE // 10
    assert training.read_config(ws, run)["train"]["max_steps"] == 4


def test_promoted_checkpoint_speaks_through_synthesize(trained):
    store, ws, _project, run = trained
    voice = training.promote_checkpoint(store, ws, run.id, name="Tiny Joe")
    assert voice.origin == f"run #{run.id}" and voice.onnx_path.is_file()
    audio, rate = synthesis.synthesize("Hello there. This is a test.", voice)
    assert rate == RATE and audio.dtype == np.float32 and len(audio) > RATE // 4
    again, _ = synthesis.synthesize("Hello there.", "Tiny Joe", store=store, ws=ws)
    assert len(again) > 0
    ckpt_audio, ckpt_rate = synthesis.synthesize(
        "Hello there. Two sentences.", synthesis.checkpoint_voice(store, ws, run.id, 4))
    assert ckpt_rate == RATE and len(ckpt_audio) > RATE // 4 and np.abs(ckpt_audio).max() <= 1.0


def test_export_loads_in_piper_runtime(trained, tmp_path):
    from piper import PiperVoice

    store, ws, _project, run = trained
    onnx_path, json_path = training.export_checkpoint(store, ws, run.id, tmp_path, "best")
    assert json_path.name == onnx_path.name + ".json"
    voice = PiperVoice.load(str(onnx_path), str(json_path))
    chunks = list(voice.synthesize("Testing the exported voice."))
    assert chunks and sum(len(c.audio_float_array) for c in chunks) > 1000
    assert voice.config.sample_rate == RATE


def _cancel_when_training(store, job_id, min_step=2, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = store.one("SELECT MAX(step) AS s FROM metrics WHERE job_id = ?", [job_id])
        if row and (row["s"] or 0) >= min_step:
            jobs.cancel(store, job_id)
            return
        time.sleep(0.2)
    raise AssertionError("the run never reached the step to cancel at")


def test_cancel_then_resume_continues_from_the_checkpoint(store, ws, project):
    add_speaker(store, ws, project)
    opts = training.RunOptions(max_steps=7, checkpoint_every=100, **TINY)
    run = training.start_run(store, ws, project.name, "Joe", opts)
    worker = threading.Thread(target=jobs.run_job, args=(Store(ws.db_path), ws, run.job_id))
    worker.start()
    _cancel_when_training(store, run.job_id)
    worker.join(timeout=180)
    stopped = training.get_run(store, run.id)
    assert stopped.status == "cancelled"
    saved = training.latest_checkpoint(training.run_dir(ws, stopped))
    cancelled_at = int(saved.stem.split("_")[1])
    assert 2 <= cancelled_at < 7

    training.resume_run(store, run.id)
    final = jobs.run_job(store, ws, run.job_id)
    assert final.status == "done", final.error
    assert final.result["resumed_from"] == cancelled_at and final.result["step"] == 7
    steps = [s for s, _v, _t in jobs.metrics(store, run.job_id)["loss/mel"]]
    assert steps == list(range(1, 8))  # no step repeated or skipped across the resume


def test_preflight_reports_data_problems(store, ws, project):
    add_speaker(store, ws, project, "Few", phrases=PHRASES[:3])
    pf = training.preflight(store, ws, project.name, "Few", training.RunOptions(**TINY))
    assert any("Only 3 usable clips" in p for p in pf.problems)
    with pytest.raises(BadInput, match="at least 5"):
        training.start_run(store, ws, project.name, "Few", training.RunOptions(**TINY))

    add_speaker(store, ws, project, "Mute", text=False)
    pf = training.preflight(store, ws, project.name, "Mute", training.RunOptions(**TINY))
    assert any("no transcript" in w for w in pf.warnings) and pf.problems

    add_speaker(store, ws, project, "Unsure", review="unreviewed")
    with pytest.raises(BadInput, match="no accepted clips"):
        training.preflight(store, ws, project.name, "Unsure", training.RunOptions(**TINY))
    opts = training.RunOptions(all_clips=True, **TINY)
    assert not training.preflight(store, ws, project.name, "Unsure", opts).problems

    add_speaker(store, ws, project, "Phone", rate=16000)
    pf = training.preflight(store, ws, project.name, "Phone", training.RunOptions(**TINY))
    assert any("Sample-rate mismatch" in p and "16000 Hz" in p for p in pf.problems)
    assert not training.list_runs(store, project.id)


def test_gpu_choice_without_gpu_is_refused(store, ws, project):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    add_speaker(store, ws, project)
    opts = training.RunOptions(device="cuda", **TINY)
    with pytest.raises(NoGPU, match="No GPU"):
        training.start_run(store, ws, project.name, "Joe", opts)
    assert training.list_devices()[-1][1] == "cpu"


def test_gpu_memory_estimate_suggests_a_smaller_batch():
    small = training.estimate_gpu_gb("medium", 30_000_000, 4)
    big = training.estimate_gpu_gb("medium", 30_000_000, 32)
    assert small < big and big > 20


def test_finetune_from_an_earlier_run_starts_from_its_weights(trained, tmp_path):
    import torch

    store, ws, project, run = trained
    base = training.resolve_base(store, ws, project, training.RunOptions(base_run=run.id))
    saved = torch.load(training.checkpoint_path(ws, run), weights_only=False)
    assert all(torch.equal(v, saved["gen"][k]) for k, v in base.generator.state_dict().items())
    assert base.disc_state is not None and base.config.name == "tiny"
    assert base.info.phoneme_id_map  # the run's id map travels to the fine-tune


def test_plot_series_from_100k_rows_is_fast(store, ws, project):
    job = jobs.submit(store, "test_count", {"n": 1}, project_id=project.id)
    names = ["loss/mel", "loss/gen", "loss/disc", "loss/kl", "loss/dur"]
    steps = 20_000
    rows = [{"job_id": job.id, "step": s, "name": n, "value": 100.0 / s, "t": 1000.0 + s}
            for s in range(1, steps + 1) for n in names]
    store.db["metrics"].insert_all(rows, batch_size=10_000)
    timings = []
    for _ in range(3):  # the Train tab redraws every few seconds: warm-cache time is what counts
        started = time.perf_counter()
        series = training.plot_series(store, job.id, names, smoothing=0.6)
        timings.append(time.perf_counter() - started)
    elapsed = min(timings)
    print(f"plot data from {len(rows)} rows: {elapsed * 1000:.0f} ms")
    assert elapsed < 0.5
    xs, ys = series["loss/mel"]
    assert len(xs) <= training.PLOT_POINTS + 1 and xs[0] < 50 and xs[-1] > steps - 50
    assert ys[0] > ys[-1]  # a falling curve stays falling after bucketing and smoothing
    timed = training.plot_series(store, job.id, ["loss/mel"], x_axis="time")
    assert timed["loss/mel"][0][0] < 50


def test_overtraining_warning_names_the_best_checkpoint(store, project):
    job = jobs.submit(store, "test_count", {"n": 1}, project_id=project.id)
    for step, value in [(100, 2.0), (200, 1.5), (300, 1.6), (400, 1.7), (500, 1.8)]:
        store.db["metrics"].insert({"job_id": job.id, "step": step, "name": "val/mel",
                                    "value": value, "t": 0.0})
    run = training.Run(id=1, project_id=project.id, kind="vits", preset="tiny", out_dir="",
                       created_at=0.0, job_id=job.id)
    warning = training.overtraining_warning(store, run)
    assert warning and "step 200" in warning
