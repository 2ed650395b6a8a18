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

This module runs the protocol (:func:`run_probe`) and formats it; the probes themselves are
:mod:`facskit.tcae.frozen_probes` (linear and pose) and :mod:`facskit.tcae.finetune_probe` (fine-tuning),
the embeddings :mod:`facskit.tcae.embedding`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from facskit.models.tcae import TCAE
from facskit.tcae.embedding import embed_cache
from facskit.tcae.finetune_probe import FINETUNE_HEADS, AUClassifier, finetune_f1, fit_linear_head
from facskit.tcae.frozen_probes import RIDGE_ALPHAS, centre_by_subject, linear_f1, pose_r2
from facskit.tcae.pairs import CachePairDataset

__all__ = [
    "FINETUNE_HEADS",
    "RIDGE_ALPHAS",
    "ProbeResult",
    "centre_by_subject",
    "embed_cache",
    "format_probe_table",
    "run_probe",
]

POSE = ("yaw", "pitch", "roll")
OCCURRENCE = 2.0  # intensity >= 2: the DISFA/BP4D occurrence protocol

# The probes' earlier private names, still importable from here (tests use them).
_pose_r2 = pose_r2
_AUClassifier = AUClassifier
_fit_linear_head = fit_linear_head


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


@dataclass(frozen=True)
class _Finetune:
    """How the fine-tuning rows are trained (run_probe's ``finetune_*`` and ``batch_size``)."""

    epochs: int
    lr: float
    min_steps: int
    head: str
    batch_size: int

    def note(self) -> str:
        return (
            f"fine-tuning: {self.head} head, lr {self.lr:g} (head x10), "
            f"max({self.epochs} epochs, {self.min_steps} steps)"
        )


@dataclass(frozen=True, eq=False)
class _Labelled:
    """What the probes read from the cache: images, subjects, occurrence labels and (if any) pose."""

    images: CachePairDataset
    subjects: np.ndarray  # (N,) str
    labels: np.ndarray  # (N, A) occurrence 0/1, NaN = unknown
    aus: list[str]  # AU column names
    pose: np.ndarray | None  # (N, 3) yaw, pitch, roll; None when the index has no complete pose


@dataclass
class _FoldScores:
    """Scores of every fold (and label draw), before averaging: one list of per-AU or per-angle values
    per fold, keyed by feature set (and label fraction)."""

    f1: dict[tuple[str, float], list[list[float]]] = field(default_factory=dict)
    pose: dict[str, list[list[float]]] = field(default_factory=dict)
    pose_within: dict[str, list[list[float]]] = field(default_factory=dict)


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
    log: Callable[[str], None] = print,
) -> ProbeResult:
    """Probe ``model`` on a labelled prepared cache; see the module docstring for what is measured."""
    from facskit.data.folds import subject_folds

    if label_draws < 1:
        raise ValueError(f"label_draws must be >= 1, got {label_draws}")
    if finetune_head not in FINETUNE_HEADS:  # before the embedding, not after it
        raise ValueError(f"finetune head must be one of {', '.join(FINETUNE_HEADS)}, got {finetune_head!r}")
    device = torch.device(device)
    settings = _Finetune(finetune_epochs, finetune_lr, finetune_min_steps, finetune_head, batch_size)
    data = _read_labelled(cache, model.spec.input_size)
    log(f"embedding {len(data.images)} frames")
    features, pose_features, centred = _feature_sets(model, data, seed, device, subject_norm)
    result = ProbeResult(
        aus=data.aus, fractions=[float(f) for f in fractions], folds=folds, subject_norm=subject_norm
    )
    if data.pose is None:
        result.notes.append("no yaw/pitch/roll columns in the cache index: pose R^2 not measured")
    if label_draws > 1:
        result.notes.append(
            f"label fractions below 1: mean over {folds} folds x {label_draws} draws of the labelled frames"
        )
    if finetune:
        result.notes.append(settings.note())
    scores = _FoldScores()
    pose_centred = centre_by_subject(data.pose, data.subjects) if data.pose is not None else None
    for k, held_out in enumerate(subject_folds(data.subjects, k=folds, seed=seed)):
        test = np.flatnonzero(np.isin(data.subjects, held_out))
        train_all = np.flatnonzero(~np.isin(data.subjects, held_out))
        for fraction in fractions:
            # below 1, several draws of the labelled frames per fold (each draw is one more row to average)
            for draw in range(label_draws if fraction < 1 else 1):
                train = _train_subset(
                    train_all, fraction, np.random.default_rng(_draw_seed(seed, k, fraction, draw))
                )
                for name, x in features.items():
                    scores.f1.setdefault((f"linear {name}", fraction), []).append(
                        _linear_scores(x, data.labels, train, test)
                    )
                if finetune:
                    for name, f1s in _finetune_scores(model, data, train, test, settings, seed, device):
                        scores.f1.setdefault((name, fraction), []).append(f1s)
            log(f"fold {k + 1}/{folds}, label fraction {fraction:g}: done")
        if data.pose is not None:
            _score_pose(scores, pose_features, centred, data, pose_centred, train_all, test)
    _average_into(result, scores)
    return result


def _read_labelled(cache, input_size: int) -> _Labelled:
    """The cache's images at the model's input size (preloaded), subjects, occurrence labels and pose."""
    from facskit.aus import au_column

    images = CachePairDataset(cache, input_size, preload=True)
    subjects = cache.index["subject"].astype(str).to_numpy()
    intensities = np.stack([cache[i]["intensities"] for i in range(len(cache))]).astype(np.float64)  # (N, A)
    labels = np.where(np.isnan(intensities), np.nan, (intensities >= OCCURRENCE).astype(np.float64))
    aus = [au_column(a) for a in cache.aus]
    has_pose = all(c in cache.index.columns for c in POSE) and cache.index[list(POSE)].notna().all().all()
    pose = cache.index[list(POSE)].to_numpy(np.float64) if has_pose else None
    return _Labelled(images, subjects, labels, aus, pose)


