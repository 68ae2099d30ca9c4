"""`tickserve score` run as a real process on real models (LightGBM, ONNX, TorchScript): its predictions equal
each framework's own answer on files several chunks long, bad rows are named or skipped, and a failed run never
touches an existing output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tickserve import zoo

FEATURES = [f"f{i}" for i in range(12)]
ROWS = 2_500
CHUNK = 1_000  # three chunks, the last one short


def score(*options: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tickserve", "score", "--no-progress", *options]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180)


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas() if path.suffix == ".parquet" else pd.read_csv(path)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    data = pd.DataFrame(rng.normal(size=(ROWS, len(FEATURES))), columns=FEATURES)
    data.insert(0, "id", np.arange(ROWS))
    return data


@pytest.fixture(scope="module")
def lightgbm_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("score-lgb") / "signal"
    order = zoo.signal_model(path, FEATURES, seed=3, version="5")
    return path, order


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory):
    """A torch classifier over the named features exported to ONNX, saved with a column signature."""
    import mlflow.onnx
    import onnx
    import torch
    from mlflow.models import infer_signature

    torch.manual_seed(5)
    module = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).eval()
    root = tmp_path_factory.mktemp("score-onnx")
    exported = root / "export.onnx"
    torch.onnx.export(
        module, (torch.zeros(2, len(FEATURES)),), str(exported), input_names=["x"], output_names=["scores"],
        dynamic_axes={"x": {0: "rows"}, "scores": {0: "rows"}}, dynamo=False,
    )  # fmt: skip
    example = pd.DataFrame(np.zeros((2, len(FEATURES)), dtype=np.float32), columns=FEATURES)
    signature = infer_signature(example, np.zeros((2, 2), dtype=np.float32))
    mlflow.onnx.save_model(onnx.load(str(exported)), str(root / "model"), signature=signature)
    return root / "model", module


@pytest.fixture(scope="module")
def torchscript_model(tmp_path_factory: pytest.TempPathFactory):
    """A traced TorchScript regressor with a tensor signature [-1, F]: features are taken by position."""
    import mlflow.pytorch
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    torch.manual_seed(6)
    module = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).eval()
    traced = torch.jit.trace(module, torch.zeros(2, len(FEATURES)))
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(FEATURES)), "x")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1), "edge")]),
    )
    path = tmp_path_factory.mktemp("score-ts") / "model"
    mlflow.pytorch.save_model(traced, str(path), signature=signature, serialization_format="pickle")
    return path, module


def write_input(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def check_meta(output: pd.DataFrame, name: str, version: str) -> None:
    assert set(output["model_name"]) == {name}
    assert set(output["model_version"].astype(str)) == {version}
    assert output["scored_at"].nunique() == 1


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_lightgbm_scores_over_several_chunks_equal_the_booster(tmp_path, frame, lightgbm_model, suffix) -> None:
    model, order = lightgbm_model
    source = write_input(frame, tmp_path / f"features{suffix}")
    out = tmp_path / f"scores{suffix}"
    done = score("--model", str(model), "--input", str(source), "--output", str(out), "--keep_columns", "id",
                 "--chunk_rows", str(CHUNK), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"scored {ROWS} rows" in done.stdout
    output = read(out)
    expected = lgb.Booster(model_file=str(model / "model.lgb")).predict(frame[order].to_numpy())
    assert output["id"].tolist() == frame["id"].tolist()
    np.testing.assert_allclose(output["probabilities_1"], expected, rtol=1e-6)
    np.testing.assert_allclose(output["probabilities_0"], 1 - expected, rtol=1e-5, atol=1e-7)
    check_meta(output, "signal", "5")


def test_onnx_scores_take_features_by_name_in_any_column_order(tmp_path, frame, onnx_model) -> None:
    import torch

    model, module = onnx_model
    shuffled = frame[["id", *reversed(FEATURES)]]
    source = write_input(shuffled, tmp_path / "features.parquet")
    out = tmp_path / "scores.csv"
    done = score("--model", str(model), "--input", str(source), "--output", str(out), "--keep_columns", "id",
                 "--chunk_rows", str(CHUNK), "--model_name", "edge-onnx", "--model_version", "9", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = read(out)
    with torch.no_grad():
        expected = module(torch.from_numpy(frame[FEATURES].to_numpy(np.float32))).numpy()
    np.testing.assert_allclose(output[["scores_0", "scores_1"]].to_numpy(), expected, rtol=1e-4, atol=1e-5)
    check_meta(output, "edge-onnx", "9")


def test_torchscript_scores_take_unnamed_columns_in_signature_order(tmp_path, frame, torchscript_model) -> None:
    import torch

    model, module = torchscript_model
    unnamed = frame[FEATURES].set_axis([f"col{i}" for i in range(len(FEATURES))], axis=1)
    source = write_input(unnamed, tmp_path / "features.csv")
    out = tmp_path / "scores.parquet"
    done = score("--model", str(model), "--input", str(source), "--output", str(out), "--chunk_rows", str(CHUNK),
                 cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = module(torch.from_numpy(frame[FEATURES].to_numpy(np.float32))).numpy()[:, 0]
    np.testing.assert_allclose(read(out)["edge"], expected, rtol=1e-5, atol=1e-6)


def test_a_bad_row_stops_the_run_naming_it_and_leaves_the_old_output_untouched(tmp_path, frame, lightgbm_model):
    model, _ = lightgbm_model
    bad = frame.astype(object)
    bad.loc[1733, "f4"] = "12abc"  # data row 1734, in the second chunk
    source = write_input(bad, tmp_path / "features.csv")
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"yesterday's scores")
    done = score("--model", str(model), "--input", str(source), "--output", str(out), "--chunk_rows", str(CHUNK),
                 cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert "row 1734: feature 'f4' is '12abc', not a finite number" in done.stderr
    assert "--skip_bad_rows" in done.stderr
    assert out.read_bytes() == b"yesterday's scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.csv", "scores.parquet"]  # no temp file left


def test_skip_bad_rows_scores_the_rest_and_reports_how_many_were_skipped(tmp_path, frame, lightgbm_model) -> None:
    model, order = lightgbm_model
    source = write_input(frame, tmp_path / "features.csv")
    lines = source.read_text().splitlines()
    lines[10] = lines[10].replace(lines[10].split(",")[3], "", 1)  # data row 10: a missing value
    lines[2001] = lines[2001].replace(lines[2001].split(",")[5], "abc", 1)  # data row 2001: not a number
    lines[2400] = ",".join(lines[2400].split(",")[:4])  # data row 2400: too few fields
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.parquet"
    done = score("--model", str(model), "--input", str(source), "--output", str(out), "--keep_columns", "id",
                 "--chunk_rows", str(CHUNK), "--skip_bad_rows", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipped 3 bad rows (2 with missing or non-numeric features, 1 CSV lines with the wrong" in done.stdout
    output = read(out)
    kept = frame[~frame["id"].isin([9, 2000, 2399])]
    assert output["id"].tolist() == kept["id"].tolist()
    expected = lgb.Booster(model_file=str(model / "model.lgb")).predict(kept[order].to_numpy())
    np.testing.assert_allclose(output["probabilities_1"], expected, rtol=1e-6)


def test_a_line_with_the_wrong_number_of_fields_is_named_by_its_row(tmp_path, frame, lightgbm_model) -> None:
    model, _ = lightgbm_model
    source = write_input(frame.head(50), tmp_path / "features.csv")
    lines = source.read_text().splitlines()
    lines[42] += ",1.0"
    source.write_text("\n".join(lines) + "\n")
    done = score("--model", str(model), "--input", str(source), "--output", str(tmp_path / "out.csv"), cwd=tmp_path)
    assert done.returncode == 1
    assert "row 42: CSV line 43 has the wrong number of fields" in done.stderr


def test_from_bars_scores_the_features_replay_computes(tmp_path) -> None:
    rng = np.random.default_rng(11)
    steps, symbols = 400, 2
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (steps, symbols)), axis=0))
    bars = pd.DataFrame(
        [
            [f"S{s}", 1_700_000_000 + 60 * t, closes[t, s], closes[t, s], closes[t, s], closes[t, s], int(rng.integers(1, 900))]
            for t in range(steps)
            for s in range(symbols)
        ],
        columns=["symbol", "ts", "open", "high", "low", "close", "volume"],
    )  # fmt: skip
    bars_path = tmp_path / "bars.csv"
    bars.to_csv(bars_path, index=False)
    features_path = tmp_path / "features.csv"
    replay = subprocess.run(
        [sys.executable, "-m", "tickserve", "features", "replay", "--input", str(bars_path), "--output",
         str(features_path), "--windows", "10,20"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    features = pd.read_csv(features_path)
    names = [column for column in features.columns if column not in ("symbol", "ts")]
    booster = zoo.train_lightgbm(features[names], (features[names[0]] > 0).astype(int), seed=1, rounds=5)
    model = zoo.save_lightgbm_mlflow(tmp_path / "model", booster, features[names].head(3), version="2")
    out = tmp_path / "scores.parquet"
    done = score("--model", str(model), "--input", str(bars_path), "--from_bars", "--windows", "[10,20]",
                 "--output", str(out), "--chunk_rows", "100", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = read(out)
    assert output[["symbol", "ts"]].values.tolist() == features[["symbol", "ts"]].values.tolist()
    np.testing.assert_allclose(output["probabilities_1"], booster.predict(features[names].to_numpy()), rtol=1e-6)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing model", "does not exist"),
        ("feature missing from the file", "the file lacks ['f11']"),
        ("unknown output format", "unknown table format '.txt'"),
        ("unknown kept column", "columns to keep ['nope'] are not in the file"),
    ],
)
def test_bad_inputs_exit_1_with_the_cause(tmp_path, frame, lightgbm_model, case, message) -> None:
    model, _ = lightgbm_model
    data = frame.drop(columns=["f11"]) if case == "feature missing from the file" else frame
    source = write_input(data.head(20), tmp_path / "features.parquet")
    options = {
        "--model": str(tmp_path / "nowhere") if case == "missing model" else str(model),
        "--input": str(source),
        "--output": str(tmp_path / ("scores.txt" if case == "unknown output format" else "scores.parquet")),
        "--keep_columns": "nope" if case == "unknown kept column" else "id",
    }
    done = score(*[part for item in options.items() for part in item], cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert message in done.stderr
    assert not list(tmp_path.glob("scores*"))


def test_a_model_without_a_native_runtime_scores_through_the_pyfunc_fallback(tmp_path, frame) -> None:
    """An sklearn pipeline (scaler + logistic regression) has no native runtime: the predictors' pyfunc runtime
    scores it, and the answers are the pipeline's own."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = (frame["f0"] + frame["f1"] > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[FEATURES], labels)
    model = tmp_path / "pipeline"
    signature = infer_signature(frame[FEATURES].head(), pipeline.predict(frame[FEATURES].head()))
    mlflow.sklearn.save_model(pipeline, str(model), signature=signature, pip_requirements=["scikit-learn"])
    source = write_input(frame, tmp_path / "features.parquet")
    out = tmp_path / "scores.parquet"
    done = score("--model", str(model), "--input", str(source), "--output", str(out), "--chunk_rows", str(CHUNK),
                 "--keep_columns", "id", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = read(out)
    prediction = next(
        column for column in output.columns if column not in ("id", "model_name", "model_version", "scored_at")
    )
    assert output[prediction].tolist() == pipeline.predict(frame[FEATURES]).tolist()
    assert output[prediction].nunique() == 2


def peak_rss_mb_of_scoring(model: Path, source: Path, out: Path) -> float:
    """`tickserve score` in a fresh interpreter; its peak RSS (VmHWM) in MB."""
    code = (
        "import sys\nfrom tickserve.predictors.score.cli import main\n"
        f"assert main(['--no-progress', '--model', {str(model)!r}, '--input', {str(source)!r}, '--output', "
        f"{str(out)!r}, '--chunk_rows', '4096']) == 0\n"
        "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def test_memory_stays_flat_on_a_file_four_times_larger(tmp_path, lightgbm_model) -> None:
    """1.2M rows x 12 features is 115 MB of float64, 86 MB more than 300k rows; scoring it peaks within 20 MB of
    scoring 300k rows, because only a chunk (and pyarrow's fixed read buffers) is held at a time."""
    model, order = lightgbm_model
    peaks = {}
    for rows in (300_000, 1_200_000):
        data = pd.DataFrame(np.random.default_rng(rows).normal(size=(rows, len(order))), columns=order)
        source = write_input(data, tmp_path / f"features-{rows}.parquet")
        del data
        # The smaller of two runs: a peak can jump by tens of MB with the allocators' timing on a loaded machine (seen
        # once in CI: +29 MB), while reading the whole file would add 86 MB or more to every run.
        peaks[rows] = min(peak_rss_mb_of_scoring(model, source, tmp_path / f"scores-{rows}.parquet") for _ in range(2))
        assert pq.ParquetFile(tmp_path / f"scores-{rows}.parquet").metadata.num_rows == rows
    assert peaks[1_200_000] - peaks[300_000] < 20, peaks
