"""One vocabulary in the CLI and the API: --detect-every / --frame-step, --quiet, the --out rule, --device
auto, the Detector's defaults equal to the CLI's, renamed spellings that still work for one release, and
constants defined once."""

from __future__ import annotations

import argparse
import inspect
import re
import warnings
from importlib import import_module
from pathlib import Path

import pytest

from facskit.cli import COMMANDS, main

PACKAGE = Path(__file__).resolve().parents[2] / "facskit"
# Commands with nothing to be quiet about: `version` prints the versions and nothing else.
NO_PROGRESS = {"version"}
# Commands that write nothing.
WRITE_NOTHING = {"version"}
# --out without its DIR/FILE metavar yet (its help already says "folder").


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser `facskit NAME` builds (as facskit.cli.main does)."""
    module_name, purpose = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"facskit {name}", description=purpose)
    import_module(f"facskit.cli.{module_name}").add_arguments(parser)
    return parser


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def help_text(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main([name, "--help"])
    assert caught.value.code == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------------------------------- --quiet


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - NO_PROGRESS))
def test_every_command_that_prints_progress_accepts_quiet(name: str, capsys) -> None:
    assert re.search(r"^\s+--quiet\b", help_text(name, capsys), re.MULTILINE), f"facskit {name} lacks --quiet"


# --------------------------------------------------------------------------------------- the --out rule


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - WRITE_NOTHING))
def test_out_names_what_a_command_writes_a_folder_or_a_file(name: str) -> None:
    """`--out` always names what a command writes: a folder (DIR) for commands that write several files, a
    file (FILE) for commands that write one."""
    out = option(command_parser(name), "--out")
    assert out is not None, f"facskit {name} writes output but has no --out"
    kinds = {word for word in ("folder", "file") if re.search(rf"\b{word}\b", out.help or "")}
    assert len(kinds) == 1, f"facskit {name} --out help must say folder or file: {out.help!r}"
    expected = "DIR" if kinds == {"folder"} else "FILE"
    assert out.metavar == expected, f"facskit {name} --out {out.metavar}: expected {expected}"


# ------------------------------------------------------------------------------- --device, Detector defaults


def test_device_defaults_to_auto_everywhere() -> None:
    with_device = [name for name in COMMANDS if option(command_parser(name), "--device") is not None]
    assert {"analyze", "evaluate", "crossval", "robustness", "probe"} <= set(with_device)
    for name in with_device:
        assert option(command_parser(name), "--device").default == "auto", name


def test_detector_defaults_equal_the_cli_defaults() -> None:
    from facskit.analyze.detector import Detector

    parameters = inspect.signature(Detector).parameters
    parser = command_parser("analyze")
    for cli_flag, keyword in (
        ("--device", "device"),
        ("--backend", "backend"),
        ("--precision", "precision"),
        ("--detect-every", "detect_every"),
        ("--frame-step", "frame_step"),
        ("--batch-size", "batch_size"),
        ("--faces", "faces"),
        ("--threshold", "threshold"),
    ):
        assert parameters[keyword].default == option(parser, cli_flag).default, keyword


def test_chunk_frames_help_states_the_default() -> None:
    from facskit.analyze.pipeline import DEFAULT_CHUNK_FRAMES

    assert f"default {DEFAULT_CHUNK_FRAMES}" in option(command_parser("analyze"), "--chunk-frames").help


# ------------------------------------------------------------------------- renamed CLI spellings still work


@pytest.mark.parametrize(
    ("argv", "dest", "value", "new"),
    [
        (["analyze", "in.mp4", "--out", "o", "--every", "3"], "detect_every", 3, "--detect-every"),
        (["faces", "in.mp4", "--out", "f.csv", "--every", "4"], "frame_step", 4, "--frame-step"),
        (["export", "m.ckpt", "--onnx", "m.onnx"], "out", "m.onnx", "--out"),
        (["evaluate", "run", "--data", "c", "--json", "m.json"], "out", "m.json", "--out"),
        (["probe", "run", "--data", "c", "--json", "p.json"], "out", "p.json", "--out"),
    ],
)
def test_old_option_spellings_parse_with_a_one_line_note(argv, dest, value, new, capsys) -> None:
    args = command_parser(argv[0]).parse_intermixed_args(argv[1:])
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated" in err[0] and new in err[0]


def test_old_spellings_are_hidden_and_the_new_ones_listed(capsys) -> None:
    for name, old, new in (
        ("analyze", "--every", "--detect-every"),
        ("faces", "--every", "--frame-step"),
        ("export", "--onnx", "--out"),
        ("evaluate", "--json", "--out"),
    ):
        text = help_text(name, capsys)
        assert new in text and old not in text.replace(new, ""), name


def test_new_spellings_print_no_note_and_mixing_old_and_new_is_refused(capsys) -> None:
    args = command_parser("analyze").parse_intermixed_args(["in.mp4", "--out", "o", "--detect-every", "2"])
    assert args.detect_every == 2 and args.frame_step == 1 and capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as caught:
        command_parser("export").parse_intermixed_args(["m.ckpt", "--out", "a.onnx", "--onnx", "b.onnx"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):  # --out (or its old spelling) is still required
        command_parser("export").parse_intermixed_args(["m.ckpt"])
    assert "--out" in capsys.readouterr().err


def test_synth_takes_out_and_still_the_positional_folder(tmp_path, monkeypatch, capsys) -> None:
    import facskit.synth.writers as writers

    written: list[Path] = []

    def fake_write_dataset(out: Path, *_args) -> Path:
        written.append(out)
        return out / "manifest.json"

    monkeypatch.setattr(writers, "write_dataset", fake_write_dataset)
    assert main(["synth", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["synth", str(tmp_path / "b"), "--quiet"]) == 0
    assert "deprecated" in capsys.readouterr().err
    assert written == [tmp_path / "a", tmp_path / "b"]
    assert main(["synth", str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 2
    assert main(["synth", "--quiet"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


# ---------------------------------------------------------------------- renamed Python keywords still work


def test_renamed_keyword_passes_the_old_one_on_with_a_warning() -> None:
    from facskit.deprecation import renamed_keyword

    @renamed_keyword("every", "frame_step")
    def stride(frame_step: int = 1) -> int:
        return frame_step

    assert stride(frame_step=3) == 3 and stride(3) == 3
    with pytest.warns(DeprecationWarning, match=r"stride\(every=...\) is deprecated.*frame_step=") as caught:
        assert stride(every=4) == 4
    assert caught[0].filename == __file__  # points at the caller's line
    with pytest.raises(TypeError, match="both"):
        stride(every=1, frame_step=2)


def test_old_python_keywords_still_work_and_warn(media_dir) -> None:
    from facskit.analyze.detector import Detector
    from facskit.faces import FaceTracker
    from facskit.io import iter_frames
    from facskit.models import create_model

    video = media_dir / "face_noface.mov"
    new = [f.index for f, _ in zip(iter_frames(video, frame_step=4), range(3), strict=False)]
    with pytest.warns(DeprecationWarning, match="iter_frames"):
        old = [f.index for f, _ in zip(iter_frames(video, every=4), range(3), strict=False)]
    assert old == new == [0, 4, 8]
    with pytest.warns(DeprecationWarning, match="FaceTracker"):
        tracker = FaceTracker(every=3, detector=object(), predictor=object())  # type: ignore[arg-type]
    assert tracker.detect_every == 3
    model = create_model("bmvc2018-tiny", width=32, depth=2, input_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # untrained weights
        with pytest.warns(DeprecationWarning, match="Detector"):
            detector = Detector(model=model, every=7, backend="torch", precision="fp32")
    assert detector.detect_every == 7 and detector.attrs()["detect_every"] == 7


@pytest.mark.parametrize(
    ("module", "name", "new"),
    [
        ("facskit.io", "iter_frames", "frame_step"),
        ("facskit.io.video", "iter_video_frames", "frame_step"),
        ("facskit.faces", "FaceTracker", "detect_every"),
        ("facskit.faces.stream", "FaceFrontEnd.iter_faces", "frame_step"),
        ("facskit.analyze.detector", "Detector", "detect_every"),
        ("facskit.analyze.engine", "tracked_video_frames", "frame_step"),
    ],
)
def test_public_signatures_use_the_new_names(module: str, name: str, new: str) -> None:
    target = import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    parameters = inspect.signature(target).parameters
    assert new in parameters and "every" not in parameters


def test_a_run_folder_recorded_with_every_is_read_with_detect_every(tmp_path) -> None:
    import json

    from facskit.analyze.outdir import RUN_FILE, read_run_file

    (tmp_path / RUN_FILE).write_text(json.dumps({"every": 5, "faces": "all"}))
    assert read_run_file(tmp_path) == {"detect_every": 5, "faces": "all"}


# ------------------------------------------------------------------------------------ constants, once


def test_constants_are_one_object() -> None:
    import facskit.aus as aus
    import facskit.models.spec as spec
    import facskit.targets as targets
    from facskit.analyze import plots
    from facskit.data import index
    from facskit.teacher import au_map

    assert spec.BP4D_AUS is aus.BP4D_AUS and spec.DISFA_AUS is aus.DISFA_AUS
    assert targets.MAX_INTENSITY is au_map.MAX_INTENSITY is aus.MAX_INTENSITY == 5.0
    assert index.INTENSITY_RANGE[1] == plots.INTENSITY_RANGE[1] == aus.MAX_INTENSITY
    assert aus.OCCURRENCE_THRESHOLD == 2.0


def test_no_module_types_the_constants_again() -> None:
    sources = {path: path.read_text() for path in PACKAGE.rglob("*.py")}
    typed = {
        "occurrence threshold 2.0": re.compile(r"threshold[\w\]\[\s:|,]*=\s*2\.0\b"),
        "maximum intensity 5.0": re.compile(r"(MAX_INTENSITY|INTENSITY_MAX)\s*=\s*5\.0"),
        "AU lists": re.compile(r"^(BP4D|DISFA)_AUS\b.*=", re.MULTILINE),
    }
    for what, pattern in typed.items():
        found = sorted(str(p.relative_to(PACKAGE)) for p, text in sources.items() if pattern.search(text))
        assert found == (["aus.py"] if what != "occurrence threshold 2.0" else []), (what, found)
    chunk_defaults = [p for p, text in sources.items() if re.search(r"^DEFAULT_CHUNK_FRAMES\s*=", text, re.M)]
    assert len(chunk_defaults) == 1, chunk_defaults
