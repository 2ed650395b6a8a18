"""Write the ONNX files the default model ships in, beside facskit/weights/default.ckpt.

    python tools/export_default_model.py                 # after every change of facskit/weights/default.ckpt
    python tools/export_default_model.py path/to/model.ckpt
    facskit export default --beside                      # the same, from the command line

Writes ``default.onnx`` (fp32, verified against torch), ``default-int8.onnx`` (static int8, calibrated on the
bundled sample clip and synthetic faces) and ``default.onnx.json`` (the checkpoint's SHA-256 and weights
hash, both files' SHA-256, and the backend check measured on this machine: which precision ``auto`` runs).
``facskit analyze`` with the default model then runs ONNX Runtime without importing torch;
``tests/runtime/test_shipped_model.py`` fails until this is rerun after the checkpoint changes. Takes about a
minute on 2 CPU cores (the backend check runs torch fp32 on 48 faces); run it on an otherwise idle machine,
since the check's speeds decide between int8 and fp32 on machines like this one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1] / "facskit" / "weights" / "default.ckpt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=DEFAULT, help="default: the shipped one")
    args = parser.parse_args(argv)
    from facskit.runtime.shipped import write_exports

    write_exports(args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
