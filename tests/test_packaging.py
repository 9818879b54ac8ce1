"""A non-editable install ships every sub-package: each one must be listed in pyproject.toml."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_installation():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {"fwdlearn." + ".".join(p.parent.relative_to(ROOT / "fwdlearn").parts)
               for p in (ROOT / "fwdlearn").rglob("__init__.py") if p.parent != ROOT / "fwdlearn"}
    on_disk |= {"fwdlearn"} | {name for name, folder in setuptools["package-dir"].items() if name != "fwdlearn"}
    assert on_disk - listed == set(), f"sub-packages missing from pyproject.toml: {sorted(on_disk - listed)}"
    for name, folder in setuptools["package-dir"].items():
        assert (ROOT / folder / "__init__.py").is_file(), f"{name} maps to {folder}, which is not a package"
