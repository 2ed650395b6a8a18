"""The BMVC 2018 Hourglass for joint AU intensity heatmap regression.

Sanchez-Lozano, Tzimiropoulos and Valstar, "Joint Action Unit localisation and intensity estimation
through heatmap regression", BMVC 2018 (reference: ESanchezLozano/Action-Units-Heatmaps).

Attribute names reproduce the authors' released `AUdetector.pth.tar` (specs/bmvc2018_checkpoint_layout.tsv)
so its `state_dict`, once the `module.` prefix is stripped, loads with `strict=True`:

    conv1 7x7/2 (+bias), bn1, ReLU            -> (B, w/4, S/2, S/2)
    conv2 bottleneck w/4 -> w/2 (projection)   -> (B, w/2, S/2, S/2)
    max-pool 2                                 -> (B, w/2, S/4, S/4)
    conv3 bottleneck w/2 -> w/2
    conv4 bottleneck w/2 -> w (projection)     -> (B, w, S/4, S/4)
    m0 hourglass of depth d (bottlenecks b1_*, b2_*, b2_plus_1, b3_*; nearest x2 upsampling)
    top_m_0 bottleneck, conv_last0 1x1 (+bias), bn_end0, ReLU
    l0 1x1 (+bias) -> (B, A, S/4, S/4): one map per AU

The paper's network is w = 256, d = 4 (3.42 M parameters, 10.3 GFLOP at 256x256); smaller widths and
depths give the lite variants with the same code.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from facskit.models.resnet import Bottleneck
from facskit.models.spec import AUModel, ModelSpec


class ResidualBottleneck(Bottleneck):
    """Pre-activation-free bottleneck with expansion 2 (the reference's `Bottleneck`).

    1x1 to out/2, 3x3, 1x1 back to out, BN after each; the residual (projected by a 1x1 conv + BN when the
    channel count changes) is added before the last ReLU: ResNet's bottleneck at stride 1 with half the
    output channels inside, so its layers and their state_dict keys are the ResNet block's.
    """

    expansion = 2

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels // 2, out_channels=out_channels)


class Hourglass(nn.Module):
    """One hourglass of `depth` levels (Newell et al. 2016, as used by the BMVC'18 paper).

    Level l: upper branch b1_l at full resolution; lower branch max-pool 2, b2_l, the level below (or
    b2_plus_1 at the bottom), b3_l, nearest-neighbour x2 upsampling; the two branches are summed.
    Modules are registered in the reference's order (b1_d, b2_d, ..., b1_1, b2_1, b2_plus_1, b3_1, ...,
    b3_d) so state_dict keys come out in the release's order.
    """

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ResidualBottleneck(channels, channels))
            self.add_module(f"b2_{level}", ResidualBottleneck(channels, channels))
        self.add_module("b2_plus_1", ResidualBottleneck(channels, channels))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", ResidualBottleneck(channels, channels))

    def _level(self, level: int, x: Tensor) -> Tensor:
        upper = getattr(self, f"b1_{level}")(x)  # (B, C, H, W)
        lower = getattr(self, f"b2_{level}")(F.max_pool2d(x, 2, stride=2))  # (B, C, H/2, W/2)
        lower = self._level(level - 1, lower) if level > 1 else self.b2_plus_1(lower)
        lower = getattr(self, f"b3_{level}")(lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")  # (B, C, H, W)

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, x)


class HourglassNet(AUModel):
    """BMVC'18 single-stack Hourglass: (B, 3, S, S) RGB/255 -> (B, A, S/4, S/4) AU heatmaps."""

    def __init__(self, spec: ModelSpec, width: int = 256, depth: int = 4) -> None:
        super().__init__(spec)
        if width % 8:
            raise ValueError(f"hourglass width must be a multiple of 8, not {width}")
        if (spec.input_size // 4) % (2**depth):
            raise ValueError(
                f"input {spec.input_size} gives {spec.input_size // 4}-pixel maps, not divisible by 2^{depth}"
            )
        stem, mid = width // 4, width // 2
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = ResidualBottleneck(stem, mid)
        self.conv3 = ResidualBottleneck(mid, mid)
        self.conv4 = ResidualBottleneck(mid, width)
        self.m0 = Hourglass(depth, width)
        self.top_m_0 = ResidualBottleneck(width, width)
        self.conv_last0 = nn.Conv2d(width, width, kernel_size=1)
        self.l0 = nn.Conv2d(width, spec.n_maps, kernel_size=1)
        self.bn_end0 = nn.BatchNorm2d(width)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (B, w/4, S/2, S/2)
        x = F.max_pool2d(self.conv2(x), 2)  # (B, w/2, S/4, S/4)
        x = self.conv4(self.conv3(x))  # (B, w, S/4, S/4)
        x = self.top_m_0(self.m0(x))
        x = F.relu(self.bn_end0(self.conv_last0(x)), inplace=True)
        return self.l0(x)  # (B, A, S/4, S/4)
