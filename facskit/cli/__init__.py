"""The one ``facskit`` command.

Each sub-command is a module of this package with ``add_arguments(parser)`` and ``run(args) -> int``.
The table below is the only place a sub-command is registered; modules are imported only when their
command runs, so ``facskit --help`` never imports torch or dlib.

One vocabulary across the commands:

* ``--out`` always names what a command writes: a folder (``DIR``) for commands that write several files,
  a file (``FILE``) for commands that write one.
* ``--frame-step N`` analyses every N-th frame; ``--detect-every N`` runs the face detector every N analysed
  frames and tracks landmarks between.
* ``--quiet`` is accepted by every command that prints progress, notes or the files it wrote (all but
  ``version``): it drops those; a table or summary that is the command's answer is still printed.
* ``--device`` defaults to ``auto``: CUDA when available, else the CPU.

A renamed option keeps its old spelling for one release (:func:`add_deprecated_alias`).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Any

from facskit.errors import FacskitError

# name -> (module under facskit.cli, one-line purpose shown by `facskit --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run facskit end to end on the bundled sample and say where the outputs are"),
    "version": ("version", "print facskit, torch, dlib and PyAV versions"),
    "faces": ("faces", "detect faces, 68 landmarks and head pose; write one CSV row per face per frame"),
    "analyze": (
        "analyze",
        "per-frame AU intensities for images and videos: one CSV/Parquet per input, resumable",
    ),
    "plot": (
        "plot",
        "plot an analysis result: AU time series, intensity distributions, co-occurrence (PNG, SVG)",
    ),
    "report": (
        "report",
        "one self-contained HTML report of an analysis folder (plots, key frames, model card)",
    ),
    "export": ("export", "export a checkpoint to ONNX and verify it against PyTorch"),
    "train": ("train", "train a heatmap AU model (BMVC'18 Hourglass or AAAI'20 SCC) from a YAML config"),
    "prepare": (
        "prepare",
        "detect, align and cache a dataset (DISFA, BP4D/FERA2015 or folder layout) for training",
    ),
    "import-weights": (
        "import_weights",
        "convert the BMVC'18 authors' AUdetector.pth.tar into a facskit checkpoint",
    ),
    "pretrain-tcae": (
        "pretrain_tcae",
        "self-supervised TCAE pretraining on unlabelled face videos (CVPR'19)",
    ),
    "tcae-show": ("tcae_show", "draw TCAE source/target/AU-changed/pose-changed faces, flows and masks"),
    "probe": ("probe", "linear probe / fine-tune of TCAE embeddings for AU occurrence with few labels"),
    "teach": (
        "teach",
        "label real faces with AU pseudo-intensities from MediaPipe's blendshapes: a training cache",
    ),
    "synth": ("synth", "generate a labelled synthetic face/AU dataset in the DISFA, BP4D or folder layout"),
    "evaluate": ("evaluate", "evaluate a run or checkpoint on a prepared cache: ICC, MAE, PCC, F1 per AU"),
    "crossval": (
        "crossval",
        "train and evaluate every subject-exclusive fold; pooled and mean-over-folds metrics",
    ),
    "robustness": ("robustness", "ICC against Gaussian landmark noise before alignment (BMVC'18 protocol)"),
    "compare": ("compare", "put several runs and the papers' published tables side by side"),
}


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's ``dest``; says in one line what to use."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: note: {option_string} is deprecated and will be removed in the next release; "
            f"use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: Any, old: str, new: str, **kwargs: Any) -> None:
    """Accept the option ``old`` for one release as a hidden spelling of ``new`` (same ``dest``; ``kwargs``
    such as ``type`` as ``new`` has them). ``parser``: an ArgumentParser or one of its groups; where ``new``
    is required, put both in a required mutually exclusive group, so either satisfies it. The Python
    counterpart is :func:`facskit.deprecation.renamed_keyword`."""
    parser.add_argument(
        old,
        dest=new.lstrip("-").replace("-", "_"),
        action=_DeprecatedAlias,
        new=new,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **kwargs,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facskit",
        description=(
            "Facial Action Unit analysis: detect faces, align, regress AU heatmaps, train and evaluate."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_module, purpose) in COMMANDS.items():
        sub.add_parser(name, help=purpose, description=purpose, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from: {', '.join(COMMANDS)}")
    module_name, purpose = COMMANDS[name]
    module = import_module(f"facskit.cli.{module_name}")
    command_parser = argparse.ArgumentParser(prog=f"facskit {name}", description=purpose)
    module.add_arguments(command_parser)
    # Intermixed: `facskit train CONFIG --data D key=value` and `... key=value --data D` both work.
    args = command_parser.parse_intermixed_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except FacskitError as error:
        print(f"facskit {name}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"facskit {name}: interrupted; finished outputs are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
