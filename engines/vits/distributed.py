"""Multi-GPU VITS training: PyTorch DDP, one process per device, started by torchrun.

The parent (a studio job, or anything else) never joins the process group, so a
crash of the distributed part cannot take it down. It writes a :class:`DistSpec`
into the run folder and starts ``torchrun``; each rank loads the same start
checkpoint, wraps generator and discriminator in DistributedDataParallel and
runs the ordinary loop of ``train.run``. Rank 0 reports back through an events
file of JSON lines (progress, metrics, checkpoints, the end), which the parent
follows; the parent asks for a stop by creating a flag file, which the ranks
check together every step. Output goes to ``ddp.log`` in the run folder.

GPUs use the NCCL backend. CPU processes use gloo: slow, but they run the very
same code path, which is how the tests check it on machines without GPUs.

    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        -m engines.vits.distributed RUN_DIR/ddp_spec.json
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engines.errors import (BadInput, CancelFn, Cancelled, NoGPU, ProgressFn, StudioError,
                            never_cancel, no_progress)

SPEC_NAME = "ddp_spec.json"
EVENTS_NAME = "ddp_events.jsonl"
CANCEL_NAME = "ddp.cancel"
LOG_NAME = "ddp.log"
#: Start checkpoint of a fresh run (not a ckpt_*: it is never listed or promoted).
INIT_NAME = "init.pt"
#: How often the parent reads the events file, in seconds.
POLL_S = 0.5
#: Least time between two progress events from rank 0, in seconds.
PROGRESS_EVERY_S = 1.0
#: Lines of ddp.log quoted when the processes fail without saying why.
LOG_TAIL_LINES = 12
#: A rank's exception line in ddp.log, as torchrun prefixes it: "[rank0]: ValueError: ...".
RANK_EXCEPTION = re.compile(r"^\[rank\d+\]:\s+((?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b.*)$")


@dataclass
class DistSpec:
    """What every rank needs to train: written as JSON into the run folder."""

    start: str
    """Checkpoint every rank loads first (init.pt of a fresh run, or the latest ckpt)."""
    items: list[dict[str, Any]]
    """Training clips: ``{"audio": path, "ids": [...], "speaker": n}``."""
    out_dir: str
    """Run folder: checkpoints, events, cancel flag, log."""
    cache_dir: str | None = None
    """Cached spectrograms (computed by the parent before the ranks start)."""
    backend: str = "nccl"
    """"nccl" for GPUs, "gloo" for CPU processes."""
    gpus: list[int] | None = None
    """CUDA device indices, one rank each (None for CPU processes)."""
    processes: int = 2
    """Ranks to start."""
    parent_pid: int | None = None
    """The process following the run; if it dies, the ranks save a checkpoint and stop
    rather than train on unwatched (a resume would otherwise start a second set)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def parse_gpus(text: str) -> tuple[list[int] | None, int]:
    """``"0,1"`` → ([0, 1], 2); ``"cpu:2"`` → (None, 2): two CPU (gloo) processes.

    Raises BadInput for anything else, naming the accepted forms.
    """
    text = (text or "").strip().lower()
    try:
        if text.startswith("cpu:"):
            count = int(text[4:])
            if count < 1:
                raise ValueError(text)
            return None, count
        gpus = [int(part) for part in text.split(",") if part.strip()]
        if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
            raise ValueError(text)
        return gpus, len(gpus)
    except ValueError:
        raise BadInput(f"--gpus takes distinct GPU numbers such as 0,1 (or cpu:N for N CPU "
                       f"processes), not {text!r}") from None


def check_gpus(gpus: list[int] | None) -> None:
    """NoGPU unless every requested CUDA device exists."""
    if gpus is None:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise NoGPU("No GPU is available on this machine; multi-GPU training needs CUDA GPUs.")
    missing = [g for g in gpus if g >= count]
    if missing:
        raise NoGPU(f"No GPU {missing[0]} on this machine: it has {count} GPU(s), "
                    f"numbered 0 to {count - 1}.")


