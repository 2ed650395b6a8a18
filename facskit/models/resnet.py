"""ResNet trunks (He et al., CVPR 2016) whose state_dict keys follow torchvision's layout.

The AAAI'20 SCC network starts from an ImageNet ResNet-50. facskit ships no weights and does not depend
on torchvision, so the trunk reproduces torchvision's key names (conv1, bn1, layer1.0.conv1, ...,
layer4.2.bn3, downsample.0/1) and `load_trunk_weights` reads a `resnet50-*.pth` file a user already has.
The stride of a stage sits on the 3x3 convolution ("ResNet v1.5"), as in torchvision and in the SCC
reference's slim blocks, which put stride 2 on the first unit of stages 2-4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facskit.errors import CheckpointError

BlockKind = Literal["bottleneck", "basic"]

STAGES: dict[str, tuple[BlockKind, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(in_channels, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual, inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand x4, with a residual (ResNet-50)."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, out_channels: int | None = None
    ) -> None:
        """``out_channels``: ``planes * expansion`` unless given (the Hourglass's blocks expand by 2)."""
        super().__init__()
        out_channels = planes * self.expansion if out_channels is None else out_channels
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual, inplace=True)


class ResNetTrunk(nn.Module):
    """ResNet without pooling and classifier: (B, 3, S, S) -> (B, out_channels, S/32, S/32).

    `width` is the channel count of the stem and of stage 1 (64 in the paper); a narrower width gives a
    trunk cheap enough to train on a laptop CPU.
    """

    def __init__(self, depth: str = "resnet50", width: int = 64) -> None:
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"unknown ResNet depth {depth!r}; choose from {', '.join(STAGES)}")
        kind, counts = STAGES[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_channels = width
        for index, count in enumerate(counts):
            planes = width * 2**index
            blocks = []
            for unit in range(count):
                stride = 2 if index > 0 and unit == 0 else 1
                blocks.append(block(in_channels, planes, stride))
                in_channels = planes * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.out_channels = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (B, w, S/2, S/2)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, w, S/4, S/4)
        x = self.layer1(x)
        x = self.layer2(x)  # (B, ., S/8, S/8)
        x = self.layer3(x)  # (B, ., S/16, S/16)
        return self.layer4(x)  # (B, out_channels, S/32, S/32)


def load_trunk_weights(trunk: ResNetTrunk, path: str | Path) -> None:
    """Load ImageNet weights in torchvision's layout (e.g. `resnet50-0676ba61.pth`) into `trunk`.

    A `module.` prefix (DataParallel) and a `state_dict` wrapper are accepted, `fc.*` is ignored; every
    other key must match the trunk exactly, else a `CheckpointError` lists the mismatches.
    """
    from facskit.models.checkpoint import read_torch_file, short_list

    data = read_torch_file(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: not a ResNet state_dict (expected a dict of tensors)")
    weights = {k.removeprefix("module."): v for k, v in data.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith("fc.")}
    expected = trunk.state_dict()
    # Older torchvision files predate BN's num_batches_tracked; BatchNorm fills it in itself.
    missing = [k for k in expected if k not in weights and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in weights if k not in expected]
    shapes = [
        f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected {short_list(unexpected)}")
        if shapes:
            parts.append(f"wrong shape {short_list(shapes)}")
        raise CheckpointError(f"{path}: backbone weights do not fit the trunk: {'; '.join(parts)}")
    with torch.no_grad():
        trunk.load_state_dict(weights, strict=False)
