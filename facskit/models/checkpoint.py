"""facskit checkpoints: one file that is enough to rebuild, feed and read a model.

A checkpoint is a `torch.save`d dict of plain data and tensors only, so it loads with
`torch.load(weights_only=True)` (no arbitrary code runs when a user opens a file they were sent):

    format            "facskit-checkpoint"
    format_version    FORMAT_VERSION
    facskit_version   the writer's facskit.__version__
    spec              ModelSpec.to_dict(): architecture, input size, normalisation, AUs, convention
    aus               the AU codes, in output order (also in spec; kept top-level for quick reads)
    alignment         {"kind": ..., "crop_size": ...}
    readout           {"rule": "max_clip_0_5", "convention": ..., "range": [0, 5]}
    training          free-form summary of the training data and run (plain data)
    extra             any other plain data the caller passed
    state_dict        the weights

Also here: `import_audetector`, which turns the BMVC'18 authors' `AUdetector.pth.tar` into a model.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facskit.aus import BP4D_AUS, MAX_INTENSITY
from facskit.errors import CheckpointError, first_line
from facskit.io.atomic import atomic_write
from facskit.models.spec import INTENSITY_MIN, AUModel, ModelSpec

FORMAT = "facskit-checkpoint"
FORMAT_VERSION = 1


def short_list(items: Sequence[str], limit: int = 4) -> str:
    """`a, b, c, d and 7 more`: keeps a one-line error readable for hundreds of keys."""
    shown = ", ".join(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


def read_torch_file(path: str | Path, allow_pickle: bool = False) -> Any:
    """`torch.load` on CPU with `weights_only=True` unless `allow_pickle`; every failure is one line.

    The legacy (pre-1.6, non-zip) serialisation of 2018-era files is read too; their tensors are rebuilt
    by `torch._utils._rebuild_tensor`, which is allow-listed here.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    safe = [getattr(torch._utils, name) for name in ("_rebuild_tensor",) if hasattr(torch._utils, name)]
    try:
        with torch.serialization.safe_globals(safe), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before failing clearly
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        if not allow_pickle and "global" in str(error).lower():  # "Unsupported global: GLOBAL mod.Class"
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain data; if you trust its source, "
                "load it with allow_pickle=True (--allow-pickle)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch file, or corrupt ({first_line(error)})") from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        AttributeError,
        KeyError,
    ) as error:
        raise CheckpointError(f"{path}: not a PyTorch file, or truncated ({first_line(error)})") from None


def _plain(value: Any, where: str) -> Any:
    """`value` as data `torch.load(weights_only=True)` accepts (numpy scalars and paths converted)."""
    if value is None or isinstance(value, bool | int | float | str | Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"checkpoint field {where} holds a {type(value).__name__}; use plain data")