def build_config(train_cfg):
    """The run's TrainConfig for building its start state in the parent: CPU and fp32
    (the parent may have no GPU to spare; :func:`save_start` restores the real ones)."""
    return replace(train_cfg, device="cpu", precision="fp32")


def save_start(state, train_cfg, folder: str | Path) -> Path:
    """Save a fresh state built with :func:`build_config` as the ranks' start checkpoint."""
    state.train_cfg = train_cfg
    return state.save_checkpoint(Path(folder) / INIT_NAME)


def prepare_features(train_cfg, config, items: Sequence, cache_dir: str | Path) -> None:
    """Compute every clip's cached spectrogram once, so ranks only read the cache."""
    from .train import VitsDataset, split_items

    train_items, val_items = split_items(items, train_cfg.val_items)
    for subset, frames in ((train_items, train_cfg.max_clip_frames), (val_items, None)):
        if subset:
            VitsDataset(subset, config, cache_dir, frames).precompute()


# --------------------------------------------------------------------------- parent side

class DistributedRun:
    """Start the ranks, follow rank 0's events, forward them to callbacks, stop on request."""

    def __init__(self, spec: DistSpec):
        self.spec, self.folder = spec, Path(spec.out_dir)
        self.events_path = self.folder / EVENTS_NAME
        self.cancel_path = self.folder / CANCEL_NAME
        self._read_to = 0
        self._outcome: dict[str, Any] = {}

    def command(self) -> list[str]:
        """The torchrun command line (one process per GPU or CPU rank)."""
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={self.spec.processes}", "-m", "engines.vits.distributed",
                str(self.folder / SPEC_NAME)]

    def run(self, progress: ProgressFn = no_progress, should_cancel: CancelFn = never_cancel,
            on_metrics=None, on_checkpoint=None) -> int:
        """Train to the end; returns the final step. Raises Cancelled or StudioError."""
        self._reset()
        with open(self.folder / LOG_NAME, "ab") as log:
            proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                    env=self._env(), cwd=_repo_root())
            while proc.poll() is None:
                if should_cancel() and not self.cancel_path.exists():
                    self.cancel_path.touch()
                self._drain(progress, on_metrics, on_checkpoint)
                time.sleep(POLL_S)
        self._drain(progress, on_metrics, on_checkpoint)
        return self._finish(proc.returncode)

    def _reset(self) -> None:
        self.spec.parent_pid = os.getpid()
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in (self.events_path, self.cancel_path):
            stale.unlink(missing_ok=True)
        tmp = self.folder / (SPEC_NAME + ".tmp")
        tmp.write_text(json.dumps(self.spec.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / SPEC_NAME)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(_repo_root()) + os.pathsep +
                   os.environ.get("PYTHONPATH", ""))
        if self.spec.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in self.spec.gpus)
        else:  # CPU ranks share the cores instead of each taking all of them
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                      // self.spec.processes)))
        return env

    def _drain(self, progress, on_metrics, on_checkpoint) -> None:
        """Handle every complete line rank 0 appended since the last call."""
        if not self.events_path.is_file():
            return
        with open(self.events_path, "rb") as f:
            f.seek(self._read_to)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._read_to += end
        for line in chunk[:end].splitlines():
            self._handle(json.loads(line), progress, on_metrics, on_checkpoint)

    def _handle(self, event: dict, progress, on_metrics, on_checkpoint) -> None:
        kind = event.pop("type")
        if kind == "progress":
            progress(event["fraction"], event["message"])
        elif kind == "metrics" and on_metrics:
            on_metrics(event["step"], event["values"])
        elif kind == "checkpoint" and on_checkpoint:
            info = event["info"]
            sample = info.pop("sample_path", None)
            if sample:
                info["sample"] = np.load(sample)
                Path(sample).unlink(missing_ok=True)
            on_checkpoint(Path(event["path"]), info)
        else:
            self._outcome[kind] = event

    def _finish(self, returncode: int) -> int:
        if "cancelled" in self._outcome:
            raise Cancelled(f"Stopped at step {self._outcome['cancelled']['step']}")
        if "done" in self._outcome and returncode == 0:
            return int(self._outcome["done"]["step"])
        if "error" in self._outcome:
            raise StudioError(self._outcome["error"]["message"])
        raise StudioError(f"Multi-GPU training stopped (exit code {returncode}): "
                          f"{self._log_tail()} (full log: {self.folder / LOG_NAME})")

    def _log_tail(self) -> str:
        """The last exception a rank printed, else the log's last lines."""
        path = self.folder / LOG_NAME
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
        raised = [m.group(1) for m in map(RANK_EXCEPTION.match, lines) if m]
        return raised[-1] if raised else " | ".join(lines[-LOG_TAIL_LINES:])


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- rank side

