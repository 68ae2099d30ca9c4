"""Static checks of images/Dockerfile (Docker does not run here; e2e builds the images): every shipped target runs
as a numeric non-root user, no credential is baked in, the build is multi-stage without a pip cache, and the
build context is an allowlist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "images" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
TARGETS = ("predictor", "predictor-cuda", "transformer")
CREDENTIAL_NAMES = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY)", re.I)


def stages(text: str) -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    result: dict[str, list[str]] = {}
    current = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I):
            current = match.group(1) or f"stage{len(result)}"
            result[current] = [line]
        elif current is not None:
            result[current].append(line)
    return result


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.split(None, 1)[0].upper() == keyword]


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    return stages(DOCKERFILE.read_text())


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_numeric_non_root_user(dockerfile: dict[str, list[str]], target: str) -> None:
    users = instructions(dockerfile[target], "USER")
    assert users, f"{target} sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]


@pytest.mark.parametrize("target", TARGETS)
def test_target_copies_only_the_built_virtualenv(dockerfile: dict[str, list[str]], target: str) -> None:
    """Multi-stage: the shipped image gets /opt/venv from a build stage, never the source tree or pip's cache."""
    copies = instructions(dockerfile[target], "COPY")
    assert copies and all(copy.startswith("--from=build-") and "/opt/venv" in copy for copy in copies), copies


def test_no_credentials_in_env_or_args(dockerfile: dict[str, list[str]]) -> None:
    for name, stage in dockerfile.items():
        for keyword in ("ENV", "ARG"):
            for line in instructions(stage, keyword):
                assert not CREDENTIAL_NAMES.search(line), f"{name}: {keyword} {line}"


def test_pip_never_keeps_a_cache(dockerfile: dict[str, list[str]]) -> None:
    installs = [line for stage in dockerfile.values() for line in instructions(stage, "RUN") if "pip install" in line]
    assert installs
    assert all(line.count("pip install") == line.count("pip install --no-cache-dir") for line in installs), installs


def test_cpu_predictor_has_no_cuda_torch(dockerfile: dict[str, list[str]]) -> None:
    """The CPU build installs torch only on request and then from the CPU wheel index."""
    run = " ".join(instructions(dockerfile["build-cpu"], "RUN"))
    assert ".[torch]" not in run
    assert 'if [ "$WITH_TORCH" = "true" ]; then pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" torch' in run
    assert "ARG WITH_TORCH=false" in dockerfile["build-cpu"]


def test_build_context_is_an_allowlist() -> None:
    lines = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "tickserve",
        "predictors",
        "transformers",
        "registry_sync",
        "monitoring",
    }


def test_checks_catch_a_root_user_and_a_baked_secret() -> None:
    bad = stages("FROM python:3.11-slim AS predictor\nENV AWS_SECRET_ACCESS_KEY=abc\nUSER root\n")
    assert instructions(bad["predictor"], "USER") == ["root"]
    assert CREDENTIAL_NAMES.search(instructions(bad["predictor"], "ENV")[0])
