"""Read and edit one model's `stable`/`canary` in the chart values (`models[]`), through ruamel.yaml round-trip.

Comments, key order and quoting survive, and every line the edit does not touch stays byte-identical. A file that
ruamel.yaml cannot reproduce byte for byte even without an edit (unusual indentation, say) is refused with
`ValuesFormatError` instead of being reformatted inside a promotion PR.

    deployment = read_deployment(text, "ticks-1m")
    text = write_deployment(text, "ticks-1m", Deployment(stable=..., canary=None))
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString


class ValuesFormatError(ValueError):
    """The values file cannot be edited safely (missing model, or formatting a round-trip would change)."""


@dataclass(frozen=True)
class Slot:
    """A deployed model version: what the chart's `stable` holds."""

    version: str
    storage_uri: str


@dataclass(frozen=True)
class Canary(Slot):
    traffic_percent: int


@dataclass(frozen=True)
class Deployment:
    """One chart model's `stable` and optional `canary`."""

    stable: Slot | None
    canary: Canary | None


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _load(text: str) -> tuple[YAML, Any]:
    yaml = _yaml()
    data = yaml.load(text)
    if _dump(yaml, data) != text:
        raise ValuesFormatError("the values file does not survive a ruamel.yaml round-trip unchanged; not editing it")
    return yaml, data


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _entry(data: Any, chart_model: str) -> CommentedMap:
    for entry in (data or {}).get("models") or []:
        if isinstance(entry, dict) and entry.get("name") == chart_model:
            return entry
    raise ValuesFormatError(f"models[] has no entry named {chart_model!r}")


def read_deployment(text: str, chart_model: str) -> Deployment:
    entry = _entry(YAML(typ="safe").load(text), chart_model)
    stable = entry.get("stable")
    canary = entry.get("canary")
    return Deployment(
        stable=Slot(str(stable["version"]), str(stable["storageUri"])) if stable else None,
        canary=Canary(str(canary["version"]), str(canary["storageUri"]), int(canary.get("trafficPercent", 0)))
        if canary
        else None,
    )


def _pop_trailing_comment(mapping: CommentedMap, key: Any = None) -> Any:
    """Detach the comment (often just the blank line before the next section) that ruamel.yaml attaches after the
    last value of `mapping` (or after `key`), so that it stays at the end when that value is replaced."""
    if key is None:
        if not mapping:
            return None
        key = list(mapping)[-1]
    item = mapping.ca.items.get(key)
    if not item or len(item) < 3 or item[2] is None:
        return None
    token, item[2] = item[2], None
    return token


def _put_trailing_comment(mapping: CommentedMap, token: Any, key: Any = None) -> None:
    if token is None or not mapping:
        return
    key = list(mapping)[-1] if key is None else key
    item = mapping.ca.items.setdefault(key, [None, None, None, None])
    item[2] = token


def _set_slot(entry: CommentedMap, key: str, slot: Slot | None) -> None:
    if slot is None:
        if key == "stable":
            raise ValuesFormatError("the chart needs a stable version; refusing to remove it")
        current = entry.get(key)
        if isinstance(current, CommentedMap):
            trailing = _pop_trailing_comment(current)
            entry[key] = None
            _put_trailing_comment(entry, trailing, key)
        return
    fields: dict[str, Any] = {"version": DoubleQuotedScalarString(slot.version), "storageUri": slot.storage_uri}
    if isinstance(slot, Canary):
        fields["trafficPercent"] = slot.traffic_percent
    current = entry.get(key)
    if isinstance(current, CommentedMap):
        trailing = _pop_trailing_comment(current)
        for name in [name for name in current if name not in fields]:
            del current[name]
        for name, value in fields.items():
            if current.get(name) != value:
                current[name] = value
        _put_trailing_comment(current, trailing)
    else:
        trailing = _pop_trailing_comment(entry, key) if key in entry else None
        entry[key] = CommentedMap(fields)
        _put_trailing_comment(entry[key], trailing)


def write_deployment(text: str, chart_model: str, deployment: Deployment) -> str:
    """`text` with the model's stable and canary replaced by `deployment`; untouched lines stay byte-identical."""
    yaml, data = _load(text)
    entry = _entry(data, chart_model)
    _set_slot(entry, "stable", deployment.stable)
    _set_slot(entry, "canary", deployment.canary)
    return _dump(yaml, data)
