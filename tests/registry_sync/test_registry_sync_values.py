"""The values edit: ruamel.yaml round-trip, byte-identical outside the edited model, golden files checked by eye."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tickserve.registry_sync.values import (
    Canary,
    Deployment,
    Slot,
    ValuesFormatError,
    read_deployment,
    write_deployment,
)

GOLDEN = Path(__file__).parent / "golden"
CHART = Path(__file__).resolve().parents[2] / "charts" / "tickserve"
VALUE_FILES = [CHART / "values.yaml", *sorted((CHART / "ci").glob("*-values.yaml"))]

STABLE_1 = Slot("1", "s3://tickserve-models/ticks-1m/1")
CANARY_7 = Canary("7", "s3://tickserve-models/ticks-1m/7", 10)
STABLE_7 = Slot("7", "s3://tickserve-models/ticks-1m/7")


def test_adding_a_canary_matches_the_golden_file_byte_for_byte() -> None:
    before = (GOLDEN / "values.yaml").read_text()
    after = write_deployment(before, "ticks-1m", Deployment(STABLE_1, CANARY_7))
    assert after == (GOLDEN / "values-canary-7.yaml").read_text()


def test_promoting_the_canary_matches_the_golden_file_byte_for_byte() -> None:
    before = (GOLDEN / "values-canary-7.yaml").read_text()
    after = write_deployment(before, "ticks-1m", Deployment(STABLE_7, None))
    assert after == (GOLDEN / "values-promoted-7.yaml").read_text()


@pytest.mark.parametrize("values_file", VALUE_FILES, ids=lambda p: p.name)
def test_an_edit_touches_only_the_model_entry_and_reads_back(values_file: Path) -> None:
    before = values_file.read_text()
    wanted = Deployment(Slot("9", "s3://m/9"), Canary("11", "s3://m/11", 25))
    after = write_deployment(before, "ticks-1m", wanted)
    assert read_deployment(after, "ticks-1m") == wanted
    old_lines, new_lines = before.splitlines(), after.splitlines()
    # everything before the stable block and after the model entry is the same text
    start = next(i for i, line in enumerate(old_lines) if line.strip() == "- name: ticks-1m")
    assert new_lines[:start] == old_lines[:start]
    old_rest = [line for line in old_lines[start + 1 :] if not line.startswith("      ") and "canary" not in line]
    new_rest = [line for line in new_lines[start + 1 :] if not line.startswith("      ") and "canary" not in line]
    assert new_rest == old_rest
    # and undoing the edit restores the original values (modulo an explicit `canary: null`)
    original = read_deployment(before, "ticks-1m")
    restored = write_deployment(after, "ticks-1m", original)
    assert read_deployment(restored, "ticks-1m") == original
    assert [line for line in restored.splitlines() if line != "    canary: null"] == [
        line for line in before.splitlines() if line != "    canary: null"
    ]


def test_other_models_in_the_file_are_left_alone() -> None:
    before = (CHART / "ci" / "knative-values.yaml").read_text()
    after = write_deployment(before, "ticks-1m", Deployment(STABLE_7, None))
    assert read_deployment(after, "ticks-15m") == read_deployment(before, "ticks-15m")
    assert after.endswith(before[before.index("  - name: ticks-15m") :])


def test_an_unknown_model_is_refused_naming_it() -> None:
    with pytest.raises(ValuesFormatError, match="ticks-5m"):
        write_deployment((GOLDEN / "values.yaml").read_text(), "ticks-5m", Deployment(STABLE_7, None))


def test_a_file_that_would_be_reformatted_is_refused() -> None:
    odd = "models:\n-   name: ticks-1m\n    stable: {version: '1', storageUri: s3://x}\n"
    with pytest.raises(ValuesFormatError, match="round-trip"):
        write_deployment(odd, "ticks-1m", Deployment(STABLE_7, None))


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_the_edited_values_render_the_canary_in_both_deployment_modes(mode: str, helm: Path, tmp_path: Path) -> None:
    before = (CHART / "ci" / f"{mode}-values.yaml").read_text()
    edited = tmp_path / "values.yaml"
    edited.write_text(
        write_deployment(before, "ticks-1m", Deployment(Slot("3", "s3://m/3"), Canary("8", "s3://m/8", 30)))
    )
    rendered = subprocess.run(
        [str(helm), "template", "tickserve", str(CHART), "--namespace", "tickserve", "--values", str(edited)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (isvc,) = [
        doc
        for doc in YAML(typ="safe").load_all(rendered)
        if doc and doc["kind"] == "InferenceService" and doc["metadata"]["name"] == "ticks-1m"
    ]
    spec = isvc["spec"]
    uris = json.dumps(spec)
    if mode == "knative":
        assert spec["predictor"]["canaryTrafficPercent"] == 30 and "s3://m/8" in uris and "canary" not in spec
    else:
        assert spec["predictor"]["name"] == "v3" and spec["canary"][0]["trafficPercent"] == 30
        assert spec["canary"][0]["predictor"]["name"] == "v8" and "s3://m/8" in json.dumps(spec["canary"])
