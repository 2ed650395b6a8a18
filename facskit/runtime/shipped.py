"""ONNX files shipped beside a checkpoint: analysing with it without importing torch.

``facskit analyze`` with the default model used to import torch (~1.3 s, ~200 MB) and load the checkpoint
only to hand the network to ONNX Runtime. A checkpoint ``NAME.ckpt`` can instead carry, beside it:

    NAME.onnx         the fp32 export (:func:`facskit.runtime.export.export_onnx`, verified against torch)
    NAME-int8.onnx    its static int8 copy (:func:`facskit.runtime.quantize.quantize_onnx`)
    NAME.onnx.json    the sidecar: the checkpoint's SHA-256 and weights hash, both ONNX files' SHA-256,
                      the export check and the backend check's verdicts measured when the files were made

:func:`write_exports` makes all three (``python tools/export_default_model.py`` for the shipped default).
:func:`shipped_exports` reads the sidecar and accepts it only when the checkpoint and both ONNX files are the
ones it was made from (file hashes, a few milliseconds): a checkpoint replaced without rerunning the export
falls back to the torch path (and ``tests/runtime/test_shipped_model.py`` fails, naming the command to rerun).

The verdicts in the sidecar say which precision ``auto`` runs (:func:`choose_shipped`). Their accuracy part
(AU intensities of each ONNX file against torch fp32 on the check faces) does not depend on the machine for
ONNX Runtime's CPU kernels of one instruction-set family; their speed part does. So on the machine class
they were measured on (same CPU flags and core count) the stored verdict is used as is; elsewhere int8 is
timed against fp32 once (two ONNX Runtime sessions, one batch: well under a second, no torch) and that
verdict is cached per (weights, machine) like the full check's.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facskit.io.atomic import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from facskit.runtime.backends import Backend

SIDECAR_FORMAT = "facskit-onnx-exports"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".onnx.json"
# The command that regenerates the default model's files (named in errors and in the sidecar).
REGENERATE = "python tools/export_default_model.py"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (3.5 MB checkpoint: ~5 ms)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_paths(checkpoint: Path | str) -> dict[str, Path]:
    """Where the exports of ``checkpoint`` live: ``fp32``, ``int8`` and the ``sidecar``."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.with_suffix("")
    return {
        "fp32": stem.with_name(f"{stem.name}.onnx"),
        "int8": stem.with_name(f"{stem.name}-int8.onnx"),
        "sidecar": stem.with_name(f"{stem.name}{SIDECAR_SUFFIX}"),
    }


def machine_key() -> str:
    """The machine class a speed verdict holds for, without importing torch: the CPU flags that select
    ONNX Runtime's and torch's kernels, and the CPUs this process may use."""
    from facskit.device import cpu_flags

    relevant = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c", "sse4", "vnni")))
    digest = hashlib.sha256(" ".join(relevant).encode()).hexdigest()[:12]
    return f"{digest}-c{len(os.sched_getaffinity(0))}"


@dataclass(frozen=True)
class ShippedExports:
    """A checkpoint's verified ONNX files and what the sidecar recorded about them."""

    checkpoint: Path
    fp32: Path
    int8: Path | None
    weights_hash: str
    card: dict[str, Any]  # checkpoint facts that go into a result's attrs (training summary, version)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # backend check at export time
    machine: str = ""  # machine_key() where the verdicts' speeds were measured

    def path(self, precision: str) -> Path | None:
        return self.fp32 if precision == "fp32" else self.int8 if precision == "int8" else None


def read_sidecar(checkpoint: Path | str) -> dict[str, Any] | None:
    """The sidecar of ``checkpoint`` as written, None when there is none or it is not one."""
    path = export_paths(checkpoint)["sidecar"]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        return None
    return data


def stale_reason(checkpoint: Path | str, data: dict[str, Any] | None = None) -> str | None:
    """Why the exports beside ``checkpoint`` cannot stand in for it (None: they can)."""
    checkpoint = Path(checkpoint)
    paths = export_paths(checkpoint)
    data = read_sidecar(checkpoint) if data is None else data
    if data is None:
        return f"no {paths['sidecar'].name} beside {checkpoint.name}"
    if data.get("version") != SIDECAR_VERSION:
        return f"{paths['sidecar'].name} is version {data.get('version')!r}, not {SIDECAR_VERSION}"
    if data.get("checkpoint_sha256") != sha256_file(checkpoint):
        return f"{checkpoint.name} changed since {paths['sidecar'].name} was written"
    for precision in ("fp32", "int8"):
        entry = (data.get("files") or {}).get(precision)
        if entry is None:
            if precision == "fp32":
                return f"{paths['sidecar'].name} records no fp32 file"
            continue
        path = paths[precision]
        if not path.is_file():
            return f"{path.name} is missing"
        if entry.get("sha256") != sha256_file(path):
            return f"{path.name} is not the file {paths['sidecar'].name} records"
    return None


