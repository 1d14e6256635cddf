"""Piper voices (VITS exported to ONNX + JSON config) run through onnxruntime.

``OnnxVoice`` loads any Piper-format voice, including the bundled
``en_US-joe-medium`` and voices exported by our own training, and speaks text
through the shared text front-end (``engines.text``), so ids are exactly the
ones Piper itself would feed the model.

Throughput, measured on CPU (see the module tests and the closing report):
one padded batch of sentences is *slower* than one call per sentence (padding
wastes work and batching does not make the convolutions cheaper on CPU), so on
CPU sentences run one per call, several at once on a small thread pool whose
workers share the cores (workers x intra-op threads = physical cores). On a
GPU, sentences go in padded batches and each output is cut to its own length
from the model's predicted durations.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from engines.errors import (BadInput, CancelFn, ModelMissing, NoGPU, ProgressFn, check_cancel, never_cancel,
                           no_progress)
from engines.text import Lexicon, TextFrontend
from engines.text.phoneme_ids import PAD, num_symbols

DEFAULT_NOISE_SCALE = 0.667
DEFAULT_LENGTH_SCALE = 1.0
DEFAULT_NOISE_W = 0.8
#: Audio samples per model frame (Piper's default when the config does not say).
DEFAULT_HOP_LENGTH = 256
#: Silence inserted between sentences, in seconds.
DEFAULT_SENTENCE_SILENCE_S = 0.2
#: On CPU, sentences synthesized at the same time (each with cores / workers threads).
CPU_SENTENCE_WORKERS = 2
#: On GPU, the most sentences padded into one call.
GPU_BATCH_SENTENCES = 16

Speaker = Union[int, str, None]


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads do not speed up convolutions)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return logical
    cores, physical_id = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    return max(1, min(len(cores) or logical, logical))


@dataclass
class VoiceConfig:
    """What a Piper voice's ``.onnx.json`` says, reduced to what synthesis needs."""

    sample_rate: int
    """Output sample rate in Hz."""
    language: str
    """espeak-ng voice used to phonemize ("en-us")."""
    id_map: dict[str, list[int]]
    """Phoneme -> ids (Piper's ``phoneme_id_map``)."""
    num_speakers: int = 1
    """Number of speakers the model embeds."""
    speaker_id_map: dict[str, int] = field(default_factory=dict)
    """Speaker name -> speaker id (multi-speaker voices)."""
    length_scale: float = DEFAULT_LENGTH_SCALE
    """Default speaking-rate factor (> 1 is slower)."""
    noise_scale: float = DEFAULT_NOISE_SCALE
    """Default generator noise."""
    noise_w: float = DEFAULT_NOISE_W
    """Default phoneme-duration noise."""
    hop_length: int = DEFAULT_HOP_LENGTH
    """Audio samples per model frame."""
    vowel_clusters: Optional[set[tuple[str, ...]]] = None
    """Phoneme sequences the voice treats as one symbol."""

    @staticmethod
    def from_dict(data: dict) -> "VoiceConfig":
        """Read Piper's JSON layout; raises BadInput when a required key is missing."""
        try:
            inference = data.get("inference", {})
            clusters = data.get("vowel_clusters")
            return VoiceConfig(
                sample_rate=int(data["audio"]["sample_rate"]),
                language=str(data["espeak"]["voice"]),
                id_map={k: list(v) for k, v in data["phoneme_id_map"].items()},
                num_speakers=int(data.get("num_speakers", 1)),
                speaker_id_map=dict(data.get("speaker_id_map") or {}),
                length_scale=float(inference.get("length_scale", DEFAULT_LENGTH_SCALE)),
                noise_scale=float(inference.get("noise_scale", DEFAULT_NOISE_SCALE)),
                noise_w=float(inference.get("noise_w", DEFAULT_NOISE_W)),
                hop_length=int(data.get("hop_length", DEFAULT_HOP_LENGTH)),
                vowel_clusters={tuple(c) for c in clusters} if clusters else None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise BadInput(f"The voice config is not in Piper's format (problem with {err}).") from err

    def to_dict(self) -> dict:
        """Piper's JSON layout (enough for Piper's runtime to load the voice)."""
        data = {
            "audio": {"sample_rate": self.sample_rate},
            "espeak": {"voice": self.language},
            "phoneme_type": "espeak",
            "phoneme_id_map": self.id_map,
            "num_symbols": num_symbols(self.id_map),
            "num_speakers": self.num_speakers,
            "speaker_id_map": self.speaker_id_map,
            "inference": {"noise_scale": self.noise_scale, "length_scale": self.length_scale,
                          "noise_w": self.noise_w},
            "hop_length": self.hop_length,
        }
        if self.vowel_clusters:
            data["vowel_clusters"] = [list(c) for c in sorted(self.vowel_clusters)]
        return data


def _read_config(config_path: Path) -> VoiceConfig:
    if not config_path.is_file():
        raise ModelMissing(f"Voice config not found: {config_path} (it belongs beside the .onnx file).")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"Cannot read the voice config {config_path.name}: {err}") from err
    if not isinstance(data, dict):
        raise BadInput(f"The voice config {config_path.name} is not a JSON object.")
    return VoiceConfig.from_dict(data)


