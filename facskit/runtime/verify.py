"""Check an ONNX export against PyTorch: the same heatmaps, on random inputs and on real aligned faces.

``facskit export`` runs it after every export; a gap over :data:`VERIFY_TOLERANCE` means a broken export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from facskit.models.spec import AUModel, ModelSpec

# Heatmaps peak at up to ~5; fp32 runtimes agree to ~1e-5 of that. A larger gap means a broken export.
VERIFY_TOLERANCE = 1e-3


def verify_onnx(
    model: AUModel, path: Path | str, crops: np.ndarray | None = None, n_random: int = 4, seed: int = 0
) -> dict[str, float]:
    """Max absolute heatmap difference between PyTorch and ONNX Runtime.

    Returns ``{"random": diff on n_random random inputs}`` plus ``{"real": diff}`` when aligned uint8
    crops (B, S, S, 3) are given (these exercise the value range real faces produce). Batch sizes 1 and
    ``n_random`` are both run so that the dynamic batch axis is checked too.
    """
    import torch

    from facskit.models.spec import preprocess
    from facskit.runtime.backends import OnnxBackend

    spec = model.spec
    backend = OnnxBackend(path)
    model = model.eval().cpu()
    rng = np.random.default_rng(seed)
    report: dict[str, float] = {}
    random_crops = rng.integers(0, 256, size=(n_random, spec.crop_size, spec.crop_size, 3), dtype=np.uint8)
    for label, batch in (("random", random_crops), ("real", crops)):
        if batch is None or not len(batch):
            continue
        with torch.inference_mode():
            expected = model(preprocess(batch, spec)).numpy()  # (B, P, h, w)
        got = (
            np.concatenate([backend.heatmaps(batch[:1]), backend.heatmaps(batch[1:])])
            if len(batch) > 1
            else (backend.heatmaps(batch))
        )
        report[label] = float(np.abs(expected - got).max())
    return report


def real_crops(paths: list[str], spec: ModelSpec, limit: int = 8) -> np.ndarray:
    """Aligned crops of the faces found in ``paths`` (images or videos, first frames), for verification."""
    from facskit.align import AlignSpec, align_faces
    from facskit.faces.shared import shared_front_end
    from facskit.io import iter_media

    align_spec = AlignSpec(kind=spec.alignment, size=spec.crop_size)  # type: ignore[arg-type]
    front = shared_front_end(5)
    crops: list[np.ndarray] = []
    for media in iter_media(paths):
        for n, (frame, faces) in enumerate(front.iter_faces(media)):
            landmarks = [f.landmarks for f in faces if f.success]
            if landmarks:
                batch, _, _ = align_faces(frame.image, np.stack(landmarks), align_spec)
                crops.extend(batch)
            if len(crops) >= limit or n >= 30:
                break
        if len(crops) >= limit:
            break
    size = spec.crop_size
    return np.stack(crops[:limit]) if crops else np.zeros((0, size, size, 3), np.uint8)