def shipped_exports(checkpoint: Path | str) -> ShippedExports | None:
    """The ONNX files beside ``checkpoint`` when they were made from exactly this checkpoint, else None."""
    checkpoint = Path(checkpoint)
    data = read_sidecar(checkpoint)
    if data is None or stale_reason(checkpoint, data) is not None:
        return None
    paths = export_paths(checkpoint)
    return ShippedExports(
        checkpoint=checkpoint,
        fp32=paths["fp32"],
        int8=paths["int8"] if "int8" in data["files"] else None,
        weights_hash=str(data["weights_hash"]),
        card=dict(data.get("card") or {}),
        verdicts=list((data.get("check") or {}).get("verdicts") or []),
        machine=str((data.get("check") or {}).get("machine") or ""),
    )


def _passed(verdict: dict[str, Any]) -> bool:
    from facskit.runtime.check import MAX_ABS_DELTA, MAX_MEAN_DELTA

    return verdict["mean_delta"] <= MAX_MEAN_DELTA and verdict["max_delta"] <= MAX_ABS_DELTA


def choose_shipped(
    shipped: ShippedExports, backend: str, flags_ok: tuple[tuple[str, str], ...]
) -> tuple[dict[str, Any], str]:
    """The verdict ``auto`` runs for a model with shipped exports, and where its speed came from.

    ``flags_ok`` are the (backend, precision) pairs this machine can run within what the user pinned
    (:func:`facskit.runtime.check.available_candidates`). On the machine class the sidecar was measured on,
    the fastest passing stored verdict wins (torch included, as in the full check). Elsewhere only the two
    shipped ONNX files compete: accuracy from the sidecar, speed timed here once and cached.
    """
    stored = {(v["backend"], v["precision"]): v for v in shipped.verdicts}
    if shipped.machine == machine_key():
        passing = [stored[c] for c in flags_ok if c in stored and _passed(stored[c])]
        if passing:
            return max(passing, key=lambda v: v["images_per_s"]), "export-time check (this machine class)"
    onnx_ok = [
        stored[("onnx", p)]
        for p in ("int8", "fp32")
        if ("onnx", p) in flags_ok
        and ("onnx", p) in stored
        and _passed(stored[("onnx", p)])
        and shipped.path(p) is not None
    ]
    if len(onnx_ok) < 2:
        fp32 = stored.get(
            ("onnx", "fp32"),
            {
                "backend": "onnx",
                "precision": "fp32",
                "mean_delta": 0.0,
                "max_delta": 0.0,
                "images_per_s": 0.0,
                "faces": 0,
            },
        )
        return (onnx_ok[0] if onnx_ok else fp32), "export-time accuracy (one passing ONNX file)"
    speeds = _local_speeds(shipped)
    best = max(onnx_ok, key=lambda v: speeds[v["precision"]])
    return {**best, "images_per_s": speeds[best["precision"]]}, "export-time accuracy, speed timed here"


def _local_speeds(shipped: ShippedExports) -> dict[str, float]:
    """Images per second of the shipped fp32 and int8 files on this machine (one batch of 8 noise crops,
    best of two; cached per weights and machine in the backend check's cache file)."""
    from facskit.runtime.backends import OnnxBackend
    from facskit.runtime.check import read_cached, throughput, write_cached

    key = f"shipped-{shipped.weights_hash}-{machine_key()}"
    cached = read_cached(key)
    if isinstance(cached, dict) and {"fp32", "int8"} <= set(cached):
        return {k: float(v) for k, v in cached.items()}
    speeds: dict[str, float] = {}
    for precision in ("fp32", "int8"):
        backend = OnnxBackend(shipped.path(precision), precision=precision)  # type: ignore[arg-type]
        size = backend.spec.crop_size
        crops = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
        speeds[precision] = throughput(backend, crops)
    write_cached(key, speeds)
    return speeds


def shipped_backend(
    checkpoint: Path | str, device: str, backend: str, precision: str
) -> tuple[Backend, ShippedExports] | None:
    """An ONNX Runtime backend on the exports shipped beside ``checkpoint`` when the options allow one,
    else None (the caller loads the checkpoint with torch, as for any other).

    The options keep their meaning: ``--backend torch``, bf16 and a GPU stay on torch; ``fp32`` and ``int8``
    run the shipped file of that precision, which is byte-identical to the export cache's (the fp32 file is
    verified against torch to 1e-3 of a heatmap value, so ``--precision fp32`` gets torch's numbers without
    importing torch: measured 4e-6 for the default model); ``auto`` precision runs the verdict of
    :func:`choose_shipped`. The backend's ``check`` attribute records the choice.
    """
    if device != "cpu" or backend == "torch" or precision == "bf16":
        return None
    from facskit.runtime.backends import onnxruntime_installed

    if not onnxruntime_installed():  # an environment installed before it became core: torch, as then
        return None
    shipped = shipped_exports(checkpoint)
    if shipped is None:
        return None
    from facskit.runtime.backends import OnnxBackend
    from facskit.runtime.check import available_candidates

    if precision in ("fp32", "int8"):
        path = shipped.path(precision)
        if path is None:
            return None
        chosen = OnnxBackend(path, precision=precision)
        stored = {(v["backend"], v["precision"]): v for v in shipped.verdicts}.get(("onnx", precision), {})
        errors = {k: stored[k] for k in ("mean_delta", "max_delta", "faces") if k in stored}
        chosen.check = {"source": "pinned", "backend": "onnx", "precision": precision, **errors}
        return chosen, shipped
    allowed = tuple(available_candidates(device, backend, "auto", exported=True))  # type: ignore[arg-type]
    verdict, source = choose_shipped(shipped, backend, allowed)
    path = shipped.path(verdict["precision"]) if verdict["backend"] == "onnx" else None
    if path is None:
        return None
    chosen = OnnxBackend(path, precision=verdict["precision"])
    chosen.check = {
        "source": source,
        **{
            k: verdict.get(k)
            for k in ("backend", "precision", "mean_delta", "max_delta", "images_per_s", "faces")
        },
    }
    return chosen, shipped


