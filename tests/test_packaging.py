"""The distribution installs under the `tickserve.` namespace and never shadows Hugging Face `transformers`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
    )
    return next(out.glob("tickserve-*.whl"))


def test_wheel_installs_only_under_the_tickserve_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"tickserve"}
    for component in ("predictors", "predictors/runtimes", "transformers/store", "registry_sync", "monitoring"):
        assert f"tickserve/{component}/__init__.py" in names


def test_hugging_face_transformers_still_imports_after_install(wheel: Path, tmp_path: Path) -> None:
    """A venv with the real Hugging Face `transformers` from PyPI keeps importing it after tickserve is installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "transformers"], check=True, cwd=tmp_path)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, cwd=tmp_path)
    probe = (
        "import importlib.util, transformers; from transformers import AutoConfig; "
        "print(transformers.__file__, importlib.util.find_spec('tickserve.transformers').origin)"
    )
    result = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    hf_file, ours = result.stdout.split()
    assert hf_file.endswith("site-packages/transformers/__init__.py")
    assert ours.endswith("site-packages/tickserve/transformers/__init__.py")


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """A subpackage missing from pyproject's list imports fine from a checkout but is absent from the wheel."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            on_disk.add(".".join((package, *relative.parts)))
    assert on_disk <= set(setuptools["packages"]), f"not listed: {sorted(on_disk - set(setuptools['packages']))}"
