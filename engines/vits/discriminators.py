"""Adversarial discriminators: multi-period (HiFi-GAN) and multi-scale (MelGAN) on raw audio."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .commons import get_padding, weight_norm
from .config import DiscriminatorConfig
from .modules import LRELU_SLOPE

#: Channel progression of a period discriminator (before the width divisor).
PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)
PERIOD_KERNEL = 5
PERIOD_STRIDE = 3
#: (out_channels, kernel, stride, groups) of each scale-discriminator layer.
SCALE_LAYERS = ((16, 15, 1, 1), (64, 41, 4, 4), (256, 41, 4, 16), (1024, 41, 4, 64),
                (1024, 41, 4, 256), (1024, 5, 1, 1))

# A discriminator returns its flattened scores and the feature maps of every layer.
DiscOutput = tuple[torch.Tensor, list[torch.Tensor]]


def _run_layers(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> DiscOutput:
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """Looks at audio folded into columns of ``period`` samples (2-D convs along time)."""

    def __init__(self, period: int, width_divisor: int = 1):
        super().__init__()
        self.period = period
        chans = [1] + [max(c // width_divisor, 1) for c in PERIOD_CHANNELS]
        pad = (get_padding(PERIOD_KERNEL, 1), 0)
        self.convs = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            stride = (PERIOD_STRIDE, 1) if i < len(chans) - 2 else 1
            self.convs.append(weight_norm(nn.Conv2d(cin, cout, (PERIOD_KERNEL, 1), stride, padding=pad)))
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> DiscOutput:
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        return _run_layers(self.convs, self.conv_post, x.view(b, c, t // self.period, self.period))


class DiscriminatorS(nn.Module):
    """Strided grouped 1-D convs over the raw waveform."""

    def __init__(self, width_divisor: int = 1):
        super().__init__()
        self.convs = nn.ModuleList()
        cin = 1
        for cout, kernel, stride, groups in SCALE_LAYERS:
            cout = max(cout // width_divisor, 1)
            groups = max(min(groups, cin, cout), 1)
            while cin % groups or cout % groups:
                groups -= 1
            self.convs.append(weight_norm(nn.Conv1d(cin, cout, kernel, stride, groups=groups,
                                                    padding=get_padding(kernel, 1))))
            cin = cout
        self.conv_post = weight_norm(nn.Conv1d(cin, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> DiscOutput:
        return _run_layers(self.convs, self.conv_post, x)


class MultiScaleDiscriminator(nn.Module):
    """Scale discriminators on the waveform average-pooled by 1, 2, 4, ..."""

    def __init__(self, n_scales: int = 1, width_divisor: int = 1):
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorS(width_divisor) for _ in range(n_scales))

    def forward(self, x: torch.Tensor) -> list[DiscOutput]:
        outs = []
        for i, disc in enumerate(self.discriminators):
            if i:
                x = F.avg_pool1d(x, 4, 2, padding=2)
            outs.append(disc(x))
        return outs


class MultiPeriodDiscriminator(nn.Module):
    """One period discriminator per period."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), width_divisor: int = 1):
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p, width_divisor) for p in periods)

    def forward(self, x: torch.Tensor) -> list[DiscOutput]:
        return [disc(x) for disc in self.discriminators]


class VitsDiscriminator(nn.Module):
    """Multi-scale + multi-period discriminators, run on real and generated audio together."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.msd = MultiScaleDiscriminator(cfg.n_scales, cfg.width_divisor)
        self.mpd = MultiPeriodDiscriminator(cfg.periods, cfg.width_divisor)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """Scores and feature maps: (real_scores, fake_scores, real_fmaps, fake_fmaps)."""
        # One pass over the concatenated batch halves the kernel launches.
        both = torch.cat([y, y_hat], 0)
        outs = self.msd(both) + self.mpd(both)
        n = y.size(0)
        real_s = [s[:n] for s, _ in outs]
        fake_s = [s[n:] for s, _ in outs]
        real_f = [[f[:n] for f in fm] for _, fm in outs]
        fake_f = [[f[n:] for f in fm] for _, fm in outs]
        return real_s, fake_s, real_f, fake_f
