"""Configuration of a VITS voice: audio features, generator, discriminator, presets.

A :class:`VitsConfig` fully describes a model, so a checkpoint that stores
``config.to_dict()`` can be rebuilt with no outside knowledge.

Presets:

* ``tiny``     – a few thousand parameters per block; for tests and CPU experiments.
* ``medium``   – exactly the shapes of a Piper "medium" voice (e.g. en_US-joe-medium).
* ``mb-istft`` – the medium encoder/flow with a multi-band inverse-STFT decoder (fast on CPU).
* ``high``     – the shapes of a Piper "high" voice (original VITS decoder).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engines.errors import BadInput

#: Piper's phoneme_id_map has at most this many symbols; voices use an embedding this big.
PIPER_NUM_SYMBOLS = 256
DECODER_HIFIGAN = "hifigan"
DECODER_MB_ISTFT = "mb_istft"


@dataclass
class AudioConfig:
    """Waveform and spectrogram settings shared by the data pipeline and the losses."""

    sample_rate: int = 22050
    """Sample rate of the audio the model reads and writes, in Hz."""
    filter_length: int = 1024
    """FFT size of the linear spectrogram fed to the posterior encoder, in samples."""
    hop_length: int = 256
    """Samples between spectrogram frames; must equal the decoder's total upsampling."""
    win_length: int = 1024
    """Hann window length of the STFT, in samples."""
    mel_channels: int = 80
    """Number of mel bands of the reconstruction loss."""
    mel_fmin: float = 0.0
    """Lowest mel filter frequency, in Hz."""
    mel_fmax: float | None = None
    """Highest mel filter frequency, in Hz (None: Nyquist)."""

    @property
    def spec_channels(self) -> int:
        """Bins of the one-sided linear spectrogram."""
        return self.filter_length // 2 + 1


@dataclass
class ModelConfig:
    """Shapes of the generator (text encoder, duration predictor, flow, posterior encoder, decoder)."""

    n_vocab: int = PIPER_NUM_SYMBOLS
    """Size of the phoneme embedding table."""
    inter_channels: int = 192
    """Channels of the latent z shared by the flow, posterior encoder and decoder."""
    hidden_channels: int = 192
    """Width of the text encoder, flow and posterior encoder."""
    filter_channels: int = 768
    """Width of the feed-forward layers inside the text encoder."""
    n_heads: int = 2
    """Attention heads in the text encoder."""
    n_layers: int = 6
    """Transformer layers in the text encoder."""
    kernel_size: int = 3
    """Kernel of the text encoder's feed-forward convolutions."""
    p_dropout: float = 0.1
    """Dropout inside the text encoder and duration predictors during training."""
    window_size: int = 4
    """Relative-position attention window (positions each side)."""
    decoder: str = DECODER_HIFIGAN
    """``"hifigan"`` (Piper/VITS layout) or ``"mb_istft"`` (multi-band inverse STFT)."""
    resblock: str = "2"
    """HiFi-GAN residual block type: ``"1"`` (three dilated pairs) or ``"2"`` (two convs)."""
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    """Kernel size of each parallel residual block."""
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    """Dilations inside each parallel residual block."""
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    """Stride of each transposed convolution of the decoder."""
    upsample_initial_channel: int = 256
    """Channels before the first upsampling; halved after each one."""
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    """Kernel of each transposed convolution."""
    istft_n_fft: int = 16
    """mb_istft only: FFT size of each sub-band's inverse STFT, in samples."""
    istft_hop: int = 4
    """mb_istft only: hop of each sub-band's inverse STFT, in samples."""
    subbands: int = 4
    """mb_istft only: number of sub-bands merged by the synthesis filter."""
    synthesis: str = "pqmf"
    """mb_istft only: ``"pqmf"`` (fixed filter bank) or ``"learned"`` (trainable filter)."""
    n_speakers: int = 1
    """Speakers in the embedding table; 1 means a single-speaker model."""
    gin_channels: int = 0
    """Speaker embedding width (0 for single speaker; Piper uses 512 when multi-speaker)."""
    use_sdp: bool = True
    """Stochastic duration predictor (Piper default) instead of the deterministic one."""
    posterior_layers: int = 16
    """WaveNet layers of the posterior encoder."""
    flow_layers: int = 4
    """WaveNet layers inside each coupling layer of the flow."""
    n_flows: int = 4
    """Coupling layers in the flow."""
    dp_filter_channels: int = 256
    """Width of the deterministic duration predictor (the stochastic one uses hidden_channels)."""

    def __post_init__(self) -> None:
        # JSON round-trips turn tuples into lists; keep them hashable tuples.
        self.resblock_kernel_sizes = tuple(self.resblock_kernel_sizes)
        self.resblock_dilation_sizes = tuple(tuple(d) for d in self.resblock_dilation_sizes)
        self.upsample_rates = tuple(self.upsample_rates)
        self.upsample_kernel_sizes = tuple(self.upsample_kernel_sizes)
        if self.n_speakers > 1 and self.gin_channels == 0:
            self.gin_channels = 512

    @property
    def hop_length(self) -> int:
        """Samples produced per latent frame by the decoder."""
        hop = 1
        for rate in self.upsample_rates:
            hop *= rate
        if self.decoder == DECODER_MB_ISTFT:
            hop *= self.istft_hop * self.subbands
        return hop


