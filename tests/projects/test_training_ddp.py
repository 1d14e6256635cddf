"""Multi-GPU training as a studio job: the same run, started with ``gpus``, trains through
torchrun (two CPU gloo processes here) and fills the store like a one-process run;
GPU lists that this machine cannot serve are refused before anything starts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from projects import jobs, training
from projects.errors import NoGPU
from tests.projects.test_training import PHRASES, RATE, TINY, add_speaker

ROOT_DIR = Path(__file__).resolve().parents[2]


def test_two_process_run_records_metrics_checkpoints_and_samples(store, ws, project):
    add_speaker(store, ws, project)
    opts = training.RunOptions(max_steps=3, checkpoint_every=2, device="cpu", gpus="cpu:2",
                               **{**TINY, "batch_size": 1})
    run = training.start_run(store, ws, project.name, "Joe", opts)
    job = jobs.run_job(store, ws, run.job_id)
    assert job.status == "done", job.error
    done = training.get_run(store, run.id)
    assert done.step == 3 and done.best_step in (2, 3)
    series = jobs.metrics(store, run.job_id)
    assert [s for s, _v, _t in series["loss/mel"]] == [1, 2, 3]
    # clips/s counts both processes' batches
    speed = series["speed/clips_per_s"][-1][1] / series["speed/steps_per_s"][-1][1]
    assert speed == pytest.approx(2.0)
    assert [s for s, _p in training.samples(ws, done)] == [2, 3]
    folder = training.run_dir(ws, done)
    assert not list(folder.glob("sample_*.npy")), "samples are handed over, not left behind"
    assert [p.name for p in sorted(folder.glob("ckpt_*.pt"))] == ["ckpt_00000002.pt",
                                                                  "ckpt_00000003.pt"]


def test_gpu_lists_the_machine_cannot_serve_are_refused(store, ws, project):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    add_speaker(store, ws, project)
    with pytest.raises(NoGPU, match="No GPU"):
        training.start_run(store, ws, project.name, "Joe", training.RunOptions(gpus="0,1", **TINY))
    pf = training.preflight(store, ws, project.name, "Joe",
                            training.RunOptions(gpus="cpu:2", precision="bf16", **TINY))
    assert any("needs a GPU" in p for p in pf.problems)
    assert not training.list_runs(store, project.id)


def test_cli_gpus_without_gpus_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = tmp_path / "lj"
    (data / "wavs").mkdir(parents=True)
    tone = 0.1 * np.sin(np.arange(RATE) * 2 * np.pi * 200 / RATE)
    for i in range(len(PHRASES)):
        sf.write(data / "wavs" / f"c{i}.wav", tone, RATE)
    (data / "metadata.csv").write_text("".join(f"c{i}|{p}\n" for i, p in enumerate(PHRASES)))
    out = subprocess.run([sys.executable, str(ROOT_DIR / "launch.py"), "--workspace",
                          str(tmp_path / "ws"), "train", "vits", "--project", "P", "--ljspeech",
                          str(data), "--gpus", "0,1", "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "No GPU" in out.stderr + out.stdout, out.stderr


def test_two_gpus_are_offered_together_in_the_device_picker(monkeypatch):
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(name="Test GPU", total_memory=24e9))
    choices = dict((value, label) for label, value in training.list_devices())
    assert list(choices) == ["cuda:0", "cuda:1", "gpus:0,1", "cpu"]
    opts = training.apply_device_choice(training.RunOptions(), "gpus:0,1")
    assert (opts.device, opts.gpus) == ("cuda", "0,1")
    opts = training.apply_device_choice(opts, "cuda:1")
    assert (opts.device, opts.gpus) == ("cuda:1", "")
