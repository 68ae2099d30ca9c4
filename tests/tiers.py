"""The test-tier policy: a test that needs something this machine lacks (a binary, envtest assets) calls
`require(...)`. On a developer's machine it skips with a loud reason; in CI (`CI` set) it fails, so a tier
that cannot run is never silently green. Import it as `from tiers import require` (tests/ is on sys.path).
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(condition: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) when `condition` is false."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"`{name}` is not on PATH; `make install` installs it")
    return path  # type: ignore[return-value]
