"""The AAAI 2020 SCC network: ResNet trunk, deconvolution head with semantic correspondence convolutions.

Fan, Shen, Cheng and Tian, "Facial Action Unit Intensity Estimation via Semantic Correspondence Learning
with Dynamic Graph Convolution", AAAI 2020 (reference: EvelynFan/FAU, TensorFlow).

SCC module (paper sec. 3.2, eq. 1-3), for one feature map X (B, C, M, M):
  * node i = channel i, node feature f_i = its flattened M x M map (L = M^2);
  * a k-NN graph on the Euclidean distances between the f_i, rebuilt in every forward pass (a dynamic
    graph: k-NN on the current features, never cached);
  * edge feature [f_i, f_j - f_i] (2L) for each of the k neighbours j of i;
  * a "1x1 convolution" shared by all edges: h(f_i, f_j) = ReLU(BN(phi . f_i + omega . (f_j - f_i)))
    with phi, omega each (L, L), i.e. a dense (2L -> L) map on the edge feature;
  * the output node feature is the max over the k neighbours, reshaped back to M x M.

Decisions read off the reference code (model_graph.py):
  * The shared 1x1 conv is `slim.conv2d(edge_feature, L, [1, 1])` on an NHWC tensor (B, N, k, 2L): its
    input channels are the 2L edge-feature entries, so the weight really is a dense L x 2L matrix (33.5 M
    parameters at the 64x64 level). It runs inside the ResNet arg_scope, hence BN + ReLU and no bias.
  * k = 7 includes the node itself (`top_k(-distance)`: the self distance 0 is the smallest). We put the
    self edge first explicitly, so ties and rounding in ||a||^2 + ||b||^2 - 2ab never drop it.
  * The reference builds the node matrix with `tf.reshape(NHWC, [B, C, -1])`, which groups memory rather
    than channels (at 16x16x256 a "node" is one pixel's 256 channels). The paper and this module use the
    stated semantics, channels as nodes; the weight shapes are the same because N = C and L = M^2 at all
    three levels.

``nodes="pixels"`` (an option, not the default) builds the graph the reference code actually computes:
its reshape makes every pixel a node whose feature is that pixel's C-channel vector (the k-NN then joins
pixels with similar features anywhere in the map, and phi, omega are (C, C): a shared 1x1 edge convolution
that keeps every output at its own position). The default, ``"channels"``, is the paper's text: nodes are
channels and phi, omega mix all L = M^2 positions, so an untrained module scrambles the spatial layout the
heatmaps must keep (docs/design_notes.md compares the two).

Cost: phi . f_i + omega . (f_j - f_i) = (phi - omega) . f_i + omega . f_j, so both linear maps are applied
once per node (B, C, L) and the k edges are formed by gathering (B, C, k, L) sums: k times fewer FLOPs
than convolving every edge, and the (B, C, k, 2L) edge tensor is never built. Training materialises the
(B, C, k, L) pre-activations (BN needs their batch statistics); inference walks the nodes in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facskit.models.resnet import ResNetTrunk
from facskit.models.spec import AUModel, ModelSpec

# Inference chunking budget for the (B, chunk, k, L) pre-activations (bytes).
INFERENCE_CHUNK_BYTES = 64 * 2**20


def knn_channels(features: Tensor, k: int) -> Tensor:
    """Indices (B, C, k) of each channel's k nearest channels by Euclidean distance, itself first.

    features: (B, C, L). Distances use ||a||^2 + ||b||^2 - 2 a.b (one batched GEMM, no (B, C, C, L)
    difference tensor); no gradient flows through the graph, as in the reference (top_k indices).
    """
    with torch.no_grad():
        f = features.detach().float()
        square = (f * f).sum(dim=-1)  # (B, C)
        dist = square[:, :, None] + square[:, None, :] - 2 * torch.bmm(f, f.transpose(1, 2))  # (B, C, C)
        dist.diagonal(dim1=1, dim2=2).fill_(-math.inf)  # the self edge is always the first neighbour
        return dist.topk(k, dim=-1, largest=False).indices  # (B, C, k)


NODE_KINDS = ("channels", "pixels")


class SCCModule(nn.Module):
    """Semantic correspondence convolution on a (B, C, M, M) map (AAAI'20 eq. 1-3).

    Below, "C" is the number of graph nodes and "L" the length of a node's feature: (C, M^2) with
    ``nodes="channels"`` (the paper), (M^2, C) with ``nodes="pixels"`` (the reference code's reshape;
    ``channels`` must then be given, as it sets the edge weight's size).
    """

    def __init__(
        self, map_size: int, k: int = 7, nodes: str = "channels", channels: int | None = None
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, not {k}")
        if nodes not in NODE_KINDS:
            raise ValueError(f"nodes must be one of {', '.join(NODE_KINDS)}, not {nodes!r}")
        if nodes == "pixels" and not channels:
            raise ValueError("nodes='pixels' needs the number of channels (the node feature length)")
        self.map_size = map_size
        self.k = k
        self.nodes = nodes
        length = map_size * map_size if nodes == "channels" else int(channels)  # type: ignore[arg-type]
        # One (L, 2L) weight [phi | omega] acting on [f_i, f_j - f_i]; no bias because BN follows.
        self.edge = nn.Linear(2 * length, length, bias=False)
        self.bn = nn.BatchNorm1d(length)
        nn.init.kaiming_normal_(self.edge.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        batch, planes, height, width = x.shape
        if height != self.map_size or width != self.map_size:
            raise ValueError(
                f"SCC module built for {self.map_size}x{self.map_size} maps, got {height}x{width}"
            )
        f = x.reshape(batch, planes, height * width)  # (B, C, M^2)
        if self.nodes == "pixels":
            f = f.transpose(1, 2)  # (B, M^2, C): a node per pixel
        out = self._graph_conv(f)
        if self.nodes == "pixels":
            out = out.transpose(1, 2)
        return out.reshape(batch, planes, height, width)

    def _graph_conv(self, f: Tensor) -> Tensor:
        """Node features (B, C, L) -> (B, C, L): k-NN graph, edge convolution, max over the neighbours."""
        batch, channels, length = f.shape
        if length != self.edge.out_features:
            raise ValueError(f"SCC module built for node features of {self.edge.out_features}, got {length}")
        k = min(self.k, channels)
        idx = knn_channels(f, k)  # (B, C, k)
        phi, omega = self.edge.weight[:, :length], self.edge.weight[:, length:]  # (L, L) each
        centre = f @ (phi - omega).t()  # (B, C, L): (phi - omega) . f_i
        neighbour = (f @ omega.t()).reshape(batch * channels, length)  # (B*C, L): omega . f_j
        flat_idx = idx + torch.arange(batch, device=f.device).view(batch, 1, 1) * channels  # (B, C, k)

        if self.training or torch.is_grad_enabled():
            # Memory: ReLU is monotone, so max_j ReLU(e_ij) = ReLU(max_j e_ij) and the ReLU runs on
            # (B, C, L); torch.max(dim) saves only its argmax for backward (amax would keep the whole
            # input), so autograd holds one (B, C, k, L) tensor: BN's input.
            edges = neighbour[flat_idx]  # (B, C, k, L)
            edges += centre[:, :, None, :]
            edges = self.bn(edges.reshape(-1, length)).reshape(batch, channels, k, length)
            out = F.relu(edges.max(dim=2).values)  # (B, C, L)
        else:
            out = self._chunked_eval(centre, neighbour, flat_idx)
        return out

    def _chunked_eval(self, centre: Tensor, neighbour: Tensor, flat_idx: Tensor) -> Tensor:
        """Inference without autograd: BN uses running statistics, so nodes are independent; walk them in
        chunks to bound the (B, chunk, k, L) buffer by INFERENCE_CHUNK_BYTES."""
        batch, channels, length = centre.shape
        k = flat_idx.shape[-1]
        per_node = batch * k * length * centre.element_size()
        step = max(1, INFERENCE_CHUNK_BYTES // per_node)
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)  # (L,)
        shift = self.bn.bias - self.bn.running_mean * scale  # (L,)
        out = centre.new_empty(batch, channels, length)
        for start in range(0, channels, step):
            stop = min(start + step, channels)
            edges = centre[:, start:stop, None, :] + neighbour[flat_idx[:, start:stop]]  # (B, c, k, L)
            out[:, start:stop] = F.relu((edges * scale + shift).amax(dim=2))
        return out


class SCCHead(nn.Module):
    """Three 4x4 stride-2 deconvolutions (BN + ReLU), each followed by an SCC module, then a 1x1 conv to
    the P heatmaps (one 1x1 filter bank per AU point). `scc` switches each level's SCC module off for the
    plain-heatmap ablation."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        map_sizes: Sequence[int],
        n_maps: int,
        k: int = 7,
        scc: Sequence[bool] = (True, True, True),
        nodes: str = "channels",
    ) -> None:
        super().__init__()
        if not len(channels) == len(map_sizes) == len(scc):
            raise ValueError("channels, map_sizes and scc need one entry per deconvolution level")
        deconvs, sccs = [], []
        for out_channels, size, use_scc in zip(channels, map_sizes, scc, strict=True):
            deconv = nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False
            )
            nn.init.normal_(deconv.weight, std=0.01)  # the reference's truncated_normal(0, 0.01)
            deconvs.append(nn.Sequential(deconv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)))
            sccs.append(SCCModule(size, k, nodes, out_channels) if use_scc else nn.Identity())
            in_channels = out_channels
        self.deconvs = nn.ModuleList(deconvs)
        self.sccs = nn.ModuleList(sccs)
        self.out = nn.Conv2d(in_channels, n_maps, kernel_size=1)
        # Small output weights, as in Xiao et al.'s simple-baseline heatmap head, not the reference's msra
        # initialiser: with msra the untrained maps vary by ~1 (intensity units) from image to image, the
        # first steps shrink that useless variation to ~0.01, and the network then sits on a plateau. From
        # scratch on 64 synthetic frames (SCC off), ICC after 100 Adam steps: msra -0.00, std 0.001: 0.88;
        # msra needed ~450 steps (docs/design_notes.md). ImageNet-initialised runs start the same way.
        nn.init.normal_(self.out.weight, std=0.001)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        for deconv, scc in zip(self.deconvs, self.sccs, strict=True):
            x = scc(deconv(x))  # (B, C_l, 2H, 2W)
        return self.out(x)  # (B, P, M, M)


class SCCNet(AUModel):
    """AAAI'20 network: (B, 3, S, S) mean-subtracted RGB -> (B, 2A, S/4, S/4) AU-point heatmaps."""

    def __init__(
        self,
        spec: ModelSpec,
        trunk: str = "resnet50",
        trunk_width: int = 64,
        head_channels: Sequence[int] = (256, 128, 64),
        scc: Sequence[bool] = (True, True, True),
        k: int = 7,
        nodes: str = "channels",
    ) -> None:
        super().__init__(spec)
        if spec.input_size % 32:
            raise ValueError(f"SCC input size must be a multiple of 32, not {spec.input_size}")
        self.trunk = ResNetTrunk(trunk, trunk_width)
        base = spec.input_size // 32
        sizes = [base * 2 ** (level + 1) for level in range(len(head_channels))]
        if sizes[-1] != spec.map_size:
            raise ValueError(
                f"{len(head_channels)} deconvolutions give {sizes[-1]}-pixel maps, need {spec.map_size}"
            )
        self.head = SCCHead(self.trunk.out_channels, head_channels, sizes, spec.n_maps, k, scc, nodes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))  # (B, P, S/4, S/4)
