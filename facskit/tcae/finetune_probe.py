"""The fine-tuning probe: the encoder's AU path plus a linear head, trained end to end on few labels.

This is where pretraining is supposed to pay off, so :func:`finetune_f1` trains a pretrained and a
scratch network the same way. ``head="linear"`` starts the head from the linear probe of the network's own
frozen features (LP-FT, Kumar et al., ICLR 2022): a random head's first, large gradients otherwise rewrite
the pretrained features before the head is any good, and with 1% labels (a few dozen frames) there is no
data to win them back.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from facskit.models.tcae import TCAE
from facskit.tcae.embedding import embed_cache
from facskit.tcae.frozen_probes import linear_probe
from facskit.tcae.pairs import CachePairDataset

FINETUNE_HEADS = ("random", "linear")  # how fine-tuning starts its head (run_probe's finetune_head)
POS_WEIGHT_RANGE = (1.0, 50.0)  # clip of the per-AU positive weight (negatives / positives) of the BCE
HEAD_LR_FACTOR = 10  # the head learns this much faster than the pretrained layers


class AUClassifier(torch.nn.Module):
    """The TCAE encoder's AU path (trunk + AU branch) and a linear occurrence head."""

    def __init__(self, model: TCAE, n_aus: int) -> None:
        super().__init__()
        self.trunk = model.encoder.trunk
        self.branch = model.encoder.au_branch
        self.head = torch.nn.Linear(model.spec.embedding_size, n_aus)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(self.trunk(x)).flatten(1)  # (B, E): phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, A) logits


def fit_linear_head(head: torch.nn.Linear, x: np.ndarray, labels: np.ndarray) -> None:
    """Set ``head`` to the per-AU linear probes (:func:`~facskit.tcae.frozen_probes.linear_probe`) of the
    features ``x (N, E)`` with ``labels (N, A)`` (NaN = unknown), mapped back from standardised to raw
    features. An AU with one class among its known labels gets a zero weight and a bias of +-10 that
    predicts that class (what the linear probe cannot fit either)."""
    weight = np.zeros((labels.shape[1], x.shape[1]), dtype=np.float64)
    bias = np.zeros(labels.shape[1], dtype=np.float64)
    for a in range(labels.shape[1]):
        known = ~np.isnan(labels[:, a])
        y = labels[known, a]
        if len(np.unique(y)) < 2:
            bias[a] = 10.0 if len(y) and y[0] == 1 else -10.0
            continue
        probe = linear_probe(x[known], y)
        scaler, classifier = probe[0], probe[-1]
        coef = classifier.coef_[0] / scaler.scale_
        weight[a] = coef
        bias[a] = classifier.intercept_[0] - coef @ scaler.mean_
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))


def finetune_f1(
    model: TCAE,
    images: CachePairDataset,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    min_steps: int = 0,
    head: str = "random",
) -> list[float]:
    """End-to-end training of the AU path + head with a class-balanced BCE; F1 per AU on ``test``.

    Runs ``epochs`` passes over ``train`` but at least ``min_steps`` steps: at 1% labels an "epoch" is a
    single batch, and 3 steps leave both the pretrained and the scratch network where they started.
    ``head``: "random" (PyTorch's init) or "linear" (:func:`fit_linear_head` on the frozen phi of the
    ``train`` rows, eval-mode BatchNorm: LP-FT).
    """
    from facskit.metrics import f1

    torch.manual_seed(seed)
    net = AUClassifier(model, labels.shape[1]).to(device)
    if head == "linear":
        phi, _ = embed_cache(model, images, device=device, rows=train)  # the net's trunk + AU branch
        fit_linear_head(net.head, phi, labels[train])
    elif head not in FINETUNE_HEADS:
        raise ValueError(f"finetune head must be one of {', '.join(FINETUNE_HEADS)}, got {head!r}")
    known = ~np.isnan(labels)
    y = np.nan_to_num(labels).astype(np.float32)
    positives = (y[train] * known[train]).sum(0)
    negatives = ((1 - y[train]) * known[train]).sum(0)
    pos_weight = torch.tensor(
        np.clip(negatives / np.maximum(positives, 1), *POS_WEIGHT_RANGE), dtype=torch.float32
    )
    steps = max(1, min_steps, epochs * math.ceil(len(train) / batch_size))
    _train(net, images, y, known, train, steps, batch_size, lr, pos_weight, seed, device)
    logits = _test_logits(net, images, test, device)
    return [
        f1((logits[:, a] > 0).astype(float), labels[test, a], threshold=0.5)
        if positives[a] > 0
        else float("nan")
        for a in range(labels.shape[1])
    ]


def _train(
    net: AUClassifier,
    images: CachePairDataset,
    y: np.ndarray,
    known: np.ndarray,
    train: np.ndarray,
    steps: int,
    batch_size: int,
    lr: float,
    pos_weight: torch.Tensor,
    seed: int,
    device: torch.device,
) -> None:
    """``steps`` Adam steps on random batches of the ``train`` rows; unknown labels (``known`` False) are
    masked out of the loss."""
    optimizer = torch.optim.Adam(
        [
            {"params": [*net.trunk.parameters(), *net.branch.parameters()], "lr": lr},
            {"params": net.head.parameters(), "lr": lr * HEAD_LR_FACTOR},
        ]
    )
    rng = np.random.default_rng(seed)
    net.train()
    for _ in range(steps):
        idx = rng.choice(train, size=min(batch_size, len(train)), replace=False)
        x = torch.stack([images[int(i)] for i in idx]).to(device)
        target = torch.from_numpy(y[idx]).to(device)
        mask = torch.from_numpy(known[idx].astype(np.float32)).to(device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(x), target, pos_weight=pos_weight.to(device), reduction="none"
        )
        loss = (loss * mask).sum() / mask.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def _test_logits(
    net: AUClassifier, images: CachePairDataset, test: np.ndarray, device: torch.device
) -> np.ndarray:
    """The trained network's logits (len(test), A) on the ``test`` rows, BatchNorm in eval mode."""
    net.eval()
    return torch.cat(
        [
            net(torch.stack([images[int(i)] for i in test[s : s + 256]]).to(device)).cpu()
            for s in range(0, len(test), 256)
        ]
    ).numpy()
