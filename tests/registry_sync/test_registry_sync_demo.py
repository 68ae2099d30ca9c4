"""The demo's promotion (embedded MLflow, local bare repository, forge `none`) runs end to end."""

from __future__ import annotations

from pathlib import Path

from tickserve.registry_sync.demo import promotion_demo


def test_the_demo_promotes_a_challenger_through_canary_to_stable(tmp_path: Path) -> None:
    lines: list[str] = []
    assert promotion_demo(tmp_path / "demo", say=lines.append)
    text = "\n".join(lines)
    assert "+    canary:" in text and "trafficPercent: 10" in text
    assert "+    canary: null" in text and "3. after the merge: registry-sync in_sync" in text
