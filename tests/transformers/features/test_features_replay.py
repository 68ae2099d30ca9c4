"""`tickserve features replay` run as a real process: its output equals the online engine, bad input fails loudly."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine

HEADER = ["symbol", "ts", "open", "high", "low", "close", "volume"]


def replay(tmp_path: Path, bars: Path, output: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tickserve", "features", "replay", "--input", str(bars), "--output", str(output)]
    return subprocess.run([*command, *options], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def write_bars(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def random_bars(seed: int, steps: int, symbols: int) -> list[list[object]]:
    """Bars in ts order; symbol i starts trading at step 3*i, so symbols become ready at different rows."""
    rng = np.random.default_rng(seed)
    closes = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (steps, symbols)), axis=0))
    rows: list[list[object]] = []
    for step in range(steps):
        for column in range(symbols):
            if step >= 3 * column:
                close = float(closes[step, column])
                rows.append(
                    [f"SYM{column}", 1_700_000_000 + 60 * step, close, close, close, close, int(rng.integers(0, 500))]
                )
    return rows


def read_output(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def test_replay_writes_the_online_values_from_each_symbols_first_ready_bar(tmp_path: Path) -> None:
    config = FeatureConfig(windows=(4, 7))
    rows = random_bars(3, 30, 3)
    result = replay(tmp_path, write_bars(tmp_path / "bars.csv", rows), tmp_path / "features.csv", "--windows", "4,7")
    assert result.returncode == 0, result.stderr
    header, written = read_output(tmp_path / "features.csv")
    assert header == ["symbol", "ts", *config.names]

    online = FeatureEngine(config)
    expected = []
    for symbol, ts, _, _, _, close, volume in rows:
        vector = online.update_bar(symbol, close, volume)
        if vector.ready:
            expected.append([symbol, str(ts), *vector.values.tolist()])
    assert [row[:2] for row in written] == [row[:2] for row in expected]
    np.testing.assert_array_equal(np.asarray([row[2:] for row in written], dtype=float), [row[2:] for row in expected])
    for column in range(3):
        bars_of_symbol = [row for row in rows if row[0] == f"SYM{column}"]
        first = next(row for row in written if row[0] == f"SYM{column}")
        assert first[1] == str(bars_of_symbol[config.max_window - 1][1])


def test_replay_uses_the_default_windows_and_iso_timestamps(tmp_path: Path) -> None:
    rows = random_bars(5, 250, 1)
    for step, row in enumerate(rows):
        row[1] = f"2026-01-02T{step // 60:02d}:{step % 60:02d}:00"
    result = replay(tmp_path, write_bars(tmp_path / "bars.csv", rows), tmp_path / "features.csv")
    assert result.returncode == 0, result.stderr
    header, written = read_output(tmp_path / "features.csv")
    assert header[2:] == FeatureConfig().names
    assert [row[1] for row in written] == [row[1] for row in rows[239:]]


@pytest.mark.parametrize(
    ("break_input", "message"),
    [
        (lambda header, rows: (header[:-1], [row[:-1] for row in rows]), "line 1, column 'volume': missing column"),
        (lambda header, rows: (header, [*rows[:4], [*rows[4][:5], "12,5", rows[4][6]], *rows[5:]]), "line 6, column 'close': '12,5' is not a number"),
        (lambda header, rows: (header, [*rows[:7], [rows[7][0], 1_600_000_000, *rows[7][2:]], *rows[8:]]), "line 9, column 'ts': '1600000000' is earlier"),
        (lambda header, rows: (header, [*rows[:7], [rows[6][0], rows[6][1], *rows[7][2:]], *rows[8:]]), "line 9, column 'ts': second bar of 'SYM1'"),
        (lambda header, rows: (header, [*rows[:2], [*rows[2][:6], "-3"], *rows[3:]]), "line 4, column 'volume': -3.0 is negative"),
    ],
    ids=["missing-column", "non-numeric", "out-of-order", "duplicate-bar", "negative-volume"],
)  # fmt: skip
def test_bad_input_fails_naming_the_row_and_column_and_keeps_the_old_output(
    tmp_path: Path, break_input, message
) -> None:
    header, rows = break_input(HEADER, random_bars(9, 12, 2))
    bars = write_bars(tmp_path / "bars.csv", rows, header)
    output = tmp_path / "features.csv"
    output.write_text("previous features\n")
    result = replay(tmp_path, bars, output, "--windows", "3")
    assert result.returncode == 1
    assert message in result.stderr
    assert output.read_text() == "previous features\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bars.csv", "features.csv"]


@pytest.mark.parametrize("windows", ["1,5", "5,x"])
def test_unusable_windows_are_a_usage_error(tmp_path: Path, windows: str) -> None:
    bars = write_bars(tmp_path / "bars.csv", random_bars(1, 5, 1))
    result = replay(tmp_path, bars, tmp_path / "features.csv", "--windows", windows)
    assert result.returncode == 2
    assert "windows" in result.stderr
    assert not (tmp_path / "features.csv").exists()
