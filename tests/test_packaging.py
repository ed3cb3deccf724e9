"""pyproject.toml: the console script and the package list point at importable code; the dependency lists
agree with requirements*.txt (what `make run` / `make test` install)."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements(name: str) -> dict[str, str]:
    """``{normalised name (with extras): specifier}`` of one requirements file, ``-r`` lines skipped."""
    out = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.update([_split(line)])
    return out


def _split(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*)", requirement.strip())
    assert match, requirement
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def test_console_script_is_the_module_entry_point(capsys):
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {"unlearn": "unlearn_core.cli:main"}
    module_name, _, attribute = scripts["unlearn"].partition(":")
    main = getattr(importlib.import_module(module_name), attribute)
    assert main is importlib.import_module("unlearn_core.__main__").main  # `python -m unlearn_core` runs the same
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0 and "usage" in capsys.readouterr().out.lower()


def test_package_list_covers_every_package_and_each_imports():
    found = set(find_packages(where=str(REPO), include=PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]))
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for top in ("unlearn_core", "unlearn_app")
               for path in (REPO / top).rglob("__init__.py")}
    assert "unlearn_core" in found and "unlearn_core.methods" in found
    assert found == on_disk, "a package the wheel would leave out, or one that is not ours"
    for name in sorted(found):
        if name.startswith("unlearn_core"):  # the app package needs the [app] extra (streamlit)
            importlib.import_module(name)


def test_dependencies_match_the_requirements_files():
    project = PYPROJECT["project"]
    declared = dict(_split(r) for r in project["dependencies"])
    extras = project["optional-dependencies"]
    for group in ("app", "ray"):
        declared.update(_split(r) for r in extras[group])
    assert declared == _requirements("requirements.txt")
    assert declared["torch"] == "==2.14.1" and declared["torchvision"] == "==0.29.1"
    tools = dict(_split(r) for r in extras["test"] if not r.startswith("unlearning-lab"))
    assert tools == _requirements("requirements-test.txt")
    assert "unlearning-lab[app,ray]" in extras["test"]
