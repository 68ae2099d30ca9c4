"""`tickserve optimize` run as a real process on real PyTorch models (an MLP saved as a pickled nn.Module, an
LSTM saved as TorchScript, both over a [60, F] window): exported, optimised and quantised variants that answer
like the original, a refused variant reported with its numbers, clear exits for models it cannot take, and
registration of the best variant into a real MLflow server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from optimize_models import WINDOW, save_torch_mlflow, window_lstm, window_mlp, windows

F = 8
BENCH = ("--bench_seconds", "0.1", "--no-progress")
ONNX_VARIANTS = ["onnx-fp32", "onnx-optimised", "onnx-int8"]


def optimize(*options: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tickserve", "optimize", *BENCH, *options]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def report(out: Path) -> dict:
    return json.loads((out / "optimize.json").read_text())


def torch_answer(module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(batch)).numpy()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("optimize-models")
    mlp, lstm = window_mlp(F, seed=1), window_lstm(F, seed=2)
    return {
        "mlp": (save_torch_mlflow(root / "mlp", mlp, F, windows(256, F, seed=3)), mlp),
        "lstm": (save_torch_mlflow(root / "lstm", lstm, F, None, script=True), lstm),
    }


def check_variants(out: Path, module, fresh: np.ndarray) -> dict:
    """Every variant was built, gated and benchmarked; the FP32 ones pass; the ONNX files answer like the torch
    module at any batch size (the batch dimension is dynamic)."""
    document = report(out)
    rows = {row["variant"]: row for row in document["variants"]}
    assert list(rows) == ["original", *ONNX_VARIANTS]
    for name, row in rows.items():
        assert row["p50_ms_b1"] > 0 and row["p99_ms_b32"] >= row["p50_ms_b32"] > 0, name
        assert row["rows_per_s"] > 0 and row["peak_rss_mb"] > row["runtime_rss_mb"] > 0 and row["model_mb"] > 0, name
    for name in ONNX_VARIANTS:
        parity = rows[name]["parity"]
        if name == "onnx-int8":  # rows near p_up = p_down may flip under INT8, more or fewer by CPU: gated, not fixed
            assert parity["directional_agreement"] >= 0.98
            agrees = parity["directional_agreement"] >= 0.995 and parity["top_class_agreement"] >= 0.995
            assert rows[name]["passed"] == agrees
        else:
            assert rows[name]["passed"], rows[name]["refused"]
            assert parity["directional_agreement"] == 1.0 and parity["max_abs_diff"] < 1e-5
        session = ort.InferenceSession(rows[name]["file"], providers=["CPUExecutionProvider"])
        for batch in (fresh[:1], fresh[:7]):
            tolerance = 2e-2 if name == "onnx-int8" else 1e-5
            np.testing.assert_allclose(
                session.run(None, {"window": batch})[0], torch_answer(module, batch), atol=tolerance
            )
    assert Path(rows["onnx-int8"]["file"]).stat().st_size < Path(rows["onnx-fp32"]["file"]).stat().st_size
    assert document["best"] in ONNX_VARIANTS
    return document


def test_an_mlp_module_is_exported_optimised_and_quantised_and_every_variant_passes(tmp_path, models) -> None:
    path, module = models["mlp"]
    done = optimize("--model", str(path), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fp16: skipped, this onnxruntime has no GPU execution provider" in done.stdout + done.stderr
    assert "p50 b1 ms" in done.stdout and "onnx-int8" in done.stdout
    check_variants(tmp_path / "out", module, windows(8, F, seed=99))


def test_an_lstm_torchscript_is_optimised_against_held_out_data(tmp_path, models) -> None:
    path, module = models["lstm"]
    held_out = tmp_path / "held_out.npy"
    np.save(held_out, windows(300, F, seed=4))
    done = optimize("--model", str(path), "--data", str(held_out), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = check_variants(tmp_path / "out", module, windows(8, F, seed=98))
    assert document["sample_rows"] == 300


def test_an_onnx_model_is_optimised_and_quantised_against_itself(tmp_path, models) -> None:
    """An ONNX file as the source: the original is that file on ONNX Runtime, no export step."""
    _, module = models["mlp"]
    exported = tmp_path / "window.onnx"
    torch.onnx.export(module, (torch.zeros(2, WINDOW, F),), str(exported), input_names=["window"],
                      dynamic_axes={"window": {0: "rows"}}, dynamo=False)  # fmt: skip
    held_out = tmp_path / "held_out.npy"
    np.save(held_out, windows(200, F, seed=9))
    done = optimize("--model", str(exported), "--data", str(held_out), "--output_dir", str(tmp_path / "out"),
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["variant"]: row for row in report(tmp_path / "out")["variants"]}
    assert list(rows) == ["original", "onnx-optimised", "onnx-int8"]
    assert rows["original"]["runtime"] == "onnxruntime" and rows["original"]["file"] == str(exported)
    assert rows["onnx-optimised"]["parity"]["max_abs_diff"] < 1e-5 and rows["onnx-optimised"]["passed"]
    int8 = rows["onnx-int8"]["parity"]
    agrees = int8["directional_agreement"] >= 0.995 and int8["top_class_agreement"] >= 0.995
    assert rows["onnx-int8"]["passed"] == agrees and int8["max_abs_diff"] > 0  # quantised, and gated


def test_register_of_a_local_model_without_a_name_exits_2_before_any_work(tmp_path, models) -> None:
    path, _ = models["mlp"]
    done = optimize("--model", str(path), "--output_dir", str(tmp_path / "out"), "--register", cwd=tmp_path)
    assert done.returncode == 2
    assert "--register of a local model needs --registered_name" in done.stderr
    assert not (tmp_path / "out" / "model.fp32.onnx").exists()


def test_a_variant_beyond_the_thresholds_is_refused_with_its_numbers(tmp_path, models) -> None:
    path, _ = models["mlp"]
    done = optimize("--model", str(path), "--output_dir", str(tmp_path / "out"), "--max_abs_diff", "1e-5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["variant"]: row for row in report(tmp_path / "out")["variants"]}
    int8 = rows["onnx-int8"]
    assert not int8["passed"]
    assert int8["refused"] == [f"max abs diff {int8['parity']['max_abs_diff']:.3g} > 1e-05"]
    assert f"refused onnx-int8: max abs diff {int8['parity']['max_abs_diff']:.3g} > 1e-05" in done.stderr
    assert "REFUSED" in done.stdout
    assert report(tmp_path / "out")["best"] in ("onnx-fp32", "onnx-optimised")


def test_the_parity_gate_refuses_a_deliberately_broken_variant(tmp_path, models) -> None:
    """The gate run on a variant whose last layer's weights are negated: its direction flips on most rows."""
    from tickserve.predictors.optimize.cli import OptimizeSettings, gate
    from tickserve.predictors.optimize.source import inspect
    from tickserve.predictors.optimize.variants import ORIGINAL, Variant

    path, module = models["mlp"]
    broken = window_mlp(F, seed=1)
    with torch.no_grad():
        broken.net[-1].weight.neg_()
    exported = tmp_path / "broken.onnx"
    torch.onnx.export(broken, (torch.zeros(2, WINDOW, F),), str(exported), input_names=["window"],
                      dynamic_axes={"window": {0: "rows"}}, dynamo=False)  # fmt: skip
    source = inspect(path)
    settings = OptimizeSettings(model=str(path), output_dir=tmp_path, progress=False)
    original = Variant(ORIGINAL, "torch", str(source.model_file))
    sample = windows(400, F, seed=5)
    _, outcome = gate([original, Variant("broken", "onnxruntime", str(exported))], source, sample, settings)
    expected_direction = np.mean(
        np.sign(np.diff(torch_answer(module, sample), axis=1)) == np.sign(np.diff(torch_answer(broken, sample), axis=1))
    )
    assert outcome.parity.directional_agreement == pytest.approx(expected_direction)
    assert expected_direction < 0.5
    assert outcome.refused[0] == f"directional agreement {expected_direction:.2%} < 99.50%"
    assert outcome.refused[1].startswith("top-class agreement")
    assert not outcome.passed


