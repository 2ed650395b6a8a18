"""What the TCAE embeddings are worth: AU occurrence probes and head-pose regression, with few labels.

The paper's claim (sec. 4) is that the AU embedding ``phi`` carries facial actions and the pose embedding
``psi`` carries head pose. Both halves are measured here on a labelled prepared cache, with
subject-exclusive folds (:func:`facskit.data.folds.subject_folds`), for several label fractions:

* ``linear``: logistic regression (scikit-learn, balanced classes, standardised features) per AU on the
  frozen ``phi``, the frozen ``psi`` and ``phi`` of a randomly initialised encoder of the same architecture
  (the baseline every self-supervised method must beat); F1 of occurrence (intensity >= 2).
* ``pose``: ridge regression of yaw / pitch / roll (the cache index's pose columns) from each embedding,
  R^2 on the held-out subjects; the pose embedding should win here. Two versions: absolute pose, and
  pose *within* each subject (pose and features minus the subject's mean, i.e. how well the embedding
  follows the head's motion). With a dozen subjects the absolute version mostly asks the regression to
  guess a new person's mean pose from their identity, which no embedding can do (every feature set,
  random ones included, scores R^2 < 0 on the synthetic set); the within-subject version is the one
  that separates the embeddings. The ridge penalty is chosen by subject-grouped cross-validation on the
  training subjects: leave-one-out over neighbouring video frames (RidgeCV's default) picks almost no
  penalty, which fits each training subject's identity and produced R^2 of -300 on held-out subjects.
* ``finetune`` (optional): the encoder's AU branch plus a linear head trained end to end with a
  class-balanced BCE, against the same network trained from scratch - the few-label regime where
  pretraining is supposed to pay off. ``finetune_head="linear"`` starts the head from the linear probe of
  the network's own frozen features (LP-FT, Kumar et al., ICLR 2022): a random head's first, large
  gradients otherwise rewrite the pretrained features before the head is any good, and with 1% labels (a
  few dozen frames) there is no data to win them back. Scratch is then reported both ways ("scratch",
  random head, and "scratch, linear head"), so the TCAE row has to beat the better of the two.

Training frames of a fold are subsampled to the label fraction (the same frames for every feature set);
test frames are always the whole held-out fold.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from facskit.models.tcae import TCAE
from facskit.tcae.pairs import CachePairDataset

__all__ = ["ProbeResult", "embed_cache", "format_probe_table", "run_probe"]

POSE = ("yaw", "pitch", "roll")
FINETUNE_HEADS = ("random", "linear")  # how fine-tuning starts its head (run_probe's finetune_head)
OCCURRENCE = 2.0  # intensity >= 2: the DISFA/BP4D occurrence protocol


@dataclass
class ProbeResult:
    """F1 per AU (``f1[features][fraction][AU] -> mean over folds``) and pose R^2 per feature set."""

    aus: list[str]
    fractions: list[float]
    folds: int
    f1: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    pose_r2: dict[str, dict[str, float]] = field(default_factory=dict)
    # the same, with pose and features centred per subject (the embedding following the head's motion)
    pose_r2_within: dict[str, dict[str, float]] = field(default_factory=dict)
    subject_norm: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "aus": self.aus,
            "fractions": self.fractions,
            "folds": self.folds,
            "f1": self.f1,
            "pose_r2": self.pose_r2,
            "pose_r2_within": self.pose_r2_within,
            "subject_norm": self.subject_norm,
            "notes": self.notes,
        }


@torch.no_grad()
def embed_cache(
    model: TCAE,
    images: CachePairDataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(phi (N, E), psi (N, E))`` float32 for every frame (or for ``rows``), BatchNorm in eval mode."""
    model = model.to(device).eval()
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    phis, psis = [], []
    for start in range(0, len(rows), batch_size):
        batch = torch.stack([images[int(i)] for i in rows[start : start + batch_size]])
        phi, psi = model.embed(batch.to(device))
        phis.append(phi.float().cpu().numpy())
        psis.append(psi.float().cpu().numpy())
    return np.concatenate(phis), np.concatenate(psis)


