"""VITS training: finite losses per preset, exact resume, NaN guard, fp32 spectrograms, run loop."""
import math

import numpy as np
import pytest
import torch

from engines.errors import Cancelled
from engines.vits.config import preset
from engines.vits.mel_processing import mel_spectrogram
from engines.vits.train import (RunState, TrainConfig, TrainItem, VitsDataset, load_checkpoint,
                                run, train_step)


def synthetic_items(n=3, seed=0):
    """Harmonic tones with random phoneme ids; enough for the losses to be meaningful."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        frames = 16 + 4 * i
        t = np.arange(frames * 256) / 22050
        audio = 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
        ids = [0] + list(rng.integers(3, 60, frames // 3)) + [0]
        items.append(TrainItem(audio.astype(np.float32), ids, speaker=i % 2, sample_rate=22050))
    return items


def _weights(state):
    return {k: v.detach().clone() for k, v in state.gen.state_dict().items()}


def test_tiny_step_gives_finite_losses_and_changes_weights():
    state = RunState.create(TrainConfig(preset="tiny", batch_size=2))
    data = VitsDataset(synthetic_items(), state.config)
    before = _weights(state)
    metrics = train_step(state, state.next_batch(data))
    for key in ("loss/gen", "loss/disc", "loss/mel", "loss/dur", "loss/kl", "opt/lr", "opt/grad_norm"):
        assert math.isfinite(metrics[key]), key
    assert metrics["train/skipped"] == 0
    after = state.gen.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_resume_reaches_the_same_weights(tmp_path):
    items = synthetic_items()
    cfg = TrainConfig(preset="tiny", batch_size=2, seed=7)

    straight = RunState.create(cfg)
    data = VitsDataset(items, straight.config)
    for _ in range(4):  # 3 clips, batch 2: crosses an epoch boundary (scheduler step, new order)
        train_step(straight, straight.next_batch(data))

    first = RunState.create(cfg)
    for _ in range(2):
        train_step(first, first.next_batch(data))
    first.save_checkpoint(tmp_path / "mid.pt")
    torch.manual_seed(999)  # anything the process does in between must not matter
    resumed = load_checkpoint(tmp_path / "mid.pt")
    for _ in range(2):
        train_step(resumed, resumed.next_batch(data))

    assert resumed.step == straight.step == 4 and resumed.epoch == straight.epoch
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    da, db = straight.disc.state_dict(), resumed.disc.state_dict()
    assert all(torch.equal(da[k], db[k]) for k in da)


def test_nan_batch_is_skipped_and_reported():
    state = RunState.create(TrainConfig(preset="tiny", batch_size=2))
    data = VitsDataset(synthetic_items(), state.config)
    batch = state.next_batch(data)
    batch.spec[0, :, 0] = float("nan")
    before = _weights(state)
    metrics = train_step(state, batch)
    assert metrics["train/skipped"] == 1
    after = state.gen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_mel_is_fp32_under_autocast():
    audio = torch.randn(1, 4096) * 0.1
    cfg = preset("tiny").audio
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mel = mel_spectrogram(audio, cfg)
    assert mel.dtype == torch.float32 and torch.isfinite(mel).all()
    assert mel.shape == (1, cfg.mel_channels, 16)


def test_run_keeps_last_checkpoints_best_and_samples(tmp_path):
    seen_metrics, seen_ckpts = [], []
    cfg = TrainConfig(preset="tiny", batch_size=2, max_steps=4, log_every=2, checkpoint_every=2,
                      keep_last=1, val_items=1)
    state = run(cfg, synthetic_items(4), tmp_path, on_metrics=lambda s, m: seen_metrics.append(s),
                on_checkpoint=lambda p, info: seen_ckpts.append(info))
    assert state.step == 4 and seen_metrics == [2, 4]
    assert [p.name for p in sorted(tmp_path.glob("ckpt_*.pt"))] == ["ckpt_00000004.pt"]
    assert (tmp_path / "best.pt").is_file()
    assert all(math.isfinite(info["val/mel"]) for info in seen_ckpts)
    assert seen_ckpts[-1]["sample"].dtype == np.float32 and len(seen_ckpts[-1]["sample"]) > 0


def test_cancel_saves_a_checkpoint_then_resumes(tmp_path):
    calls = {"n": 0}

    def cancel_after_two():
        calls["n"] += 1
        return calls["n"] > 2

    cfg = TrainConfig(preset="tiny", batch_size=2, max_steps=3, checkpoint_every=100, val_items=0)
    with pytest.raises(Cancelled):
        run(cfg, synthetic_items(), tmp_path, should_cancel=cancel_after_two)
    state = load_checkpoint(tmp_path / "ckpt_00000002.pt")
    assert state.step == 2
    assert run(cfg, synthetic_items(), tmp_path, state=state).step == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["medium", "mb-istft", "high"])
def test_one_step_per_large_preset(name):
    config = preset(name, n_speakers=2)
    config.segment_frames = 8  # very short segments keep the discriminators cheap on CPU
    state = RunState.create(TrainConfig(batch_size=1, max_clip_frames=24), config)
    data = VitsDataset(synthetic_items(1), config, max_frames=24)
    metrics = train_step(state, state.next_batch(data))
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss/")), metrics
    assert metrics["train/skipped"] == 0


def test_fine_tuning_starts_from_the_given_generator(tmp_path):
    import soundfile as sf

    torch.manual_seed(3)
    from engines.vits.models import VitsGenerator

    voice = VitsGenerator(preset("tiny"))
    state = RunState.create(TrainConfig(preset="tiny", batch_size=2), preset("tiny"), init_generator=voice)
    ours = state.gen.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in voice.state_dict().items())
    # Plain (path, ids, speaker) tuples work, and the spectrogram cache is written once.
    wav = tmp_path / "a.wav"
    sf.write(wav, synthetic_items(1)[0].audio, 22050, subtype="PCM_16")
    data = VitsDataset([(str(wav), [1, 5, 7, 2], 0)] * 2, state.config, cache_dir=tmp_path / "cache")
    metrics = train_step(state, state.next_batch(data))
    assert math.isfinite(metrics["loss/total"])
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
