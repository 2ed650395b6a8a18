"""``facskit export``: a checkpoint to ONNX (dynamic batch, opset >= 17), verified against PyTorch.

facskit export model.ckpt --out model.onnx --verify-media ../shared/media/single_face.jpg
facskit analyze video.mp4 --out results/ --model model.onnx      # or --backend onnx with a checkpoint
facskit export model.ckpt --beside    # model.onnx, model-int8.onnx, model.onnx.json next to the checkpoint:
facskit analyze video.mp4 --out results/ --model model.ckpt      # ... then runs them, without torch

``--beside`` is how the default model's ONNX files are made (``python tools/export_default_model.py``):
see :mod:`facskit.runtime.shipped`.
"""

from __future__ import annotations

import argparse

from facskit.cli import add_deprecated_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a facskit checkpoint, 'default' or a registry name (untrained)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="FILE", help="the .onnx file to write")
    add_deprecated_alias(out, "--onnx", "--out")
    out.add_argument(
        "--beside",
        action="store_true",
        help="write NAME.onnx, NAME-int8.onnx and NAME.onnx.json beside the checkpoint (verified, backend "
        "check included): analysing with the checkpoint then runs them without importing torch",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument(
        "--verify-media",
        nargs="*",
        default=[],
        help="images/videos whose aligned faces also verify the export",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print errors only (not the verification numbers)"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from facskit.analyze.model_source import DEFAULT_MODEL, DEFAULT_WEIGHTS
    from facskit.errors import FacskitError
    from facskit.models.checkpoint import load_model
    from facskit.runtime.export import export_onnx
    from facskit.runtime.verify import VERIFY_TOLERANCE, real_crops, verify_onnx

    source = str(DEFAULT_WEIGHTS) if args.checkpoint == DEFAULT_MODEL else args.checkpoint
    if args.beside:
        from facskit.runtime.shipped import write_exports

        write_exports(source, log=(lambda _: None) if args.quiet else print)
        return 0
    model = load_model(source).eval()
    path = export_onnx(model, args.out, opset=args.opset)
    crops = real_crops(args.verify_media, model.spec) if args.verify_media else None
    report = verify_onnx(model, path, crops=crops)
    if not args.quiet:
        for label, diff in report.items():
            print(f"max |onnx - torch| heatmap difference on {label} crops: {diff:.3g}")
        print(f"wrote {path}")
    worst = max(report.values())
    if worst > VERIFY_TOLERANCE:
        print(
            f"facskit export: ONNX differs from PyTorch by {worst:.3g} > {VERIFY_TOLERANCE}", file=sys.stderr
        )
        raise FacskitError(f"the exported model does not match PyTorch (max diff {worst:.3g})")
    return 0
