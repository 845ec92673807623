"""Every dependency has an upper bound, and requirements.lock pins each one (with hashes)
inside pyproject.toml's range, so `make test` installs exactly the tested set."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO_ROOT


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] + project["optional-dependencies"]["test"]
    return [Requirement(t) for t in texts]


def pinned() -> dict[str, tuple[Version, int]]:
    """Package -> (pinned version, number of hashes)."""
    text = (REPO_ROOT / "requirements.lock").read_text()
    out: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==([^ \\\n]+)", block)
        if match:
            name = canonicalize_name(match[1])
            out[name] = (Version(match[2]), block.count("--hash=sha256:"))
    return out


def test_every_dependency_has_an_upper_bound() -> None:
    unbounded = [str(r) for r in declared() if not any(s.operator == "<" for s in r.specifier)]
    assert unbounded == []


def test_the_lock_pins_every_dependency_inside_its_range_with_hashes() -> None:
    locked = pinned()
    assert len(locked) > 20
    for requirement in declared():
        version, _ = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"{requirement} vs {version}"
    assert all(hashes >= 1 for _, hashes in locked.values())
