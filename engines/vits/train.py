"""VITS training: dataset, step, checkpoints, run loop.

One GPU or the CPU trains in a single process without ``torch.distributed``.
Several GPUs run this same loop in one process each (``distributed.py`` starts
them with torchrun); the only differences are the DDP wrappers the step runs
through, each rank's share of a batch, and that rank 0 alone validates and writes.

The whole run lives in a :class:`RunState` (models, optimizers, schedulers,
step, epoch, data-order position, RNG state). ``save_checkpoint`` writes all of
it, so a run interrupted and resumed reaches the same weights as one that never
stopped (on CPU, where the kernels are deterministic).
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from engines.errors import (BadInput, CancelFn, NoGPU, ProgressFn, check_cancel, never_cancel,
                            no_progress)

from . import commons
from .config import DECODER_MB_ISTFT, VitsConfig, preset
from .discriminators import VitsDiscriminator
from .losses import discriminator_loss, feature_loss, generator_loss, kl_loss, mel_loss, stft_loss
from .mel_processing import mel_spectrogram, spec_to_mel, spectrogram
from .models import VitsGenerator, _align

CHECKPOINT_VERSION = 1
CHECKPOINT_GLOB = "ckpt_*.pt"
BEST_NAME = "best.pt"
#: Seconds of audio rendered for the sample at each checkpoint at most.
SAMPLE_MAX_PHONEMES = 400

MetricsFn = Callable[[int, dict[str, float]], None]
CheckpointFn = Callable[[Path, dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping of one training run."""

    preset: str = "tiny"
    """Model preset when starting from scratch (ignored when a VitsConfig is given)."""
    batch_size: int = 8
    """Clips per optimiser step."""
    learning_rate: float = 2e-4
    """AdamW learning rate of generator and discriminator."""
    betas: tuple[float, float] = (0.8, 0.99)
    """AdamW betas (VITS values)."""
    eps: float = 1e-9
    """AdamW epsilon."""
    lr_decay: float = 0.999875
    """Learning-rate factor applied at the end of every epoch."""
    c_mel: float = 45.0
    """Weight of the mel L1 loss."""
    c_kl: float = 1.0
    """Weight of the KL loss."""
    c_stft: float = 1.0
    """Weight of the sub-band STFT loss (multi-band decoder only)."""
    grad_clip: float | None = 1000.0
    """Max global gradient norm per model (None: no clipping)."""
    max_steps: int = 10000
    """Stop after this many optimiser steps."""
    log_every: int = 10
    """Report metrics every N steps."""
    checkpoint_every: int = 1000
    """Save a checkpoint (and validate, render a sample) every N steps."""
    keep_last: int = 3
    """Step checkpoints kept besides best.pt."""
    val_items: int = 2
    """Clips held out for validation (taken from the end of the data)."""
    precision: str = "fp32"
    """"fp32", "bf16" or "fp16" (mixed precision needs a GPU)."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""
    seed: int = 1234
    """Seed of weights, data order and noise."""
    max_clip_frames: int | None = None
    """Crop training clips to at most this many spectrogram frames (None: whole clips)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


@dataclass
class TrainItem:
    """One training clip: audio (path or float32 array), its phoneme ids and speaker."""

    audio: str | Path | np.ndarray
    ids: Sequence[int]
    speaker: int = 0
    sample_rate: int | None = None
    """Sample rate of an in-memory array (paths are read from their header)."""