def _train_subset(train: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    if fraction >= 1.0:
        return train
    n = max(int(round(fraction * len(train))), 2)
    return np.sort(rng.choice(train, size=min(n, len(train)), replace=False))


def _draw_seed(seed: int, fold: int, fraction: float, draw: int) -> list[int]:
    """Seed of the labelled subset of one fold, fraction and draw; draw 0 keeps the single-draw seed, so
    ``label_draws=1`` reproduces earlier results exactly."""
    return [seed, fold, int(fraction * 1e6)] + ([draw] if draw else [])


def _linear_probe(x_train: np.ndarray, y_train: np.ndarray):
    """The linear probe of one AU, fitted: balanced logistic regression on standardised features (a
    scikit-learn pipeline: ``[0]`` the scaler, ``[-1]`` the classifier). ``y_train`` needs both classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    return classifier.fit(x_train, y_train)


def _linear_f1(x_train, y_train, x_test, y_test) -> float:
    """F1 of :func:`_linear_probe` on the test rows; NaN when the train split has one class."""
    from facskit.metrics import f1

    if len(np.unique(y_train)) < 2:
        return float("nan")
    predicted = _linear_probe(x_train, y_train).predict(x_test)
    return f1(predicted.astype(float), y_test.astype(float), threshold=0.5)


RIDGE_ALPHAS = np.logspace(-2, 5, 8)  # ridge penalties tried for the pose regression (standardised features)


def centre_by_subject(x: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """``x (N, D)`` minus each subject's mean row (labels are not needed: it works on unlabelled frames)."""
    out = np.array(x, dtype=np.float64, copy=True)
    for subject in np.unique(subjects):
        rows = subjects == subject
        out[rows] -= out[rows].mean(axis=0)
    return out


def _pose_r2(x_train, y_train, x_test, y_test, groups_train) -> list[float]:
    """R^2 per pose column on the test rows; the ridge penalty is chosen by subject-grouped CV.

    ``groups_train`` are the training rows' subjects: the penalty maximising the mean R^2 over held-out
    training subjects (3 groups) is refitted on all training rows.
    """
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(alpha: float, rows: np.ndarray):
        return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_train[rows], y_train[rows])

    unique = np.unique(groups_train)
    best_alpha = float(RIDGE_ALPHAS[-1])  # the strongest penalty when there are too few subjects to choose
    with warnings.catch_warnings():  # the smallest penalties on near-constant features are ill-conditioned
        warnings.simplefilter("ignore", category=LinAlgWarning)
        best_alpha = _grouped_alpha(fit, x_train, y_train, groups_train, unique, best_alpha)
        predicted = fit(best_alpha, np.arange(len(x_train))).predict(x_test)
    return [float(r2_score(y_test[:, k], predicted[:, k])) for k in range(y_test.shape[1])]


def _grouped_alpha(fit, x_train, y_train, groups_train, unique, default: float) -> float:
    """The ridge penalty with the best mean R^2 over 3 groups of held-out training subjects."""
    from sklearn.metrics import r2_score

    best_alpha = default
    if len(unique) >= 2:
        parts = np.array_split(unique, min(3, len(unique)))
        scores = []
        for alpha in RIDGE_ALPHAS:
            fold_scores = []
            for part in parts:
                held = np.isin(groups_train, part)
                predicted = fit(alpha, ~held).predict(x_train[held])
                fold_scores.append(r2_score(y_train[held], predicted))
            scores.append(np.mean(fold_scores))
        best_alpha = float(RIDGE_ALPHAS[int(np.argmax(scores))])
    return best_alpha


class _AUClassifier(torch.nn.Module):
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


def _fit_linear_head(head: torch.nn.Linear, x: np.ndarray, labels: np.ndarray) -> None:
    """Set ``head`` to the per-AU linear probes (:func:`_linear_probe`) of the features ``x (N, E)`` with
    ``labels (N, A)`` (NaN = unknown), mapped back from standardised to raw features. An AU with one class
    among its known labels gets a zero weight and a bias of +-10 that predicts that class (what the linear
    probe cannot fit either)."""
    weight = np.zeros((labels.shape[1], x.shape[1]), dtype=np.float64)
    bias = np.zeros(labels.shape[1], dtype=np.float64)
    for a in range(labels.shape[1]):
        known = ~np.isnan(labels[:, a])
        y = labels[known, a]
        if len(np.unique(y)) < 2:
            bias[a] = 10.0 if len(y) and y[0] == 1 else -10.0
            continue
        probe = _linear_probe(x[known], y)
        scaler, classifier = probe[0], probe[-1]
        coef = classifier.coef_[0] / scaler.scale_
        weight[a] = coef
        bias[a] = classifier.intercept_[0] - coef @ scaler.mean_
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))