def test_every_variant_refused_exits_6_and_registers_nothing(tmp_path, models) -> None:
    path, _ = models["mlp"]
    done = optimize("--model", str(path), "--output_dir", str(tmp_path / "out"), "--max_abs_diff", "1e-12",
                    "--register", "--registered_name", "never", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert "every variant failed the parity gate" in done.stderr
    assert report(tmp_path / "out")["best"] is None


def test_a_lightgbm_model_is_unsupported_exit_3(tmp_path) -> None:
    from tickserve import zoo

    model = tmp_path / "lgb"
    zoo.signal_model(model, ["a", "b", "c"], seed=1, version="1", rows=100, rounds=2)
    done = optimize("--model", str(model), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 3
    assert "unsupported model" in done.stderr and "lightgbm" in done.stderr


def test_a_model_without_input_example_or_data_exits_4(tmp_path, models) -> None:
    path, _ = models["lstm"]
    done = optimize("--model", str(path), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 4
    assert "missing input example" in done.stderr and "--data" in done.stderr


def test_an_operator_onnx_cannot_export_exits_5_naming_it(tmp_path) -> None:
    class Spectral(torch.nn.Module):
        def forward(self, window: torch.Tensor) -> torch.Tensor:
            return torch.softmax(torch.linalg.svdvals(window)[:, :2], dim=-1)

    model = save_torch_mlflow(tmp_path / "svd", Spectral().eval(), F, windows(4, F, seed=6))
    done = optimize("--model", str(model), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert "cannot export to ONNX" in done.stderr and "linalg_svd" in done.stderr


@pytest.mark.integration
def test_the_best_variant_is_registered_as_a_new_version_with_its_evidence(tmp_path, models) -> None:
    """A real `mlflow server`: the source is registered as version 1 with alias challenger; optimize resolves the
    alias, registers the best variant as version 2 with tags and metrics, and `tickserve score` scores version 2
    (the ONNX runtime) like the torch original."""
    import mlflow
    import mlflow.pytorch
    from forge_servers import start_mlflow
    from mlflow.tracking import MlflowClient
    from optimize_models import window_signature

    _, module = models["mlp"]
    with start_mlflow(tmp_path / "mlflow") as server:
        env = {"MLFLOW_TRACKING_URI": server.url}
        mlflow.set_tracking_uri(server.url)
        client = MlflowClient(server.url)
        with mlflow.start_run():
            mlflow.pytorch.log_model(
                module, name="model", signature=window_signature(F), input_example=windows(128, F, seed=7),
                registered_model_name="window-mlp", serialization_format="pickle", pip_requirements=["torch"],
            )  # fmt: skip
        client.set_registered_model_alias("window-mlp", "challenger", "1")

        done = optimize("--model", "models:/window-mlp@challenger", "--output_dir", str(tmp_path / "out"),
                        "--register", cwd=tmp_path, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        document = report(tmp_path / "out")
        assert document["source_version"] == "1" and document["registered_version"] == "2"
        version = client.get_model_version("window-mlp", "2")
        best = next(row for row in document["variants"] if row["variant"] == document["best"])
        assert version.tags["tickserve.optimized_from"] == "models:/window-mlp/1"
        assert version.tags["tickserve.source_version"] == "1"
        assert version.tags["tickserve.variant"] == document["best"]
        assert float(version.tags["tickserve.directional_agreement"]) == pytest.approx(
            best["parity"]["directional_agreement"], rel=1e-5
        )
        assert float(version.tags["tickserve.p50_ms_b1"]) == pytest.approx(best["p50_ms_b1"], rel=1e-5)
        metrics = client.get_run(version.run_id).data.metrics
        assert {"directional_agreement", "p50_ms_b1", "p99_ms_b32", "rows_per_s", "peak_rss_mb"} <= set(metrics)

        fresh = windows(50, F, seed=8)
        flat = pd.DataFrame(fresh.reshape(50, -1), columns=[f"v{i}" for i in range(WINDOW * F)])
        flat.to_parquet(tmp_path / "windows.parquet")
        scored = subprocess.run(
            [sys.executable, "-m", "tickserve", "score", "--no-progress", "--model", "models:/window-mlp/2",
             "--input", str(tmp_path / "windows.parquet"), "--output", str(tmp_path / "scores.parquet")],
            capture_output=True, text=True, timeout=180, env={**os.environ, **env},
        )  # fmt: skip
        assert scored.returncode == 0, scored.stderr
        output = pd.read_parquet(tmp_path / "scores.parquet")
        tolerance = 2e-2 if document["best"] == "onnx-int8" else 1e-5
        expected = torch_answer(module, fresh)
        np.testing.assert_allclose(output[["probabilities_0", "probabilities_1"]], expected, atol=tolerance)
        assert set(output["model_name"]) == {"window-mlp"} and set(output["model_version"]) == {"2"}
