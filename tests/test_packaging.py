"""The wheel carries every Python package of the source tree (an unlisted subpackage would be
silently missing from a non-editable install)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top in ("codec_cupy", "client", "backends", "splitwire"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
