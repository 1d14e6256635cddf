"""Voice/background separation with an MDX-Net model in ONNX (UVR's ``Voc_FT`` and kin).

An MDX-Net model maps the spectrogram of a stereo chunk to the spectrogram of
its vocals. Its input is ``[batch, 4, dim_f, dim_t]``: real and imaginary parts
of both channels' STFT (``n_fft``, ``hop``, periodic Hann window, centred
frames), cut to the first ``dim_f`` frequency bins; ``dim_t`` frames cover
``hop * (dim_t - 1)`` samples. The output has the same layout.

:func:`separate_file` streams a file through the model: decode a block, run
every whole chunk it completes, cross-fade neighbouring chunks (a Tukey window
whose ramps sum to one), write the finished samples, forget them. Memory holds
one decode block plus one chunk, whatever the file's length. Our sources are
mono, so the same signal feeds both channels and the two output channels are
averaged back to one.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from engines import audio
from engines.errors import (BadInput, CancelFn, ModelMissing, ProgressFn, check_cancel,
                            never_cancel, no_progress)

#: Sample rate every UVR MDX-Net model was trained at, in Hz.
MDX_RATE = 44100
#: Seconds decoded per ffmpeg read while separating.
DECODE_BLOCK_S = 30.0
#: Share of each chunk cross-faded with each neighbour (0.25: a chunk costs 1.33x its hop).
DEFAULT_OVERLAP = 0.25
#: Floor for the summed cross-fade weight, so no sample is divided by (almost) zero.
MIN_WEIGHT = 1e-4
#: Channels the model takes (stereo).
MODEL_CHANNELS = 2


@dataclass
class MdxParams:
    """The spectrogram layout an MDX-Net model expects (from its registry entry)."""

    n_fft: int = 7680
    """STFT size in samples; the model sees ``n_fft // 2 + 1`` bins cut to ``dim_f``."""
    hop: int = 1024
    """STFT hop in samples."""
    dim_f: int = 3072
    """Frequency bins fed to the model (the lowest ones; the rest are zero in the output)."""
    dim_t: int = 256
    """STFT frames per chunk (the ONNX input's last axis)."""
    compensate: float = 1.021
    """Gain applied to the separated voice (the model's known level loss)."""
    sample_rate: int = MDX_RATE
    """Rate the model works at, in Hz; input is resampled to it."""
    overlap: float = DEFAULT_OVERLAP
    """Share (0..0.5] of a chunk cross-faded with each neighbour, hiding chunk seams."""

    @property
    def bins(self) -> int:
        """Bins of a one-sided STFT of ``n_fft`` samples."""
        return self.n_fft // 2 + 1

    @property
    def chunk_samples(self) -> int:
        """Samples in one model chunk (``dim_t`` centred frames)."""
        return self.hop * (self.dim_t - 1)

    @property
    def ramp_samples(self) -> int:
        """Length of each cross-fade ramp, in samples."""
        return max(1, int(self.chunk_samples * self.overlap))

    def validate(self) -> None:
        """Raise BadInput for a layout no STFT can produce."""
        if self.n_fft < 16 or self.n_fft % 2 or self.hop < 1 or self.dim_t < 2:
            raise BadInput(f"separation params: bad STFT layout (n_fft {self.n_fft}, "
                           f"hop {self.hop}, dim_t {self.dim_t})")
        if not 0 < self.dim_f <= self.bins:
            raise BadInput(f"separation params: dim_f {self.dim_f} must be 1..{self.bins}")
        if not 0.0 < self.overlap <= 0.5:
            raise BadInput(f"separation params: overlap must be in (0, 0.5], got {self.overlap}")

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "MdxParams":
        """Inverse of :meth:`to_dict`; unknown keys are ignored, values coerced to the field types."""
        out = cls()
        for f in dataclasses.fields(cls):
            if data and data.get(f.name) is not None:
                setattr(out, f.name, type(getattr(out, f.name))(data[f.name]))
        return out


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class MdxSeparator:
    """One MDX-Net ONNX model, ready to turn stereo chunks into their voice."""

    def __init__(self, model_path: str | os.PathLike, params: MdxParams | None = None,
                 device: str = "auto"):
        import onnxruntime as ort

        self.params = params or MdxParams()
        self.params.validate()
        path = Path(model_path)
        if not path.is_file():
            raise ModelMissing(f"Separation model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=_providers(device))
        except Exception as err:  # onnxruntime raises its own untyped errors on bad files
            raise ModelMissing(f"{path.name}: cannot load the separation model (damaged or "
                               f"not an ONNX model: {str(err).splitlines()[0][:120]}); "
                               "download or import it again") from None
        self.input_name = self.session.get_inputs()[0].name
        self._check_shape(path.name)
        self._window = None

    def _check_shape(self, name: str) -> None:
        shape = self.session.get_inputs()[0].shape
        want = [4, self.params.dim_f, self.params.dim_t]
        fixed = [d if isinstance(d, int) else None for d in shape[1:]]
        if len(shape) != 4 or any(d is not None and d != w for d, w in zip(fixed, want)):
            raise BadInput(f"{name}: model input is {shape}, but its params give "
                           f"[batch, 4, {self.params.dim_f}, {self.params.dim_t}]")

    def voice(self, chunk: np.ndarray) -> np.ndarray:
        """The voice of one stereo chunk ``[2, chunk_samples]`` (float32, same shape)."""
        spec = self._stft(chunk)
        try:
            out = self.session.run(None, {self.input_name: spec})[0]
        except Exception as err:
            raise BadInput(f"separation model failed on a chunk "
                           f"({str(err).splitlines()[0][:160]})") from None
        return self._istft(np.asarray(out, np.float32)) * self.params.compensate

    def _hann(self):
        import torch

        if self._window is None:
            self._window = torch.hann_window(self.params.n_fft, periodic=True)
        return self._window

    def _stft(self, chunk: np.ndarray) -> np.ndarray:
        import torch

        p = self.params
        spec = torch.stft(torch.from_numpy(np.ascontiguousarray(chunk, np.float32)), p.n_fft,
                          p.hop, window=self._hann(), center=True, return_complex=True)
        parts = torch.view_as_real(spec).permute(0, 3, 1, 2)       # [ch, re/im, bins, t]
        parts = parts.reshape(1, 2 * MODEL_CHANNELS, p.bins, p.dim_t)
        return parts[:, :, :p.dim_f].contiguous().numpy()

    def _istft(self, out: np.ndarray) -> np.ndarray:
        import torch

        p = self.params
        full = np.zeros((MODEL_CHANNELS, 2, p.bins, p.dim_t), np.float32)
        full[:, :, :p.dim_f] = out.reshape(MODEL_CHANNELS, 2, p.dim_f, p.dim_t)
        spec = torch.view_as_complex(torch.from_numpy(full).permute(0, 2, 3, 1).contiguous())
        wave = torch.istft(spec, p.n_fft, p.hop, window=self._hann(), center=True,
                           length=p.chunk_samples)
        return wave.numpy()


def crossfade_window(length: int, ramp: int) -> np.ndarray:
    """Tukey weights: a Hann half rising over ``ramp`` samples, flat, falling over ``ramp``.

    Chunks ``length - ramp`` apart overlap ramp on ramp, where sin² + cos² = 1,
    so the weights of neighbouring chunks sum to one everywhere.
    """
    rise = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
    weights = np.ones(length, np.float32)
    weights[:ramp] = rise
    weights[length - ramp:] = rise[::-1]
    return weights


class _OverlapAdd:
    """Mono input in, finished mono voice out: chunking and cross-fading for one stream."""

    def __init__(self, separator: MdxSeparator):
        p = separator.params
        self.separator = separator
        self.length, self.ramp = p.chunk_samples, p.ramp_samples
        self.step = self.length - self.ramp
        self.weights = crossfade_window(self.length, self.ramp)
        # The stream starts ``ramp`` samples early, so sample 0 already has full weight.
        self.pending = np.zeros(self.ramp, np.float32)
        self.acc = np.zeros(self.length, np.float32)
        self.wacc = np.zeros(self.length, np.float32)
        self.start = -self.ramp      # stream position of pending[0] and acc[0]

    def feed(self, block: np.ndarray, should_cancel: CancelFn) -> list[np.ndarray]:
        """Add decoded samples; return the voice finished so far (positions from 0 on)."""
        self.pending = np.concatenate([self.pending, block])
        out = []
        while len(self.pending) >= self.length:
            check_cancel(should_cancel)
            out.append(self._chunk())
        return out

    def finish(self, total: int, should_cancel: CancelFn) -> list[np.ndarray]:
        """Zero-pad the tail and return the rest of the voice, up to ``total`` samples."""
        out = []
        while self.start < total:
            check_cancel(should_cancel)
            need = self.length - len(self.pending)
            if need > 0:
                self.pending = np.concatenate([self.pending, np.zeros(need, np.float32)])
            out.append(self._chunk())
        return out

    def _chunk(self) -> np.ndarray:
        """Separate the chunk at the head of ``pending`` and emit the ``step`` samples it settles."""
        chunk = self.pending[:self.length]
        voice = self.separator.voice(np.stack([chunk, chunk])).mean(axis=0)
        self.acc += voice * self.weights
        self.wacc += self.weights
        done = self.acc[:self.step] / np.maximum(self.wacc[:self.step], MIN_WEIGHT)
        skip = max(0, -self.start)   # the lead-in before position 0 is not output
        self.acc = np.concatenate([self.acc[self.step:], np.zeros(self.step, np.float32)])
        self.wacc = np.concatenate([self.wacc[self.step:], np.zeros(self.step, np.float32)])
        self.pending = self.pending[self.step:]
        self.start += self.step
        return done[skip:]


def separate_file(separator: MdxSeparator, source: str | os.PathLike,
                  target: str | os.PathLike, progress: ProgressFn = no_progress,
                  should_cancel: CancelFn = never_cancel,
                  block_seconds: float = DECODE_BLOCK_S) -> float:
    """Write the voice of ``source`` to ``target`` (16-bit mono WAV at the model's rate).

    Streams: memory stays at one decode block plus one chunk whatever the
    file's length. The output has exactly the input's length, so times on it
    match times on the source. ``target`` appears only when complete (temp
    file, then rename); a cancel (``Cancelled``) or an undecodable input
    (``BadInput``) leaves nothing behind. Returns the seconds written.
    """
    source, target = Path(source), Path(target)
    rate = separator.params.sample_rate
    total_s = audio.probe(source).duration_s
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        with sf.SoundFile(tmp, "w", rate, 1, "PCM_16", format="WAV") as out:
            written = _stream(separator, source, out, total_s, progress, should_cancel,
                              block_seconds)
        if written == 0:
            raise BadInput(f"{source.name}: audio stream holds no decodable samples")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    progress(1.0, f"{source.name}: voice separated")
    return written / rate


def _stream(separator: MdxSeparator, source: Path, out: sf.SoundFile, total_s: float,
            progress: ProgressFn, should_cancel: CancelFn, block_seconds: float) -> int:
    """Decode, separate and write; returns the samples written."""
    rate = separator.params.sample_rate
    stitch = _OverlapAdd(separator)
    seen = written = 0

    def write(pieces: list[np.ndarray], limit: int) -> None:
        nonlocal written
        for piece in pieces:
            piece = piece[:max(0, limit - written)]
            out.write(np.clip(piece, -1.0, 1.0))
            written += len(piece)
        done_s = written / rate
        progress(min(1.0, done_s / total_s) if total_s else 0.0,
                 f"{source.name}: separated {done_s:.0f} of {total_s:.0f} s")

    for block in audio.iter_blocks(source, rate, block_seconds):
        check_cancel(should_cancel)
        seen += len(block)
        write(stitch.feed(block, should_cancel), seen)
    if seen:
        write(stitch.finish(seen, should_cancel), seen)
    return written