@dataclass
class DiscriminatorConfig:
    """Shapes of the adversarial discriminators (training only)."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """Periods of the multi-period discriminator."""
    n_scales: int = 1
    """Scales of the multi-scale discriminator (VITS uses 1, HiFi-GAN 3)."""
    width_divisor: int = 1
    """Divide every discriminator channel count by this (tiny models train faster)."""

    def __post_init__(self) -> None:
        self.periods = tuple(self.periods)


@dataclass
class VitsConfig:
    """Everything needed to rebuild a VITS model: audio, generator and discriminator."""

    name: str = "medium"
    """Preset the config started from (informational)."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    """Audio and spectrogram settings."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Generator shapes."""
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    """Discriminator shapes."""
    segment_frames: int = 32
    """Latent frames the decoder renders per training example (32 × 256 = 8192 samples)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VitsConfig":
        """Rebuild a config from :meth:`to_dict` output; unknown keys are rejected."""
        try:
            return cls(
                name=data.get("name", "custom"),
                audio=AudioConfig(**data.get("audio", {})),
                model=ModelConfig(**data.get("model", {})),
                disc=DiscriminatorConfig(**data.get("disc", {})),
                segment_frames=data.get("segment_frames", 32),
            )
        except TypeError as err:
            raise BadInput(f"Invalid VITS config: {err}") from err

    def validate(self) -> None:
        """Raise BadInput when the decoder's upsampling disagrees with the STFT hop."""
        if self.model.hop_length != self.audio.hop_length:
            raise BadInput(
                f"Decoder hop {self.model.hop_length} != audio hop {self.audio.hop_length}"
            )


def _tiny() -> VitsConfig:
    model = ModelConfig(
        inter_channels=16, hidden_channels=32, filter_channels=64, n_heads=2, n_layers=2,
        resblock="2", resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),),
        upsample_rates=(8, 8, 4), upsample_initial_channel=32, upsample_kernel_sizes=(16, 16, 8),
        posterior_layers=2, flow_layers=2, n_flows=2, dp_filter_channels=32,
    )
    disc = DiscriminatorConfig(periods=(2, 3), n_scales=1, width_divisor=16)
    return VitsConfig(name="tiny", model=model, disc=disc, segment_frames=16)


def _medium() -> VitsConfig:
    return VitsConfig(name="medium", model=ModelConfig())


def _mb_istft() -> VitsConfig:
    # Medium encoder and flow; the decoder works at 1/16 of the sample rate per band.
    model = ModelConfig(
        decoder=DECODER_MB_ISTFT, resblock="2", resblock_kernel_sizes=(3, 5, 7),
        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)), upsample_rates=(4, 4),
        upsample_initial_channel=256, upsample_kernel_sizes=(16, 16),
        istft_n_fft=16, istft_hop=4, subbands=4, synthesis="pqmf",
    )
    return VitsConfig(name="mb-istft", model=model)


def _high() -> VitsConfig:
    model = ModelConfig(
        resblock="1", resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        upsample_rates=(8, 8, 2, 2), upsample_initial_channel=512,
        upsample_kernel_sizes=(16, 16, 4, 4),
    )
    return VitsConfig(name="high", model=model)


_PRESETS = {"tiny": _tiny, "medium": _medium, "mb-istft": _mb_istft, "high": _high}
PRESET_NAMES = tuple(_PRESETS)


def preset(name: str, n_speakers: int = 1) -> VitsConfig:
    """A fresh config for a named preset; ``n_speakers > 1`` turns on speaker embeddings."""
    if name not in _PRESETS:
        raise BadInput(f"Unknown VITS preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    cfg = _PRESETS[name]()
    if n_speakers > 1:
        cfg.model.n_speakers = n_speakers
        cfg.model.gin_channels = 32 if name == "tiny" else 512
    return cfg