def write_exports(checkpoint: Path | str, log: Any = print) -> dict[str, Any]:
    """Export ``checkpoint`` to ``NAME.onnx`` and ``NAME-int8.onnx`` beside it, verify the fp32 file against
    torch, run the backend check on this machine, and write the sidecar last (so an interrupted run leaves
    a sidecar that no longer matches, never a matching one with missing files). Returns the sidecar."""
    import onnxruntime
    import torch

    import facskit
    from facskit.models.checkpoint import load_checkpoint, weights_hash
    from facskit.runtime.backends import OnnxBackend, TorchBackend
    from facskit.runtime.check import (
        Verdict,
        available_candidates,
        intensities,
        measure,
        pass_speed,
        verdict_summary,
    )
    from facskit.runtime.export import export_onnx
    from facskit.runtime.quantize import face_crops, quantize_onnx
    from facskit.runtime.verify import VERIFY_TOLERANCE, verify_onnx

    checkpoint = Path(checkpoint)
    paths = export_paths(checkpoint)
    paths["sidecar"].unlink(missing_ok=True)
    model, info = load_checkpoint(checkpoint)
    whash = weights_hash(model)
    log(f"{checkpoint}: {model.spec.name}, weights hash {whash}")
    export_onnx(model, paths["fp32"])
    check_crops = face_crops(model.spec, "check")
    report = verify_onnx(model, paths["fp32"], crops=check_crops[:8])
    log(f"{paths['fp32'].name}: max |heatmap - torch| {report} (tolerance {VERIFY_TOLERANCE})")
    if max(report.values()) > VERIFY_TOLERANCE:
        raise RuntimeError(f"{paths['fp32']}: export differs from torch by {report}")
    quantize_onnx(paths["fp32"], paths["int8"], face_crops(model.spec, "calibration"))
    log(f"{paths['int8'].name}: quantised")
    # The check measures the shipped files themselves (not the export cache) against torch fp32.
    reference = TorchBackend(model, "cpu", "fp32")
    times: list[float] = []
    expected = intensities(reference, check_crops, times=times)
    verdicts = [
        Verdict("torch", "fp32", 0.0, 0.0, pass_speed(reference, check_crops, times), len(check_crops))
    ]
    for name, precision in sorted(set(available_candidates("cpu", "auto", "auto")) - {("torch", "fp32")}):
        if name == "onnx":
            backend: Any = OnnxBackend(paths[precision], precision=precision)
        else:
            backend = TorchBackend(model, "cpu", precision)
        verdicts.append(measure(reference, backend, check_crops, expected))
    rows = verdict_summary(verdicts)
    for row in rows:
        log(
            f"  {row['backend']} {row['precision']}: {row['images_per_s']:.1f} images/s, AU delta "
            f"{row['mean_delta']:.4f} mean / {row['max_delta']:.4f} max, passed={row['passed']}"
        )
    from facskit.device import cpu_model

    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": sha256_file(checkpoint),
        "weights_hash": whash,
        "model": model.spec.name,
        "card": {
            "checkpoint_facskit_version": info.get("facskit_version"),
            "training": json.loads(json.dumps(info.get("training") or {}, default=str)),
        },
        "files": {p: {"path": paths[p].name, "sha256": sha256_file(paths[p])} for p in ("fp32", "int8")},
        "verify": {"max_abs_heatmap_diff": report, "tolerance": VERIFY_TOLERANCE},
        "check": {"machine": machine_key(), "cpu": cpu_model(), "verdicts": rows},
        "made_with": {
            "facskit": facskit.__version__,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "command": REGENERATE,
        },
    }
    atomic_write_text(paths["sidecar"], json.dumps(sidecar, indent=1, sort_keys=True) + "\n")
    log(f"{paths['sidecar'].name}: written")
    return sidecar


__all__ = [
    "REGENERATE",
    "ShippedExports",
    "choose_shipped",
    "export_paths",
    "machine_key",
    "read_sidecar",
    "sha256_file",
    "shipped_backend",
    "shipped_exports",
    "stale_reason",
    "write_exports",
]
