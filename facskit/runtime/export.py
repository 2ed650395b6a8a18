"""Export an AU model to ONNX and run it with ONNX Runtime.

The exported graph is the network only (normalised input ``(B, 3, S, S)`` -> heatmaps ``(B, P, h, w)``)
with a dynamic batch axis; pre-processing and the readout stay in :mod:`facskit.models.spec`, so the ONNX
path cannot drift from the PyTorch one. The model's ``ModelSpec`` is stored in the ONNX metadata
(``facskit.spec``), which makes an ``.onnx`` file enough to analyse with (``--model model.onnx``).
Every export is verified against PyTorch (:mod:`facskit.runtime.verify`).

Exports used by analysis are cached under :func:`cache_dir`, keyed by
:func:`facskit.models.checkpoint.weights_hash`, so a model is exported once per machine.
"""

from __future__ import annotations

import json
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from facskit.errors import CheckpointError, UsageError
from facskit.io.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.spec import AUModel, ModelSpec

SPEC_KEY = "facskit.spec"
VERSION_KEY = "facskit.version"
DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"


def export_onnx(model: AUModel, path: Path | str, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` to ``path`` as ONNX (opset >= 17, dynamic batch), spec in the metadata; atomic."""
    if opset < 17:
        raise UsageError(f"opset must be >= 17, not {opset}")
    was_training = model.training
    try:
        return atomic_write(path, partial(_write_onnx, model.eval().cpu(), opset=opset), parents=True)
    finally:
        model.train(was_training)


def _write_onnx(model: AUModel, tmp: Path, opset: int) -> None:
    """Trace ``model`` into ``tmp`` and add the facskit metadata (the spec, the writer's version)."""
    import onnx
    import torch

    import facskit

    spec = model.spec
    example = torch.zeros(1, 3, spec.input_size, spec.input_size)  # (1, 3, S, S)
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
    from facskit.faces.models import cache_dir as facskit_cache_dir

    return facskit_cache_dir()


def cached_onnx_path(model: AUModel, weights_hash: str | None = None) -> Path:
    """The ONNX export of ``model``, created on first use and keyed by a hash of its weights."""
    if weights_hash is None:
        from facskit.models.checkpoint import weights_hash as hash_weights

        weights_hash = hash_weights(model)
    path = cache_dir() / "onnx" / f"{model.spec.name}-{weights_hash}.onnx"
    if not path.is_file():
        export_onnx(model, path)
    return path
