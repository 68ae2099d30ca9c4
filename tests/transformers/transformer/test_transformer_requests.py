"""Request decoding and settings of the feature transformer (no servers needed)."""

from __future__ import annotations

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from pydantic import ValidationError

from tickserve.transformers.transformer.model import requested_horizon, requested_symbols
from tickserve.transformers.transformer.settings import TransformerSettings, horizon_seconds

SETTINGS = TransformerSettings(horizons={"1h": "signal-1h", "4h": "signal-4h"})


def request(symbols: list[str] | None, parameters: dict | None = None, name: str = "symbols") -> InferRequest:
    inputs = []
    if symbols is not None:
        tensor = InferInput(name, [len(symbols)], "BYTES")
        tensor.set_data_from_numpy(np.array([s.encode() for s in symbols], dtype=object), binary_data=False)
        inputs.append(tensor)
    return InferRequest("signal", inputs, parameters=parameters)


def test_symbols_and_horizon_are_read_from_the_request() -> None:
    assert requested_symbols(request(["BTC", "ETH"]), SETTINGS.max_symbols) == ["BTC", "ETH"]
    assert requested_horizon(request(["BTC"], {"horizon": "4h"}), SETTINGS) == "4h"
    assert requested_horizon(request(["BTC"]), SETTINGS) == "1h", "default: the first horizon"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (request(None), "BYTES input named 'symbols'"),
        (request(["BTC"], name="tickers"), "BYTES input named 'symbols'"),
        (request([]), "at least one symbol"),
        (request(["BTC", "BTC"]), "more than once"),
        (request([""]), "no empty ones"),
    ],
)
def test_bad_symbol_inputs_are_invalid_input(bad: InferRequest, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        requested_symbols(bad, SETTINGS.max_symbols)


def test_an_unknown_horizon_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match=r"'2h'.*\['1h', '4h'\]"):
        requested_horizon(request(["BTC"], {"horizon": "2h"}), SETTINGS)


def test_horizon_labels_convert_to_seconds() -> None:
    assert [horizon_seconds(label) for label in ("90s", "15m", "4h", "1d", "1.5h")] == [90, 900, 14400, 86400, 5400]
    with pytest.raises(ValueError, match=r"<number><s\|m\|h\|d>"):
        horizon_seconds("4 hours")


def test_settings_refuse_unusable_horizons(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="horizon"):
        TransformerSettings(horizons={"soon": "m"})
    with pytest.raises(ValidationError, match="default_horizon"):
        TransformerSettings(horizons={"1h": "m"}, default_horizon="4h")
    monkeypatch.setenv("TICKSERVE_HORIZONS", '{"24h": "signal-24h"}')
    assert TransformerSettings().default_horizon == "24h"


@pytest.mark.parametrize("horizon", [["1h"], {"h": "1h"}, 1])
def test_a_horizon_that_is_not_a_string_is_invalid_input(horizon: object) -> None:
    with pytest.raises(InvalidInput, match="parameter 'horizon' must be a string"):
        requested_horizon(request(["BTC"], {"horizon": horizon}), SETTINGS)


def test_more_symbols_than_the_limit_is_invalid_input_naming_it() -> None:
    assert requested_symbols(request(["A", "B", "C"]), max_symbols=3) == ["A", "B", "C"]
    with pytest.raises(InvalidInput, match="names 4 symbols; the limit is 3 per request"):
        requested_symbols(request(["A", "B", "C", "D"]), max_symbols=3)
    with pytest.raises(InvalidInput, match="the limit is 1024"):
        requested_symbols(request([f"S{i}" for i in range(1025)]), TransformerSettings().max_symbols)