class _Reporter:
    """Rank 0's events, appended as JSON lines and flushed at once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = open(folder / EVENTS_NAME, "a", encoding="utf-8")
        self._last_progress = 0.0

    def emit(self, kind: str, **fields: Any) -> None:
        """Append one event."""
        self.file.write(json.dumps({"type": kind, **fields}) + "\n")
        self.file.flush()

    def progress(self, fraction: float, message: str) -> None:
        """Progress at most every PROGRESS_EVERY_S (the last step always)."""
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY_S or fraction >= 1.0:
            self._last_progress = now
            self.emit("progress", fraction=fraction, message=message)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        """Rank 0's metrics of one step (NaN becomes null in JSON)."""
        self.emit("metrics", step=step, values={k: (v if np.isfinite(v) else None)
                                                for k, v in values.items()})

    def checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        """A checkpoint, its validation figure and its sample (as a .npy beside it)."""
        info = dict(info)
        sample = info.pop("sample", None)
        if sample is not None:
            sample_path = self.folder / f"sample_{info['step']:08d}.npy"
            np.save(sample_path, sample)
            info["sample_path"] = str(sample_path)
        self.emit("checkpoint", path=str(path), info=info)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _collective_cancel(flag: Path, parent_pid: int | None, device) -> CancelFn:
    """True on every rank once the flag exists or the parent is gone (ranks stop together)."""
    import torch
    import torch.distributed as dist

    def should_cancel() -> bool:
        stop = flag.exists() or not _alive(parent_pid)
        wanted = torch.tensor([1.0 if stop else 0.0], device=device)
        dist.all_reduce(wanted, op=dist.ReduceOp.MAX)
        return bool(wanted.item())

    return should_cancel


def _train_rank(spec: DistSpec) -> None:
    """One rank: load the start checkpoint, wrap in DDP, run the shared loop."""
    import torch
    import torch.distributed as dist

    from . import train

    # DDP's hint about the relative-attention tables' grad layout: it concerns a few
    # KB of tiny tensors and would fill ddp.log once per step.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if spec.backend == "nccl" else "cpu"
    if spec.backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(spec.backend)
    rank, folder = dist.get_rank(), Path(spec.out_dir)
    reporter = _Reporter(folder) if rank == 0 else None
    try:
        state = train.RunState.load_checkpoint(spec.start, device=device, rank=rank)
        state.wrap_ddp([local] if spec.backend == "nccl" else None)
        items = [train.TrainItem(Path(i["audio"]), i["ids"], i.get("speaker", 0))
                 for i in spec.items]
        state = train.run(state.train_cfg, items, folder,
                          progress=reporter.progress if reporter else no_progress,
                          should_cancel=_collective_cancel(folder / CANCEL_NAME, spec.parent_pid,
                                                          device),
                          on_metrics=reporter.metrics if reporter else None,
                          on_checkpoint=reporter.checkpoint if reporter else None,
                          state=state, cache_dir=spec.cache_dir)
        if reporter:
            reporter.emit("done", step=state.step)
    except Cancelled:
        if reporter:
            reporter.emit("cancelled", step=state.step)
    except StudioError as err:
        if reporter:
            reporter.emit("error", message=str(err))
        raise
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: ``-m engines.vits.distributed SPEC.json``."""
    argv = sys.argv[1:] if argv is None else argv
    spec = DistSpec.from_dict(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    _train_rank(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
