"""Export an AU model to ONNX and run it with ONNX Runtime.

The exported graph is the network only (normalised input ``(B, 3, S, S)`` -> heatmaps ``(B, P, h, w)``)
with a dynamic batch axis; pre-processing and the readout stay in :mod:`facskit.models.spec`, so the ONNX
path cannot drift from the PyTorch one. The model's ``ModelSpec`` is stored in the ONNX metadata
(``facskit.spec``), which makes an ``.onnx`` file enough to analyse with (``--model model.onnx``).
Every export is verified against PyTorch on random inputs and, when given, real aligned crops.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facskit.errors import CheckpointError, FacskitError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.spec import AUModel, ModelSpec

SPEC_KEY = "facskit.spec"
VERSION_KEY = "facskit.version"
DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"
# Heatmaps peak at up to ~5; fp32 runtimes agree to ~1e-5 of that. A larger gap means a broken export.
VERIFY_TOLERANCE = 1e-3


def export_onnx(model: AUModel, path: Path | str, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` to ``path`` as ONNX (opset >= 17, dynamic batch), spec in the metadata; atomic."""
    import onnx
    import torch

    import facskit

    if opset < 17:
        raise UsageError(f"opset must be >= 17, not {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    was_training = model.training
    model = model.eval().cpu()
    example = torch.zeros(1, 3, spec.input_size, spec.input_size)  # (1, 3, S, S)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        for key, value in ((SPEC_KEY, json.dumps(spec.to_dict())), (VERSION_KEY, facskit.__version__)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except OSError as error:
        raise FacskitError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path


def read_onnx_spec(path: Path | str) -> ModelSpec:
    """The ``ModelSpec`` stored in an ONNX file written by :func:`export_onnx`."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises its own DecodeError types
        raise CheckpointError(f"{path}: not a readable ONNX file ({error})") from None
    return spec_from_metadata({p.key: p.value for p in proto.metadata_props}, path)


def spec_from_metadata(metadata: dict[str, str], path: Path | str) -> ModelSpec:
    """The ``ModelSpec`` in an ONNX file's metadata (from ``onnx`` or from an ONNX Runtime session)."""
    from facskit.models.spec import ModelSpec

    if SPEC_KEY not in metadata:
        raise CheckpointError(
            f"{path}: no facskit model spec in the ONNX metadata; export it with `facskit export`"
        )
    return ModelSpec.from_dict(json.loads(metadata[SPEC_KEY]))


def cache_dir() -> Path:
    """Where exported models are cached: ``$FACSKIT_CACHE`` or ``$XDG_CACHE_HOME/facskit`` (~/.cache)."""
    root = os.environ.get("FACSKIT_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facskit"


def cached_onnx_path(model: AUModel, weights_hash: str | None = None) -> Path:
    """The ONNX export of ``model``, created on first use and keyed by a hash of its weights."""
    if weights_hash is None:
        from facskit.analyze.detector import _weights_hash

        weights_hash = _weights_hash(model)
    path = cache_dir() / "onnx" / f"{model.spec.name}-{weights_hash}.onnx"
    if not path.is_file():
        export_onnx(model, path)
    return path


def verify_onnx(
    model: AUModel, path: Path | str, crops: np.ndarray | None = None, n_random: int = 4, seed: int = 0
) -> dict[str, float]:
    """Max absolute heatmap difference between PyTorch and ONNX Runtime.

    Returns ``{"random": diff on n_random random inputs}`` plus ``{"real": diff}`` when aligned uint8
    crops (B, S, S, 3) are given (these exercise the value range real faces produce). Batch sizes 1 and
    ``n_random`` are both run so that the dynamic batch axis is checked too.
    """
    import torch

    from facskit.analyze.backends import OnnxBackend
    from facskit.models.spec import preprocess

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
    from facskit.analyze.detector import shared_front_end
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