class VitsDataset(torch.utils.data.Dataset):
    """Clips → (ids, linear spectrogram, waveform, speaker), spectrograms cached.

    ``items`` are TrainItems or plain ``(audio, ids, speaker)`` tuples. Spectrograms are
    kept in memory and, for clips given as paths, in ``cache_dir`` across runs.
    """

    def __init__(self, items: Sequence[TrainItem | tuple], config: VitsConfig,
                 cache_dir: str | Path | None = None, max_frames: int | None = None):
        if not items:
            raise BadInput("No training clips")
        self.items = [it if isinstance(it, TrainItem) else TrainItem(*it) for it in items]
        self.audio_cfg = config.audio
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_frames = max_frames
        self._memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item = self.items[index]
        wav, spec = self._features(index)
        ids = torch.tensor(list(item.ids), dtype=torch.long)
        return ids, spec, wav, item.speaker

    def precompute(self) -> None:
        """Compute (and cache) every clip's features now rather than on first use."""
        for index in range(len(self)):
            self._features(index)

    def _features(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self._memory:
            self._memory[index] = self._load_or_compute(self.items[index])
        return self._memory[index]

    def _load_or_compute(self, item: TrainItem) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._cache_path(item)
        if cache is not None and cache.is_file():
            data = torch.load(cache, weights_only=True)
            return data["wav"], data["spec"]
        wav = torch.from_numpy(load_audio(item, self.audio_cfg.sample_rate))
        frames = len(wav) // self.audio_cfg.hop_length
        if self.max_frames:
            frames = min(frames, self.max_frames)
        if frames < 1:
            raise BadInput("A training clip is shorter than one spectrogram frame")
        wav = wav[: frames * self.audio_cfg.hop_length]
        spec = spectrogram(wav.unsqueeze(0), self.audio_cfg)[0]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"wav": wav, "spec": spec}, tmp)
            os.replace(tmp, cache)
        return wav, spec

    def _cache_path(self, item: TrainItem) -> Path | None:
        if self.cache_dir is None or not isinstance(item.audio, (str, Path)):
            return None
        key = f"{Path(item.audio).resolve()}|{self.audio_cfg}|{self.max_frames}"
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"


