"""The pure planner: registry state + deployed values -> desired stable/canary, gates, rejection memory."""

from __future__ import annotations

from tickserve.registry_sync.planner import GATE_PASSED, ROLLBACK_TAG, Policy, Rejection, change_id, plan
from tickserve.registry_sync.registry import ModelState, VersionState
from tickserve.registry_sync.settings import Gate
from tickserve.registry_sync.values import Canary, Deployment, Slot

GATES = (Gate(metric="test_accuracy", op=">", threshold=0.54), Gate(metric="sharpe", op=">", threshold=1.2))
POLICY = Policy(gates=GATES)
GOOD = {"test_accuracy": 0.6, "sharpe": 1.5}
DEPLOYED_3 = Deployment(Slot("3", "s3://m/3"), None)


def version(number: int, *, aliases=(), stage="None", tags=None, metrics=GOOD) -> VersionState:
    return VersionState(
        version=str(number),
        stage=stage,
        aliases=tuple(aliases),
        tags=dict(tags or {}),
        run_id=f"run{number}",
        storage_uri=f"s3://m/{number}",
        metrics=dict(metrics),
    )


def model(*versions: VersionState) -> ModelState:
    return ModelState("signal-1m", tuple(sorted(versions, key=lambda v: -int(v.version))))


def test_a_challenger_alias_becomes_a_canary_at_the_default_traffic() -> None:
    result = plan(model(version(3, aliases=["champion"]), version(7, aliases=["challenger"])), "m", DEPLOYED_3, POLICY)
    assert result.desired == Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10))
    assert result.should_propose
    assert result.gate_verdicts == {"7": GATE_PASSED}
    assert result.summary() == ["canary version 7 at 10%"]


def test_the_legacy_staging_stage_means_canary_and_the_newest_wins() -> None:
    state = model(version(3, stage="Production"), version(5, stage="Staging"), version(6, stage="Staging"))
    assert plan(state, "m", DEPLOYED_3, POLICY).desired.canary == Canary("6", "s3://m/6", 10)


def test_an_alias_outranks_a_stage() -> None:
    state = model(version(3), version(5, aliases=["challenger"]), version(6, stage="Staging"))
    assert plan(state, "m", DEPLOYED_3, POLICY).desired.canary == Canary("5", "s3://m/5", 10)


def test_champion_on_the_canary_promotes_it_and_drops_the_canary() -> None:
    deployed = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 25))
    result = plan(model(version(3), version(7, aliases=["champion", "challenger"])), "m", deployed, POLICY)
    assert result.desired == Deployment(Slot("7", "s3://m/7"), None)
    assert result.summary() == ["promote version 7 to stable (was 3)", "drop canary 7 (now stable)"]


def test_removing_the_challenger_retires_the_canary() -> None:
    deployed = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10))
    result = plan(model(version(3, aliases=["champion"]), version(7)), "m", deployed, POLICY)
    assert result.desired == DEPLOYED_3
    assert result.summary() == ["retire canary 7"]


def test_a_traffic_tag_steps_the_canary_and_an_untagged_canary_keeps_its_share() -> None:
    deployed = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10))
    tagged = model(version(3), version(7, aliases=["challenger"], tags={"tickserve.traffic": "25"}))
    assert plan(tagged, "m", deployed, POLICY).desired.canary == Canary("7", "s3://m/7", 25)
    rolled_back = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 0))
    untagged = model(version(3), version(7, aliases=["challenger"]))
    assert not plan(untagged, "m", rolled_back, POLICY).changed


def test_an_invalid_traffic_tag_is_ignored_with_a_note() -> None:
    state = model(version(3), version(7, aliases=["challenger"], tags={"tickserve.traffic": "lots"}))
    result = plan(state, "m", DEPLOYED_3, POLICY)
    assert result.desired.canary == Canary("7", "s3://m/7", 10)
    assert "lots" in result.notes[0]


def test_a_version_failing_a_gate_gets_no_change_and_a_reason() -> None:
    weak = version(7, aliases=["challenger"], metrics={"test_accuracy": 0.6, "sharpe": 0.91})
    result = plan(model(version(3), weak), "m", DEPLOYED_3, POLICY)
    assert not result.changed
    assert result.gate_verdicts == {"7": "sharpe 0.91 < 1.2"}


def test_a_missing_metric_fails_its_gate() -> None:
    result = plan(model(version(3), version(7, aliases=["challenger"], metrics={})), "m", DEPLOYED_3, POLICY)
    assert not result.changed
    assert "test_accuracy missing" in result.gate_verdicts["7"]


def test_a_gated_promotion_keeps_the_deployed_stable_and_canary() -> None:
    deployed = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10))
    weak = version(8, aliases=["champion"], metrics={"test_accuracy": 0.5, "sharpe": 2.0})
    result = plan(model(version(3), version(7, aliases=["challenger"]), weak), "m", deployed, POLICY)
    assert result.desired == deployed


def test_matching_state_plans_nothing() -> None:
    result = plan(model(version(3, aliases=["champion"])), "m", DEPLOYED_3, POLICY)
    assert not result.changed and not result.should_propose


def test_no_stable_in_the_registry_keeps_the_deployed_stable() -> None:
    assert plan(model(version(7, aliases=["challenger"])), "m", DEPLOYED_3, POLICY).desired.stable == DEPLOYED_3.stable


def test_a_rejected_change_is_not_proposed_until_the_registry_changes() -> None:
    state = model(version(3), version(7, aliases=["challenger"]))
    first = plan(state, "m", DEPLOYED_3, POLICY)
    again = plan(state, "m", DEPLOYED_3, POLICY, [Rejection(first.change_id, first.fingerprint)])
    assert again.rejected and not again.should_propose
    moved = model(version(3), version(7, aliases=["challenger"]), version(8))
    after_change = plan(moved, "m", DEPLOYED_3, POLICY, [Rejection(first.change_id, first.fingerprint)])
    assert after_change.should_propose and after_change.change_id == first.change_id


def test_the_change_id_is_a_content_hash() -> None:
    a = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10))
    b = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 25))
    assert change_id("m", a) == change_id("m", Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10)))
    assert len({change_id("m", a), change_id("m", b), change_id("other", a)}) == 3


def test_gate_tags_written_by_registry_sync_do_not_change_the_fingerprint() -> None:
    plain = model(version(3), version(7, aliases=["challenger"]))
    tagged = model(
        version(3), version(7, aliases=["challenger"], tags={"tickserve.gate": "passed", "tickserve.pr": "x"})
    )
    assert plan(plain, "m", DEPLOYED_3, POLICY).fingerprint == plan(tagged, "m", DEPLOYED_3, POLICY).fingerprint


def test_a_rolled_back_version_is_retired_and_not_canaried_again_even_with_its_alias_back() -> None:
    deployed = Deployment(Slot("3", "s3://m/3"), Canary("7", "s3://m/7", 10))
    rolled_back = version(7, aliases=["challenger"], tags={ROLLBACK_TAG: '{"alert": "TickserveCanaryQualityWorse"}'})
    result = plan(model(version(3, aliases=["champion"]), rolled_back), "m", deployed, POLICY)
    assert result.desired == DEPLOYED_3
    assert any("not canaried again" in note for note in result.notes)
    retired = version(7, tags=rolled_back.tags)  # the receiver removed its alias; v8 is the new challenger
    newer = plan(model(version(3, aliases=["champion"]), retired, version(8, aliases=["challenger"])), "m",
                 deployed, POLICY)  # fmt: skip
    assert newer.desired.canary == Canary("8", "s3://m/8", 10), "the registry naming a new canary ends it"