def _providers() -> list:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session_options(intra_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _expose_durations(onnx_path: Path) -> Optional[bytes]:
    """The model with its per-id frame counts (the ``Ceil`` tensor) as an extra output."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(onnx_path))
    ceil_outputs = [out for node in model.graph.node if node.op_type == "Ceil" for out in node.output]
    if len(ceil_outputs) != 1:
        return None
    if all(o.name != ceil_outputs[0] for o in model.graph.output):
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(ceil_outputs[0]))
    return model.SerializeToString()


@dataclass
class _Request:
    """Everything but the ids that one model call needs."""

    scales: np.ndarray
    """noise_scale, length_scale, noise_w as the model's float32 ``scales`` input."""
    sid: Optional[int]
    """Speaker id, or None for single-speaker models."""


class _SentenceRunner:
    """CPU strategy: one call per sentence, a few sentences at a time."""

    def __init__(self, session, workers: int) -> None:
        self.session = session
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="onnx-voice") if workers > 1 else None

    def run_one(self, ids: Sequence[int], request: _Request) -> np.ndarray:
        """One sentence through the model."""
        feed = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": request.scales,
        }
        if request.sid is not None:
            feed["sid"] = np.asarray([request.sid], dtype=np.int64)
        return self.session.run(None, feed)[0].reshape(-1)

    def run(self, batch: list[Sequence[int]], request: _Request, progress: ProgressFn,
            should_cancel: CancelFn) -> list[np.ndarray]:
        """Audio for each sentence, in order."""
        if self._pool is None:
            out = []
            for done, ids in enumerate(batch):
                check_cancel(should_cancel)
                out.append(self.run_one(ids, request))
                progress((done + 1) / len(batch), f"sentence {done + 1} of {len(batch)}")
            return out
        return self._run_parallel(batch, request, progress, should_cancel)

    def _run_parallel(self, batch, request, progress, should_cancel) -> list[np.ndarray]:
        futures: list[Future] = [self._pool.submit(self.run_one, ids, request) for ids in batch]
        out = []
        try:
            for done, future in enumerate(futures):
                check_cancel(should_cancel)
                out.append(future.result())
                progress((done + 1) / len(batch), f"sentence {done + 1} of {len(batch)}")
        finally:
            for future in futures:
                future.cancel()
        return out