def _finetune_f1(
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
    ``head``: "random" (PyTorch's init) or "linear" (:func:`_fit_linear_head` on the frozen phi of the
    ``train`` rows, eval-mode BatchNorm: LP-FT).
    """
    from facskit.metrics import f1

    torch.manual_seed(seed)
    net = _AUClassifier(model, labels.shape[1]).to(device)
    if head == "linear":
        phi, _ = embed_cache(model, images, device=device, rows=train)  # the net's trunk + AU branch
        _fit_linear_head(net.head, phi, labels[train])
    elif head not in FINETUNE_HEADS:
        raise ValueError(f"finetune head must be one of {', '.join(FINETUNE_HEADS)}, got {head!r}")
    known = ~np.isnan(labels)
    y = np.nan_to_num(labels).astype(np.float32)
    positives = (y[train] * known[train]).sum(0)
    negatives = ((1 - y[train]) * known[train]).sum(0)
    pos_weight = torch.tensor(np.clip(negatives / np.maximum(positives, 1), 1.0, 50.0), dtype=torch.float32)
    optimizer = torch.optim.Adam(
        [
            {"params": [*net.trunk.parameters(), *net.branch.parameters()], "lr": lr},
            {"params": net.head.parameters(), "lr": lr * 10},
        ]
    )
    rng = np.random.default_rng(seed)
    steps = max(1, min_steps, epochs * math.ceil(len(train) / batch_size))
    net.train()
    for step in range(steps):
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
        del step
    net.eval()
    with torch.no_grad():
        logits = torch.cat(
            [
                net(torch.stack([images[int(i)] for i in test[s : s + 256]]).to(device)).cpu()
                for s in range(0, len(test), 256)
            ]
        ).numpy()
    return [
        f1((logits[:, a] > 0).astype(float), labels[test, a], threshold=0.5)
        if positives[a] > 0
        else float("nan")
        for a in range(labels.shape[1])
    ]


def run_probe(
    model: TCAE,
    cache,
    folds: int = 3,
    fractions: Sequence[float] = (1.0,),
    finetune: bool = False,
    finetune_epochs: int = 3,
    finetune_lr: float = 1e-4,
    finetune_min_steps: int = 200,
    finetune_head: str = "linear",
    subject_norm: bool = False,
    label_draws: int = 1,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log=print,
) -> ProbeResult:
    """Probe ``model`` on a labelled prepared cache; see the module docstring for what is measured."""
    from facskit.aus import au_column
    from facskit.data.folds import subject_folds

    if label_draws < 1:
        raise ValueError(f"label_draws must be >= 1, got {label_draws}")
    if finetune_head not in FINETUNE_HEADS:  # before the embedding, not after it
        raise ValueError(f"finetune head must be one of {', '.join(FINETUNE_HEADS)}, got {finetune_head!r}")
    device = torch.device(device)
    images = CachePairDataset(cache, model.spec.input_size, preload=True)
    subjects = cache.index["subject"].astype(str).to_numpy()
    intensities = np.stack([cache[i]["intensities"] for i in range(len(cache))]).astype(np.float64)  # (N, A)
    labels = np.where(np.isnan(intensities), np.nan, (intensities >= OCCURRENCE).astype(np.float64))
    aus = [au_column(a) for a in cache.aus]
    has_pose = all(c in cache.index.columns for c in POSE) and cache.index[list(POSE)].notna().all().all()
    pose = cache.index[list(POSE)].to_numpy(np.float64) if has_pose else None

    log(f"embedding {len(images)} frames")
    phi, psi = embed_cache(model, images, device=device)
    torch.manual_seed(seed)
    random_model = TCAE(model.spec)
    random_phi, random_psi = embed_cache(random_model, images, device=device)
    features = {"tcae_au (phi)": phi, "tcae_pose (psi)": psi, "random_au (phi)": random_phi}
    pose_features = {**features, "random_pose (psi)": random_psi}
    centred = {name: centre_by_subject(x, subjects) for name, x in pose_features.items()}
    if subject_norm:  # the linear AU probe on features minus each subject's mean (unlabelled frames)
        features = {name: centred[name] for name in features}

    result = ProbeResult(
        aus=aus, fractions=[float(f) for f in fractions], folds=folds, subject_norm=subject_norm
    )
    if not has_pose:
        result.notes.append("no yaw/pitch/roll columns in the cache index: pose R^2 not measured")
    if label_draws > 1:
        result.notes.append(
            f"label fractions below 1: mean over {folds} folds x {label_draws} draws of the labelled frames"
        )
    if finetune:
        result.notes.append(
            f"fine-tuning: {finetune_head} head, lr {finetune_lr:g} (head x10), "
            f"max({finetune_epochs} epochs, {finetune_min_steps} steps)"
        )
    split = subject_folds(subjects, k=folds, seed=seed)
    per_fold: dict[tuple[str, float], list[list[float]]] = {}
    pose_fold: dict[str, list[list[float]]] = {}
    pose_within_fold: dict[str, list[list[float]]] = {}
    pose_centred = centre_by_subject(pose, subjects) if pose is not None else None
    for k, held_out in enumerate(split):
        test = np.flatnonzero(np.isin(subjects, held_out))
        train_all = np.flatnonzero(~np.isin(subjects, held_out))
        for fraction in fractions:
            # below 1, several draws of the labelled frames per fold (each draw is one more row to average)
            for draw in range(label_draws if fraction < 1 else 1):
                train = _train_subset(
                    train_all, fraction, np.random.default_rng(_draw_seed(seed, k, fraction, draw))
                )
                for name, x in features.items():
                    scores = []
                    for a in range(len(aus)):
                        tr = train[~np.isnan(labels[train, a])]
                        te = test[~np.isnan(labels[test, a])]
                        scores.append(_linear_f1(x[tr], labels[tr, a], x[te], labels[te, a]))
                    per_fold.setdefault((f"linear {name}", fraction), []).append(scores)
                if finetune:
                    # scratch always with a random head (the usual baseline); with LP-FT also as the TCAE row
                    runs = [("finetune tcae", model, finetune_head), ("scratch", None, "random")]
                    if finetune_head == "linear":
                        runs.append(("scratch, linear head", None, "linear"))
                    for name, init, head in runs:
                        if init is None:
                            torch.manual_seed(seed + 1)
                            net_model = TCAE(model.spec)
                        else:
                            net_model = TCAE(model.spec)
                            net_model.load_state_dict(model.state_dict())
                        scores = _finetune_f1(
                            net_model,
                            images,
                            labels,
                            train,
                            test,
                            finetune_epochs,
                            batch_size,
                            finetune_lr,
                            seed,
                            device,
                            finetune_min_steps,
                            head,
                        )
                        per_fold.setdefault((name, fraction), []).append(scores)
            log(f"fold {k + 1}/{folds}, label fraction {fraction:g}: done")
        if pose is not None:
            groups = subjects[train_all]
            for name, x in pose_features.items():
                pose_fold.setdefault(name, []).append(
                    _pose_r2(x[train_all], pose[train_all], x[test], pose[test], groups)
                )
                xc = centred[name]
                pose_within_fold.setdefault(name, []).append(
                    _pose_r2(xc[train_all], pose_centred[train_all], xc[test], pose_centred[test], groups)
                )

    for (name, fraction), rows in per_fold.items():
        with warnings.catch_warnings():  # an AU with no positives in any fold stays NaN, said in the table
            warnings.simplefilter("ignore", category=RuntimeWarning)
            mean = np.nanmean(np.array(rows, dtype=np.float64), axis=0) if rows else []
        entry = {au: float(v) for au, v in zip(aus, mean, strict=True)}
        entry["mean"] = float(np.nanmean(mean)) if np.isfinite(mean).any() else float("nan")
        result.f1.setdefault(name, {})[f"{fraction:g}"] = entry
    for target, by_name in ((result.pose_r2, pose_fold), (result.pose_r2_within, pose_within_fold)):
        for name, rows in by_name.items():
            mean = np.mean(np.array(rows), axis=0)
            target[name] = {
                **{p: float(v) for p, v in zip(POSE, mean, strict=True)},
                "mean": float(mean.mean()),
            }
    return result


def format_probe_table(result: ProbeResult) -> str:
    """Markdown: one F1 table (rows: features x label fraction) and the pose R^2 tables."""
    head = ["features", "labels", *result.aus, "mean F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, by_fraction in result.f1.items():
        for fraction, entry in by_fraction.items():
            cells = [f"{entry[a]:.3f}" if math.isfinite(entry[a]) else "n/a" for a in result.aus]
            mean = f"{entry['mean']:.3f}" if math.isfinite(entry["mean"]) else "n/a"
            lines.append(f"| {name} | {float(fraction):.0%} | " + " | ".join(cells) + f" | **{mean}** |")
    norm = ", linear probes on subject-centred features" if result.subject_norm else ""
    text = (
        f"AU occurrence F1 (intensity >= 2), {result.folds}-fold subject-exclusive CV{norm}\n\n"
        + "\n".join(lines)
    )
    for title, table in (
        ("Head pose from the embedding (ridge regression, R^2 on held-out subjects)", result.pose_r2),
        (
            "Head pose within each subject (pose and features minus the subject's mean; R^2 on held-out "
            "subjects)",
            result.pose_r2_within,
        ),
    ):
        if not table:
            continue
        rows = ["| features | " + " | ".join(POSE) + " | mean R^2 |", "|---|---|---|---|---|"]
        for name, entry in table.items():
            rows.append(
                f"| {name} | " + " | ".join(f"{entry[p]:.3f}" for p in POSE) + f" | **{entry['mean']:.3f}** |"
            )
        text += f"\n\n{title}\n\n" + "\n".join(rows)
    for note in result.notes:
        text += f"\n\nNote: {note}"
    return text
