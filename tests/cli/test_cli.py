"""The one `facskit` command: help lists every sub-command with a purpose, and starts without torch."""

import subprocess
import sys

from facskit.cli import COMMANDS, main


def test_help_lists_every_command_with_a_purpose(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_module, purpose) in COMMANDS.items():
        assert name in out
        assert purpose.split()[0] in out


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from facskit.cli import main; main(['--help']); "
        "print(sorted(m for m in ('torch', 'dlib', 'av', 'cv2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_version_names_the_libraries(capsys) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    for library in ("facskit", "torch", "dlib", "av"):
        assert library in out


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facskit", "no-such-command"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown command" in result.stderr
    assert "Traceback" not in result.stderr