def load_audio(item: TrainItem, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` from a path or an array."""
    if isinstance(item.audio, np.ndarray):
        audio, sr = item.audio.astype(np.float32), item.sample_rate or sample_rate
    else:
        import soundfile as sf

        try:
            audio, sr = sf.read(str(item.audio), dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as err:
            raise BadInput(f"Cannot read training clip {item.audio}: {err}") from err
        audio = audio.mean(axis=1)
    if sr != sample_rate:
        import soxr

        audio = soxr.resample(audio, sr, sample_rate).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


@dataclass
class Batch:
    """Padded tensors of one batch."""

    ids: torch.Tensor
    id_lengths: torch.Tensor
    spec: torch.Tensor
    spec_lengths: torch.Tensor
    wav: torch.Tensor
    sid: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        """The same batch on ``device``."""
        return Batch(*(t.to(device) for t in (self.ids, self.id_lengths, self.spec,
                                              self.spec_lengths, self.wav, self.sid)))


def collate(samples, min_frames: int, hop: int) -> Batch:
    """Pad a list of dataset samples; spectrograms are padded to at least ``min_frames``."""
    n = len(samples)
    max_ids = max(len(s[0]) for s in samples)
    max_frames = max(max(s[1].size(1) for s in samples), min_frames)
    ids = torch.zeros(n, max_ids, dtype=torch.long)
    spec = torch.zeros(n, samples[0][1].size(0), max_frames)
    wav = torch.zeros(n, 1, max_frames * hop)
    id_lengths = torch.zeros(n, dtype=torch.long)
    spec_lengths = torch.zeros(n, dtype=torch.long)
    for i, (item_ids, item_spec, item_wav, _) in enumerate(samples):
        ids[i, : len(item_ids)] = item_ids
        spec[i, :, : item_spec.size(1)] = item_spec
        wav[i, 0, : len(item_wav)] = item_wav
        id_lengths[i], spec_lengths[i] = len(item_ids), item_spec.size(1)
    sid = torch.tensor([s[3] for s in samples], dtype=torch.long)
    return Batch(ids, id_lengths, spec, spec_lengths, wav, sid)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NoGPU("Training on 'cuda' was requested but no GPU is available")
    return torch.device(name)


@dataclass
class RunState:
    """Everything a training run needs to continue exactly where it stopped."""

    config: VitsConfig
    train_cfg: TrainConfig
    gen: VitsGenerator
    disc: VitsDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    step: int = 0
    epoch: int = 0
    batch_pos: int = 0
    best_val: float = math.inf
    extra: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    """This process's rank in a multi-GPU run (0 when training alone)."""
    world: int = 1
    """Processes training together (1 when training alone)."""
    gen_ddp: Any = None
    """The generator wrapped in DistributedDataParallel (multi-GPU runs only)."""
    disc_ddp: Any = None
    """The discriminator wrapped in DistributedDataParallel (multi-GPU runs only)."""

    @classmethod
    def create(cls, train_cfg: TrainConfig, config: VitsConfig | None = None,
               init_generator: VitsGenerator | None = None) -> "RunState":
        """A fresh run; ``init_generator`` (e.g. an imported Piper voice) seeds the generator."""
        config = config or preset(train_cfg.preset)
        config.validate()
        device = _pick_device(train_cfg.device)
        if train_cfg.precision != "fp32" and device.type != "cuda":
            raise NoGPU(f"{train_cfg.precision} training needs a GPU")
        torch.manual_seed(train_cfg.seed)
        gen = VitsGenerator(config)
        if init_generator is not None:
            # Fine-tuning: text encoder, flow, duration predictor and decoder come from the
            # voice; the posterior encoder and the discriminator start fresh.
            gen.load_state_dict(init_generator.state_dict())
        return cls._assemble(config, train_cfg, gen.to(device), device)

    @classmethod
    def _assemble(cls, config, train_cfg, gen, device) -> "RunState":
        disc = VitsDiscriminator(config.disc).to(device)
        opt = dict(lr=train_cfg.learning_rate, betas=train_cfg.betas, eps=train_cfg.eps)
        opt_g = torch.optim.AdamW(gen.parameters(), **opt)
        opt_d = torch.optim.AdamW(disc.parameters(), **opt)
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, train_cfg.lr_decay)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, train_cfg.lr_decay)
        scaler = torch.amp.GradScaler(device.type, enabled=train_cfg.precision == "fp16")
        return cls(config, train_cfg, gen, disc, opt_g, opt_d, sched_g, sched_d, scaler, device)

    # -- several processes --------------------------------------------------------------------
    def wrap_ddp(self, device_ids: list[int] | None = None) -> None:
        """Train through DistributedDataParallel wrappers (the process group must be up)."""
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.gen_ddp = DistributedDataParallel(self.gen, device_ids=device_ids)
        self.disc_ddp = DistributedDataParallel(self.disc, device_ids=device_ids)

    @property
    def gen_train(self) -> torch.nn.Module:
        """The generator as the training step calls it (DDP-wrapped when distributed)."""
        return self.gen if self.gen_ddp is None else self.gen_ddp

    @property
    def disc_train(self) -> torch.nn.Module:
        """The discriminator as the training step calls it (DDP-wrapped when distributed)."""
        return self.disc if self.disc_ddp is None else self.disc_ddp

    # -- data order -------------------------------------------------------------------------
    def next_batch(self, dataset: VitsDataset) -> Batch:
        """The next batch in this run's deterministic order (a fresh permutation per epoch).

        With several processes each rank takes its own ``batch_size`` slice of the same
        permutation; their slices wrap around at the end of an epoch so every rank
        always has a full batch (DDP needs every rank to step).
        """
        bs, n = self.train_cfg.batch_size, len(dataset)
        if self.batch_pos * bs * self.world >= n:
            # Roll over lazily, so the schedulers step after the epoch's last optimiser step.
            self._end_epoch()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(
            self.train_cfg.seed + self.epoch)).tolist()
        start = (self.batch_pos * self.world + self.rank) * bs
        stop = start + bs if self.world > 1 else min(start + bs, n)
        indices = [order[i % n] for i in range(start, stop)]
        self.batch_pos += 1
        return collate([dataset[i] for i in indices], self.config.segment_frames,
                       self.config.audio.hop_length).to(self.device)

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch_pos = 0
        with warnings.catch_warnings():
            # A run resumed at an epoch's end steps its (restored) schedulers before this
            # process's first optimiser step; torch's warning about it does not apply.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.sched_g.step()
            self.sched_d.step()

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the complete run state atomically.

        In a multi-GPU run every rank must call this (they pool their RNG states, so a
        resume restores each rank's own); rank 0 alone writes.
        """
        path = Path(path)
        rng_ranks = _gather_rng() if self.world > 1 else None
        if self.rank != 0:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": CHECKPOINT_VERSION, "vits_config": self.config.to_dict(),
            "train_config": self.train_cfg.to_dict(), "gen": self.gen.state_dict(),
            "disc": self.disc.state_dict(), "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(), "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(), "scaler": self.scaler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_pos": self.batch_pos,
            "best_val": self.best_val, "extra": self.extra, "rng": _rng_state(),
            "rng_ranks": rng_ranks,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(data, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load_checkpoint(cls, path: str | Path, device: str | None = None,
                        rank: int = 0) -> "RunState":
        """Rebuild a run from :meth:`save_checkpoint` output, RNG state included.

        ``rank`` picks that rank's RNG state from a multi-GPU checkpoint; a rank the
        checkpoint has no state for draws its own noise from ``seed + rank``.
        """
        data = _read_checkpoint(path)
        train_cfg = TrainConfig.from_dict(data["train_config"])
        if device:
            train_cfg.device = device
        config = VitsConfig.from_dict(data["vits_config"])
        dev = _pick_device(train_cfg.device)
        gen = VitsGenerator(config)
        gen.load_state_dict(data["gen"])
        state = cls._assemble(config, train_cfg, gen.to(dev), dev)
        state.disc.load_state_dict(data["disc"])
        for name in ("opt_g", "opt_d", "sched_g", "sched_d"):
            getattr(state, name).load_state_dict(data[name])
        if data["scaler"]:  # empty when saved by an fp32 (disabled) scaler: keep the fresh one
            state.scaler.load_state_dict(data["scaler"])
        state.step, state.epoch, state.batch_pos = data["step"], data["epoch"], data["batch_pos"]
        state.best_val, state.extra = data["best_val"], data.get("extra", {})
        ranks = data.get("rng_ranks") or []
        _set_rng_state(ranks[rank] if rank < len(ranks) else data["rng"])
        if rank and rank >= len(ranks):
            torch.manual_seed(train_cfg.seed + rank)
        return state


def save_checkpoint(state: RunState, path: str | Path) -> Path:
    """Module-level alias of :meth:`RunState.save_checkpoint`."""
    return state.save_checkpoint(path)


def load_checkpoint(path: str | Path, device: str | None = None) -> RunState:
    """Module-level alias of :meth:`RunState.load_checkpoint`."""
    return RunState.load_checkpoint(path, device)


def _read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict; BadInput naming the file when it is damaged or not one."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise BadInput(f"Cannot read checkpoint {path}: {err}") from err
    if not isinstance(data, dict) or "vits_config" not in data:
        raise BadInput(f"Cannot read checkpoint {path}: not a VITS training checkpoint")
    return data


def load_generator(path: str | Path) -> VitsGenerator:
    """Just the generator of a training checkpoint, in eval mode on CPU."""
    data = _read_checkpoint(path)
    gen = VitsGenerator(VitsConfig.from_dict(data["vits_config"]))
    gen.load_state_dict(data["gen"])
    return gen.eval()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _gather_rng() -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (a collective call)."""
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, _rng_state())
    return states


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- one step ---------------------------------------------------------------------------------
def _autocast(state: RunState):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(state.train_cfg.precision)
    return torch.autocast(state.device.type, dtype=dtype, enabled=dtype is not None)


def _optimise(state: RunState, loss: torch.Tensor, model, opt) -> float | None:
    """Backward, clip and step one model; returns the grad norm, or None if it was not finite."""
    opt.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.unscale_(opt)
    clip = state.train_cfg.grad_clip or math.inf
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    if not math.isfinite(norm):
        opt.zero_grad(set_to_none=True)
        state.scaler.update()
        return None
    state.scaler.step(opt)
    state.scaler.update()
    return norm


def _generator_losses(state: RunState, out, batch: Batch, y, y_hat) -> dict[str, torch.Tensor]:
    cfg, tc = state.config, state.train_cfg
    seg = cfg.segment_frames
    mel = spec_to_mel(batch.spec, cfg.audio)
    y_mel = commons.slice_segments(mel, out.slice_starts, seg)
    _, fake_s, real_f, fake_f = state.disc_train(y, y_hat)
    losses = {
        "loss/gen": generator_loss(fake_s),
        "loss/fm": feature_loss(real_f, fake_f),
        "loss/mel": mel_loss(y_mel, mel_spectrogram(y_hat, cfg.audio)) * tc.c_mel,
        "loss/dur": out.loss_dur.float(),
        "loss/kl": kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask) * tc.c_kl,
    }
    if cfg.model.decoder == DECODER_MB_ISTFT:
        pqmf = state.gen.dec.pqmf
        losses["loss/stft"] = stft_loss(pqmf.split(y.float()), pqmf.split(y_hat.float())) * tc.c_stft
    return losses


def train_step(state: RunState, batch: Batch) -> dict[str, float]:
    """One discriminator and one generator update; metrics keyed 'group/name'.

    A batch whose loss or gradients are not finite is skipped (no weights change)
    and reported as ``train/skipped = 1``.
    """
    state.gen.train()
    state.disc.train()
    hop, seg = state.config.audio.hop_length, state.config.segment_frames
    with _autocast(state):
        out = state.gen_train(batch.ids, batch.id_lengths, batch.spec, batch.spec_lengths,
                              batch.sid)
        y_hat = out.audio
        y = commons.slice_segments(batch.wav, out.slice_starts * hop, seg * hop)
        real_s, fake_s, _, _ = state.disc_train(y, y_hat.detach())
        loss_disc = discriminator_loss(real_s, fake_s)
    metrics = {"loss/disc": float(loss_disc.detach())}
    norm_d = _optimise(state, loss_disc, state.disc, state.opt_d) if math.isfinite(metrics["loss/disc"]) else None
    with _autocast(state):
        losses = _generator_losses(state, out, batch, y, y_hat)
        total = sum(losses.values())
    metrics.update({k: float(v.detach()) for k, v in losses.items()})
    metrics["loss/total"] = float(total.detach())
    norm_g = _optimise(state, total, state.gen, state.opt_g) if math.isfinite(metrics["loss/total"]) else None
    state.step += 1
    metrics.update({
        "opt/lr": state.opt_g.param_groups[0]["lr"],
        "opt/grad_norm": norm_g if norm_g is not None else math.nan,
        "opt/grad_norm_disc": norm_d if norm_d is not None else math.nan,
        "train/skipped": float(norm_g is None or norm_d is None),
        "train/epoch": float(state.epoch),
    })
    return metrics


# -- validation and samples -------------------------------------------------------------------
@torch.no_grad()
def validation_mel_loss(state: RunState, dataset: VitsDataset) -> float:
    """Mean mel L1 of clips rendered from text with their true (MAS) durations, noise-free."""
    gen, cfg = state.gen.eval(), state.config
    losses = []
    for index in range(len(dataset)):
        batch = collate([dataset[index]], 1, cfg.audio.hop_length).to(state.device)
        x, m_p, logs_p, x_mask = gen.enc_p(batch.ids, batch.id_lengths)
        g = gen.speaker_embedding(batch.sid)
        _, m_q, _, y_mask = gen.enc_q(batch.spec, batch.spec_lengths, g=g)
        attn = _align(gen.flow(m_q, y_mask, g=g), m_p, logs_p, x_mask, y_mask)
        m_frames = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        audio = gen.dec(gen.flow(m_frames, y_mask, g=g, reverse=True) * y_mask, g=g)
        mel_fake = mel_spectrogram(audio, cfg.audio)
        mel_real = spec_to_mel(batch.spec, cfg.audio)
        frames = min(mel_fake.size(2), mel_real.size(2))
        losses.append(float(F.l1_loss(mel_fake[..., :frames], mel_real[..., :frames])))
    return float(np.mean(losses))


@torch.no_grad()
def render_sample(gen: VitsGenerator, ids: Sequence[int], speaker: int = 0) -> np.ndarray:
    """Speak phoneme ids with default noise; float32 mono audio."""
    gen.eval()
    device = next(gen.parameters()).device
    ids_t = torch.tensor([list(ids)[:SAMPLE_MAX_PHONEMES]], dtype=torch.long, device=device)
    lengths = torch.tensor([ids_t.size(1)], device=device)
    sid = torch.tensor([speaker], device=device) if gen.n_speakers > 1 else None
    audio = gen.infer(ids_t, lengths, sid=sid)[0]
    return audio[0, 0].float().cpu().numpy()


# -- the loop ---------------------------------------------------------------------------------
def split_items(items: Sequence[TrainItem], val_items: int) -> tuple[list[TrainItem], list[TrainItem]]:
    """Hold out the last ``val_items`` clips (never fewer than one training clip)."""
    n_val = min(val_items, max(len(items) - 1, 0))
    return list(items[: len(items) - n_val]), list(items[len(items) - n_val:])


def _keep_last(out_dir: Path, keep: int) -> None:
    for old in sorted(out_dir.glob(CHECKPOINT_GLOB))[:-keep or None]:
        old.unlink(missing_ok=True)


def _checkpoint(state: RunState, out_dir: Path, val_set: VitsDataset | None,
                val_items: list[TrainItem], on_checkpoint: CheckpointFn | None) -> dict[str, Any]:
    if state.rank != 0:  # other ranks only lend their RNG state to rank 0's checkpoint
        state.save_checkpoint(out_dir / f"ckpt_{state.step:08d}.pt")
        return {}
    val = validation_mel_loss(state, val_set) if val_set is not None else math.nan
    is_best = math.isfinite(val) and val < state.best_val
    if is_best:
        state.best_val = val
    path = state.save_checkpoint(out_dir / f"ckpt_{state.step:08d}.pt")
    if is_best:
        shutil.copyfile(path, out_dir / BEST_NAME)
    _keep_last(out_dir, state.train_cfg.keep_last)
    info = {"step": state.step, "val/mel": val, "best": is_best, "sample_rate": state.config.audio.sample_rate}
    if val_items:
        info["sample"] = render_sample(state.gen, val_items[0].ids, val_items[0].speaker)
    if on_checkpoint:
        on_checkpoint(path, info)
    return info


def run(train_cfg: TrainConfig, data: Sequence[TrainItem], out_dir: str | Path,
        progress: ProgressFn = no_progress, should_cancel: CancelFn = never_cancel,
        on_metrics: MetricsFn | None = None, on_checkpoint: CheckpointFn | None = None,
        state: RunState | None = None, config: VitsConfig | None = None,
        cache_dir: str | Path | None = None) -> RunState:
    """Train until ``train_cfg.max_steps``; pass ``state`` (from load_checkpoint) to resume.

    On cancel the run saves a checkpoint, then raises :class:`Cancelled`.
    """
    out_dir = Path(out_dir)
    state = state or RunState.create(train_cfg, config)
    train_items, val_items = split_items(data, train_cfg.val_items)
    train_set = VitsDataset(train_items, state.config, cache_dir, train_cfg.max_clip_frames)
    val_set = VitsDataset(val_items, state.config, cache_dir) if val_items else None
    started, start_step = time.perf_counter(), state.step
    while state.step < train_cfg.max_steps:
        if should_cancel():
            state.save_checkpoint(out_dir / f"ckpt_{state.step:08d}.pt")
            check_cancel(should_cancel)
        metrics = train_step(state, state.next_batch(train_set))
        if on_metrics and (state.step % train_cfg.log_every == 0 or metrics["train/skipped"]):
            steps_per_s = (state.step - start_step) / (time.perf_counter() - started)
            metrics["speed/steps_per_s"] = steps_per_s
            metrics["speed/clips_per_s"] = steps_per_s * train_cfg.batch_size * state.world
            on_metrics(state.step, metrics)
        if state.step % train_cfg.checkpoint_every == 0 or state.step == train_cfg.max_steps:
            _checkpoint(state, out_dir, val_set, val_items, on_checkpoint)
        progress(state.step / train_cfg.max_steps, f"step {state.step}/{train_cfg.max_steps}")
    return state