def _feature_sets(
    model: TCAE, data: _Labelled, seed: int, device: torch.device, subject_norm: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The feature sets: for the AU probes, for the pose probes, and the latter centred per subject.

    The trained ``phi`` and ``psi`` and the ``phi`` (and, for pose, ``psi``) of a randomly initialised
    network of the same architecture (seeded with ``seed``), the baseline pretraining must beat. With
    ``subject_norm`` the AU probes get the subject-centred features too.
    """
    phi, psi = embed_cache(model, data.images, device=device)
    torch.manual_seed(seed)
    random_model = TCAE(model.spec)
    random_phi, random_psi = embed_cache(random_model, data.images, device=device)
    features = {"tcae_au (phi)": phi, "tcae_pose (psi)": psi, "random_au (phi)": random_phi}
    pose_features = {**features, "random_pose (psi)": random_psi}
    centred = {name: centre_by_subject(x, data.subjects) for name, x in pose_features.items()}
    if subject_norm:  # the linear AU probe on features minus each subject's mean (unlabelled frames)
        features = {name: centred[name] for name in features}
    return features, pose_features, centred


def _train_subset(train: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    if fraction >= 1.0:
        return train
    n = max(int(round(fraction * len(train))), 2)
    return np.sort(rng.choice(train, size=min(n, len(train)), replace=False))


def _draw_seed(seed: int, fold: int, fraction: float, draw: int) -> list[int]:
    """Seed of the labelled subset of one fold, fraction and draw; draw 0 keeps the single-draw seed, so
    ``label_draws=1`` reproduces earlier results exactly."""
    return [seed, fold, int(fraction * 1e6)] + ([draw] if draw else [])


def _linear_scores(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> list[float]:
    """F1 per AU of the linear probe of features ``x``, each AU on the rows where it is labelled."""
    scores = []
    for a in range(labels.shape[1]):
        tr = train[~np.isnan(labels[train, a])]
        te = test[~np.isnan(labels[test, a])]
        scores.append(linear_f1(x[tr], labels[tr, a], x[te], labels[te, a]))
    return scores


def _finetune_scores(
    model: TCAE,
    data: _Labelled,
    train: np.ndarray,
    test: np.ndarray,
    settings: _Finetune,
    seed: int,
    device: torch.device,
) -> list[tuple[str, list[float]]]:
    """F1 per AU of each fine-tuning row: the trained network, and the same architecture from scratch.

    Scratch always runs with a random head (the usual baseline); with LP-FT (``head="linear"``) also with a
    linear head, as the TCAE row has, so that the TCAE row must beat the better of the two.
    """
    runs = [("finetune tcae", model, settings.head), ("scratch", None, "random")]
    if settings.head == "linear":
        runs.append(("scratch, linear head", None, "linear"))
    results = []
    for name, init, head in runs:
        if init is None:
            torch.manual_seed(seed + 1)
            net_model = TCAE(model.spec)
        else:
            net_model = TCAE(model.spec)
            net_model.load_state_dict(init.state_dict())
        scores = finetune_f1(
            net_model,
            data.images,
            data.labels,
            train,
            test,
            settings.epochs,
            settings.batch_size,
            settings.lr,
            seed,
            device,
            settings.min_steps,
            head,
        )
        results.append((name, scores))
    return results


def _score_pose(
    scores: _FoldScores,
    pose_features: dict[str, np.ndarray],
    centred: dict[str, np.ndarray],
    data: _Labelled,
    pose_centred: np.ndarray,
    train_all: np.ndarray,
    test: np.ndarray,
) -> None:
    """Pose R^2 of one fold for every feature set, absolute and within subject, into ``scores``."""
    pose = data.pose
    groups = data.subjects[train_all]
    for name, x in pose_features.items():
        scores.pose.setdefault(name, []).append(
            pose_r2(x[train_all], pose[train_all], x[test], pose[test], groups)
        )
        xc = centred[name]
        scores.pose_within.setdefault(name, []).append(
            pose_r2(xc[train_all], pose_centred[train_all], xc[test], pose_centred[test], groups)
        )


def _average_into(result: ProbeResult, scores: _FoldScores) -> None:
    """Means over folds (and draws) into ``result``: F1 per AU and its mean; R^2 per angle and its mean."""
    for (name, fraction), rows in scores.f1.items():
        with warnings.catch_warnings():  # an AU with no positives in any fold stays NaN, said in the table
            warnings.simplefilter("ignore", category=RuntimeWarning)
            mean = np.nanmean(np.array(rows, dtype=np.float64), axis=0) if rows else []
        entry = {au: float(v) for au, v in zip(result.aus, mean, strict=True)}
        entry["mean"] = float(np.nanmean(mean)) if np.isfinite(mean).any() else float("nan")
        result.f1.setdefault(name, {})[f"{fraction:g}"] = entry
    for target, by_name in ((result.pose_r2, scores.pose), (result.pose_r2_within, scores.pose_within)):
        for name, rows in by_name.items():
            mean = np.mean(np.array(rows), axis=0)
            target[name] = {
                **{p: float(v) for p, v in zip(POSE, mean, strict=True)},
                "mean": float(mean.mean()),
            }


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