def save_checkpoint(path: str | Path, model: AUModel, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` (its spec and weights) to `path` atomically and fsynced (`facskit.io.atomic`).

    `extra["training"]` becomes the checkpoint's training summary; other keys go under `extra`.
    An interrupted save leaves the previous file intact.
    """
    path = Path(path)
    import facskit

    extra = dict(extra or {})
    training = extra.pop("training", {})
    spec = model.spec
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "facskit_version": facskit.__version__,
        "spec": spec.to_dict(),
        "aus": list(spec.aus),
        "alignment": {"kind": spec.alignment, "crop_size": spec.crop_size},
        "readout": {
            "rule": spec.readout,
            "convention": spec.convention,
            "range": [INTENSITY_MIN, MAX_INTENSITY],
        },
        "training": _plain(training, "training"),
        "extra": _plain(extra, "extra"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), durable=True, parents=True)


def weights_hash(model: AUModel) -> str:
    """A short hash of a model's spec and weights: tells two models apart in analysis results (``.attrs``,
    the output folder's provenance) and keys the ONNX export cache, so a retrained model is re-exported.

    Changing what goes into it changes every cached export's name and every recorded ``model_hash``."""
    digest = hashlib.sha256(repr(model.spec.to_dict()).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[AUModel, dict[str, Any]]:
    """Rebuild the model stored at `path`; returns `(model in eval mode, info)` where `info` is the
    checkpoint without its weights. Any problem raises a one-line `CheckpointError`."""
    from facskit.models.registry import model_shell

    data = read_torch_file(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = ""
        if isinstance(data, dict) and "state_dict" in data:
            hint = "; for the BMVC'18 AUdetector.pth.tar run `facskit import-weights` first"
        raise CheckpointError(f"{path}: not a facskit checkpoint{hint}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r}; this facskit reads format {FORMAT_VERSION}"
        )
    try:
        spec = ModelSpec.from_dict(data["spec"])
        # Shapes only (meta device): the spec's size is checked, and the file's weights compared with
        # it, before a single weight of the network is allocated.
        shell = model_shell(spec)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid model spec ({first_line(error)})") from None
    weights = data.get("state_dict")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: no weights (state_dict) in the checkpoint")
    _check_weights(path, shell, weights, what=f"model {spec.name!r}")
    check_finite(path, weights)
    model = type(shell)(spec, **spec.kwargs)
    model.load_state_dict(weights, strict=True)
    model.to(map_location).eval()
    info = {k: v for k, v in data.items() if k != "state_dict"}
    info["spec"] = spec
    return model, info


def _check_weights(path: str | Path, model: torch.nn.Module, weights: dict[str, Any], what: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [
        f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and isinstance(weights[k], Tensor) and weights[k].shape != v.shape
    ]
    not_tensors = [k for k in expected if k in weights and not isinstance(weights[k], Tensor)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({short_list(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({short_list(unexpected)})")
    if shapes:
        problems.append(f"wrong shapes ({short_list(shapes)})")
    if not_tensors:
        problems.append(f"not tensors ({short_list(not_tensors)})")
    if problems:
        raise CheckpointError(f"{path}: weights do not match {what}: {'; '.join(problems)}")


def check_finite(path: str | Path, weights: dict[str, Any]) -> None:
    """CheckpointError naming `path` when a floating-point tensor of `weights` holds NaN or Inf.

    A diverged training run saves such weights without complaint; loaded, they make every AU value NaN
    (read out as "no value" for a face that was found) on one backend and trip an assertion in another.
    """
    bad = [
        str(name)
        for name, tensor in weights.items()
        if isinstance(tensor, Tensor)
        and (tensor.is_floating_point() or tensor.is_complex())
        and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensors hold NaN or Inf ({short_list(bad)}); the run that wrote it "
            "diverged: use an earlier checkpoint or retrain with a lower learning rate"
        )


def load_model(name_or_path: str | Path, **overrides: Any) -> AUModel:
    """A registry name gives fresh weights (with `overrides`); an existing file is loaded as a checkpoint."""
    from facskit.models.registry import create_model, list_models

    text = os.fspath(name_or_path)
    if text in list_models():
        return create_model(text, **overrides)
    if Path(text).exists():
        if overrides:
            raise CheckpointError(f"{text}: a checkpoint fixes its architecture; drop {sorted(overrides)}")
        return load_checkpoint(text)[0]
    raise CheckpointError(
        f"{text!r} is neither a model name ({', '.join(list_models())}) nor an existing file"
    )


def import_audetector(path: str | Path, allow_pickle: bool = False) -> AUModel:
    """The BMVC'18 release (`AUdetector.pth.tar`) as a facskit `bmvc2018` model for AUs 6, 10, 12, 14, 17.

    The file is a dict whose `state_dict` keys carry DataParallel's `module.` prefix; other entries
    (epoch, optimiser state) are ignored. Keys and shapes must match the paper's network exactly.
    """
    from facskit.models.registry import create_model

    data = read_torch_file(path, allow_pickle=allow_pickle)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path}: not a BMVC'18 checkpoint (expected a dict with a 'state_dict')")
    weights = {str(k).removeprefix("module."): v for k, v in data.items()}
    model = create_model("bmvc2018", aus=BP4D_AUS)
    _check_weights(path, model, weights, what="the BMVC'18 Hourglass (specs/bmvc2018_checkpoint_layout.tsv)")
    check_finite(path, weights)
    model.load_state_dict(weights, strict=True)
    return model.eval()
