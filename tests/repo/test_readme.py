"""The README's test command is exactly what CI runs, so the two can never drift apart."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line for line in lines if line.startswith("pip install") and "pytest" in line][-1].strip()


def test_readme_test_command_is_what_ci_runs() -> None:
    assert _ci_command() in (ROOT / "README.md").read_text()


def test_readme_shows_the_demo() -> None:
    assert "facskit demo" in (ROOT / "README.md").read_text()