class _BatchRunner:
    """GPU strategy: padded batches, each output cut by its predicted length."""

    def __init__(self, session, hop_length: int, pad_id: int) -> None:
        self.session = session
        self.hop_length = hop_length
        self.pad_id = pad_id

    def run(self, batch: list[Sequence[int]], request: _Request, progress: ProgressFn,
            should_cancel: CancelFn) -> list[np.ndarray]:
        """Audio for each sentence, in order."""
        # Similar lengths together waste the least padding.
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        out: list[Optional[np.ndarray]] = [None] * len(batch)
        for start in range(0, len(order), GPU_BATCH_SENTENCES):
            check_cancel(should_cancel)
            chunk = order[start:start + GPU_BATCH_SENTENCES]
            for index, audio in zip(chunk, self._run_padded([batch[i] for i in chunk], request)):
                out[index] = audio
            progress(min(1.0, (start + len(chunk)) / len(batch)), f"{start + len(chunk)} of {len(batch)} sentences")
        return out

    def _run_padded(self, batch: list[Sequence[int]], request: _Request) -> list[np.ndarray]:
        lengths = np.asarray([len(ids) for ids in batch], dtype=np.int64)
        padded = np.full((len(batch), int(lengths.max())), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(batch):
            padded[row, :len(ids)] = ids
        feed = {"input": padded, "input_lengths": lengths, "scales": request.scales}
        if request.sid is not None:
            feed["sid"] = np.full(len(batch), request.sid, dtype=np.int64)
        audio, frames = self.session.run(None, feed)[:2]
        audio = audio.reshape(len(batch), -1)
        samples = frames.reshape(len(batch), -1).sum(axis=1).astype(np.int64) * self.hop_length
        return [audio[row, :samples[row]].copy() for row in range(len(batch))]


@dataclass
class _RuntimePlan:
    """Where and how a voice runs: providers, batching, threads."""

    providers: list
    """onnxruntime execution providers, preferred first."""
    batched: bool
    """Pad sentences into one call (GPU) instead of one call per sentence (CPU)."""
    workers: int
    """Sentences synthesized at the same time."""
    intra_threads: int
    """onnxruntime intra-op threads per call (workers x threads = physical cores)."""

    @staticmethod
    def choose(use_gpu: Optional[bool], batched: Optional[bool], workers: Optional[int]) -> "_RuntimePlan":
        """The plan for this machine; raises NoGPU when a GPU is demanded and absent."""
        providers = _providers() if use_gpu is not False else ["CPUExecutionProvider"]
        on_gpu = providers[0] != "CPUExecutionProvider"
        if use_gpu and not on_gpu:
            raise NoGPU("onnxruntime on this machine has no CUDA provider.")
        batched = on_gpu if batched is None else batched
        cores = physical_cores()
        workers = 1 if batched else max(1, min(workers or CPU_SENTENCE_WORKERS, cores))
        return _RuntimePlan(providers, batched, workers, max(1, cores // workers))

    def session(self, model):
        """An inference session for ``model`` (a path or serialized bytes)."""
        import onnxruntime as ort

        return ort.InferenceSession(model, _session_options(self.intra_threads), providers=self.providers)


class OnnxVoice:
    """A Piper-format voice running in onnxruntime."""

    def __init__(self, session, config: VoiceConfig, onnx_path: Path, runner) -> None:
        """Use :meth:`load`; this takes an already built session and runner."""
        self.session = session
        self.config = config
        self.onnx_path = onnx_path
        self._runner = runner
        self._input_names = {i.name for i in session.get_inputs()}
        self._frontend: Optional[TextFrontend] = None

    # --- loading ----------------------------------------------------------------

    @classmethod
    def load(cls, onnx_path: Union[str, Path], config_path: Union[str, Path, None] = None,
             use_gpu: Optional[bool] = None, batched: Optional[bool] = None,
             sentence_workers: Optional[int] = None) -> "OnnxVoice":
        """Load ``voice.onnx`` and its config (default ``voice.onnx.json``).

        ``use_gpu`` None picks CUDA when onnxruntime offers it. ``batched`` None pads
        sentences into one call on GPU only (on CPU that measured slower);
        ``sentence_workers`` overrides how many sentences run at once on CPU.
        Raises ModelMissing when a file is absent, BadInput when a file is not a
        usable voice and NoGPU when ``use_gpu`` is True without a CUDA provider.
        """
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise ModelMissing(f"Voice model not found: {onnx_path}")
        config = _read_config(Path(config_path) if config_path else Path(f"{onnx_path}.json"))
        plan = _RuntimePlan.choose(use_gpu, batched, sentence_workers)
        try:
            model = _expose_durations(onnx_path) if plan.batched else None
            session = plan.session(model or str(onnx_path))
        except Exception as err:  # onnx and onnxruntime raise untyped errors for bad files
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise BadInput(f"{onnx_path.name} is not a loadable ONNX voice: {first_line}") from err
        if model is not None and len(session.get_outputs()) > 1:
            runner = _BatchRunner(session, config.hop_length, config.id_map.get(PAD, [0])[0])
        else:
            runner = _SentenceRunner(session, plan.workers)
        return cls(session, config, onnx_path, runner)

    # --- properties ---------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""
        return self.config.sample_rate

    @property
    def num_speakers(self) -> int:
        """Number of speakers in the model."""
        return self.config.num_speakers

    @property
    def speaker_id_map(self) -> dict[str, int]:
        """Speaker name -> id."""
        return self.config.speaker_id_map

    @property
    def language(self) -> str:
        """espeak-ng language code of the voice."""
        return self.config.language

    @property
    def id_map(self) -> dict[str, list[int]]:
        """Piper phoneme id map."""
        return self.config.id_map

    @property
    def length_scale(self) -> float:
        """Default length scale from the voice config."""
        return self.config.length_scale

    @property
    def noise_scale(self) -> float:
        """Default noise scale from the voice config."""
        return self.config.noise_scale

    @property
    def noise_w(self) -> float:
        """Default duration noise from the voice config."""
        return self.config.noise_w

    @property
    def frontend(self) -> TextFrontend:
        """The text front-end for this voice's language and id map."""
        if self._frontend is None:
            self._frontend = TextFrontend(self.language, self.id_map, vowel_clusters=self.config.vowel_clusters)
        return self._frontend

    # --- synthesis ----------------------------------------------------------------

    def _speaker_id(self, speaker: Speaker) -> Optional[int]:
        if "sid" not in self._input_names:
            if speaker not in (None, 0):
                raise BadInput("This voice has a single speaker; leave the speaker empty.")
            return None
        if speaker is None:
            return 0
        if isinstance(speaker, str) and not speaker.isdigit():
            if speaker not in self.speaker_id_map:
                raise BadInput(f"Unknown speaker {speaker!r}; this voice has {', '.join(self.speaker_id_map) or 'numbered speakers only'}.")
            return self.speaker_id_map[speaker]
        sid = int(speaker)
        if not 0 <= sid < self.num_speakers:
            raise BadInput(f"Speaker {sid} is out of range: this voice has {self.num_speakers} speakers.")
        return sid

    def _request(self, speaker: Speaker, length_scale: Optional[float], noise_scale: Optional[float],
                 noise_w: Optional[float]) -> _Request:
        length_scale = self.length_scale if length_scale is None else length_scale
        if length_scale <= 0:
            raise BadInput("The length scale must be above 0.")
        scales = np.asarray([
            self.noise_scale if noise_scale is None else noise_scale,
            length_scale,
            self.noise_w if noise_w is None else noise_w,
        ], dtype=np.float32)
        return _Request(scales, self._speaker_id(speaker))

    def _check_ids(self, batch: list[Sequence[int]]) -> None:
        limit = num_symbols(self.id_map)
        for ids in batch:
            if len(ids) == 0:
                raise BadInput("A sentence has no phoneme ids to speak.")
            if min(ids) < 0 or max(ids) >= limit:
                raise BadInput(f"Phoneme ids must lie in 0..{limit - 1} for this voice.")

    def synthesize_ids(self, ids: Sequence[int], speaker: Speaker = None, length_scale: Optional[float] = None,
                       noise_scale: Optional[float] = None, noise_w: Optional[float] = None) -> np.ndarray:
        """One sentence's phoneme ids -> float32 mono audio at :attr:`sample_rate`."""
        return self.synthesize_batch([ids], speaker, length_scale, noise_scale, noise_w)[0]

    def synthesize_batch(self, batch: Sequence[Sequence[int]], speaker: Speaker = None,
                         length_scale: Optional[float] = None, noise_scale: Optional[float] = None,
                         noise_w: Optional[float] = None, progress: ProgressFn = no_progress,
                         should_cancel: CancelFn = never_cancel) -> list[np.ndarray]:
        """Several sentences' ids -> one float32 array each, in the same order."""
        batch = [list(ids) for ids in batch]
        if not batch:
            return []
        self._check_ids(batch)
        request = self._request(speaker, length_scale, noise_scale, noise_w)
        audios = self._runner.run(batch, request, progress, should_cancel)
        return [np.clip(a, -1.0, 1.0).astype(np.float32, copy=False) for a in audios]

    def synthesize(self, text: str, speaker: Speaker = None, length_scale: Optional[float] = None,
                   noise_scale: Optional[float] = None, noise_w: Optional[float] = None,
                   sentence_silence_s: float = DEFAULT_SENTENCE_SILENCE_S, lexicon: Optional[Lexicon] = None,
                   progress: ProgressFn = no_progress,
                   should_cancel: CancelFn = never_cancel) -> tuple[np.ndarray, int]:
        """Text -> (float32 mono audio, sample rate); sentences joined by short silences.

        Raises BadInput for empty text or text with nothing to pronounce.
        """
        if not text or not text.strip():
            raise BadInput("There is no text to speak.")
        sentences = self.frontend.sentences(text, lexicon)
        if not sentences:
            raise BadInput("The text has nothing to pronounce (only symbols or punctuation).")
        audios = self.synthesize_batch([s.ids for s in sentences], speaker, length_scale, noise_scale,
                                       noise_w, progress, should_cancel)
        return join_with_silence(audios, self.sample_rate, sentence_silence_s), self.sample_rate


def join_with_silence(audios: Sequence[np.ndarray], sample_rate: int, silence_s: float) -> np.ndarray:
    """Concatenate clips with ``silence_s`` seconds of silence between them."""
    gap = np.zeros(max(0, int(round(silence_s * sample_rate))), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, audio in enumerate(audios):
        if i:
            pieces.append(gap)
        pieces.append(audio.astype(np.float32, copy=False))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
