"""``facskit version``: the versions a bug report needs."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def run(args: argparse.Namespace) -> int:
    import facskit

    print(f"facskit {facskit.__version__}")
    for label, distribution in (
        ("torch", "torch"),
        ("dlib", "dlib-bin"),
        ("av", "av"),
        ("opencv", "opencv-python-headless"),
        ("numpy", "numpy"),
    ):
        print(f"{label} {_version_of(distribution)}")
    print(f"python {platform.python_version()} ({platform.machine()})")
    return 0
