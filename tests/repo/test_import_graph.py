"""The layers of docs/architecture.md hold: no upward import and no import cycle (tools/import_graph.py)."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "import_graph.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_package_has_no_upward_import_and_no_cycle() -> None:
    result = subprocess.run([sys.executable, str(TOOL)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upward imports: 0" in result.stdout
    assert "private names imported: 0" in result.stdout
    assert "cycles: 0" in result.stdout


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "facskit" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_tool_finds_an_upward_import_even_when_lazy(tmp_path: Path) -> None:
    tool = _tool()
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "io/__init__.py": "def f():\n    from facskit.analyze.runner import g\n",
            "analyze/__init__.py": "",
            "analyze/runner.py": "from facskit.io import f\n",
        },
    )
    lines, clean = tool.report(root)
    assert not clean
    assert any("facskit.io:2 -> facskit.analyze.runner (lazy)" in line for line in lines)


def test_tool_finds_a_cycle_but_accepts_models_lazy_re_export(tmp_path: Path) -> None:
    tool = _tool()
    files = {
        "__init__.py": "",
        "models/__init__.py": "def __getattr__(name):\n    from facskit.models import spec\n",
        "models/spec.py": "from facskit.models import base\n",
        "models/base.py": "def f():\n    from facskit.models.spec import g\n",
        "data/__init__.py": "",
        "data/a.py": "from facskit.data.b import x\n",
        "data/b.py": "from . import a\n",
    }
    lines, clean = tool.report(_package(tmp_path, files))
    assert not clean
    assert "cycles: 1 (+1 accepted)" in lines
    assert "upward imports: 0" in lines


def test_version_from_the_package_root_is_not_an_upward_import(tmp_path: Path) -> None:
    tool = _tool()
    files = {
        "__init__.py": "__version__ = '1'\ndef __getattr__(name):\n    from facskit.analyze import D\n",
        "analyze/__init__.py": "",
        "io/__init__.py": "import facskit\nfrom facskit import __version__\nV = facskit.__version__\n",
    }
    lines, clean = tool.report(_package(tmp_path, files))
    assert clean, lines


def test_tool_finds_a_private_name_imported_from_another_module(tmp_path: Path) -> None:
    tool = _tool()
    files = {
        "__init__.py": "",
        "io/__init__.py": "from facskit.io.a import _helper, __doc__\n",
        "io/a.py": "def _helper():\n    pass\n",
    }
    lines, clean = tool.report(_package(tmp_path, files))
    assert not clean
    assert "  facskit.io:1 -> facskit.io.a._helper" in lines
