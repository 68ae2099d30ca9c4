"""registry-sync settings: YAML plus TICKSERVE_REGISTRY_SYNC_* environment, secrets only from env or files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickserve.registry_sync.cli import main
from tickserve.registry_sync.settings import SettingsError, load_settings

MINIMAL = """
tracking_uri: http://mlflow:5000
repo:
  url: https://git.example/org/gitops.git
  manifests_command: [bash, hack/render-manifests.sh]
forge:
  kind: gitea
  api_url: http://gitea:3000
  repository: org/gitops
models:
  - registered_model: signal-1m
    chart_model: ticks-1m
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry-sync.yaml"
    path.write_text(text)
    return path


def test_defaults_follow_the_design(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.stable_aliases == ["champion"] and settings.stable_stages == ["Production"]
    assert settings.canary_aliases == ["challenger"] and settings.canary_stages == ["Staging"]
    assert [(g.metric, g.op, g.threshold) for g in settings.gates] == [
        ("test_accuracy", ">", 0.54),
        ("sharpe", ">", 1.2),
    ]
    assert settings.repo.base_branch == "main" and settings.canary_traffic_percent == 10


def test_the_environment_overrides_the_file_and_carries_the_token(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TICKSERVE_REGISTRY_SYNC_FORGE__TOKEN", "s3cr3t-token")
    monkeypatch.setenv("TICKSERVE_REGISTRY_SYNC_CANARY_TRAFFIC_PERCENT", "5")
    monkeypatch.setenv("TICKSERVE_REGISTRY_SYNC_REPO__BASE_BRANCH", "deploy")
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.canary_traffic_percent == 5
    assert settings.repo.base_branch == "deploy" and settings.repo.url.startswith("https://git.example")
    assert settings.forge.resolved_token() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(settings) and "s3cr3t-token" not in str(settings.model_dump())


def test_a_token_file_is_read(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    text = MINIMAL.replace("  repository: org/gitops", f"  repository: org/gitops\n  token_file: {token}")
    assert load_settings(write(tmp_path, text)).forge.resolved_token() == "from-a-file"


def test_a_malformed_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"registry-sync\.yaml"):
        load_settings(write(tmp_path, "models: [\n"))


@pytest.mark.parametrize(("section", "key"), [("forge", "token"), ("webhook", "secret")])
def test_a_secret_in_the_file_is_refused_naming_the_field(tmp_path: Path, section: str, key: str) -> None:
    text = (
        MINIMAL + f"{section}:\n  {key}: oops\n"
        if section == "webhook"
        else MINIMAL.replace("  repository: org/gitops", "  repository: org/gitops\n  token: oops")
    )
    with pytest.raises(SettingsError, match=rf"{section}\.{key}: secrets are not read from files"):
        load_settings(write(tmp_path, text))


def test_an_invalid_field_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="canary_traffic_percent"):
        load_settings(write(tmp_path, MINIMAL + "canary_traffic_percent: 140\n"))
    with pytest.raises(SettingsError, match=r"forge\.api_url"):
        load_settings(write(tmp_path, MINIMAL.replace("  api_url: http://gitea:3000\n", "")))


def test_the_command_exits_2_naming_the_invalid_field(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "--config",
                str(write(tmp_path, MINIMAL + "gates:\n  - metric: sharpe\n    op: '!='\n    threshold: 1\n")),
                "--once",
            ]
        )
        == 2
    )
    assert "gates.0.op" in capsys.readouterr().err
