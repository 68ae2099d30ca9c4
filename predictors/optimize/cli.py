"""`tickserve optimize`: turn a PyTorch or ONNX model into ONNX variants, keep those that answer like the
original, measure them side by side, and optionally register the best one.

    tickserve optimize --model models:/signal-lstm/7 --output_dir optimized --register
    tickserve optimize --model ./lstm-model --data holdout.npy --output_dir optimized

Steps: export to ONNX with a dynamic batch (PyTorch input) -> ORT offline graph optimisation -> dynamic INT8
-> FP16 when a GPU execution provider is present; every variant is compared with the original on the
held-out sample (`--data`, else the model's input example) and refused below the thresholds; all are
benchmarked in fresh processes; a table is printed and written to <output_dir>/optimize.json. The best
passing variant is the one with the lowest p50 latency at batch 1 (the realtime path); `--register` registers
it as a new version with its parity and benchmark figures and its source version.

Exit codes: 0 at least one variant passed; 1 unreadable data, a failed benchmark or registration; 2 bad
settings; 3 unsupported model; 4 no input example and no --data; 5 an operator ONNX cannot export; 6 every
variant failed the parity gate.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from tqdm import tqdm

from tickserve.predictors.optimize import build
from tickserve.predictors.optimize.bench import BenchError, run_isolated
from tickserve.predictors.optimize.parity import Parity, Thresholds, measure, refusals
from tickserve.predictors.optimize.register import TAG_PREFIX, RegisterError, register, tensor_signature
from tickserve.predictors.optimize.sample import MissingExample, SampleError, load_sample
from tickserve.predictors.optimize.source import Source, UnsupportedModel, inspect
from tickserve.predictors.optimize.variants import ORIGINAL, Variant, open_runner
from tickserve.predictors.score.model_ref import ModelRef, ModelRefError, resolve
from tickserve.settings import TickserveSettings, parse_settings, usage_error

PROG = "tickserve optimize"
EXIT_FAILED, EXIT_UNSUPPORTED, EXIT_NO_EXAMPLE, EXIT_UNEXPORTABLE, EXIT_PARITY = 1, 3, 4, 5, 6


class OptimizeSettings(TickserveSettings):
    """Which model to optimise, what counts as answering like the original, and where results go."""

    model_config = SettingsConfigDict(env_prefix="TICKSERVE_OPTIMIZE_", extra="ignore", cli_implicit_flags=True)

    model: str = Field(
        description="model directory or file, or a registered version: models:/name/7, models:/name@alias"
    )
    output_dir: Path = Field(description="where the ONNX variants and optimize.json are written")
    data: Path | None = Field(None, description="held-out inputs: .npy, or parquet/CSV of (flattened) features")
    sample_rows: int = Field(2048, ge=1, description="rows of the held-out sample compared and benchmarked")
    min_directional_agreement: float = Field(
        0.995, ge=0, le=1, description="refuse a variant whose sign(p_up - p_down) agrees on fewer rows"
    )
    min_top_class_agreement: float = Field(
        0.995, ge=0, le=1, description="refuse a classifier variant whose top class agrees on fewer rows"
    )
    max_abs_diff: float | None = Field(None, ge=0, description="refuse a variant whose outputs differ by more")
    opset: int = Field(17, ge=9, description="ONNX opset of the export")
    threads: int = Field(1, ge=1, description="intra-op threads of every variant in the parity run and benchmark")
    bench_seconds: float = Field(1.0, gt=0, description="timed seconds per variant and batch size")
    register_best: bool = Field(
        False, alias="register", description="register the best passing variant as a new MLflow model version"
    )
    registered_name: str | None = Field(None, description="registered model name (default: the source's name)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    progress: bool = Field(True, description="progress bars on stderr")


@dataclass
class Outcome:
    variant: Variant
    parity: Parity | None = None
    refused: list[str] = field(default_factory=list)
    bench: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.variant.name != ORIGINAL and self.parity is not None and not self.refused

    def row(self) -> dict[str, object]:
        return {
            "variant": self.variant.name,
            "runtime": self.variant.runtime,
            "provider": self.variant.provider,
            "file": self.variant.path,
            "parity": self.parity.as_dict() if self.parity else None,
            "refused": self.refused,
            "passed": self.passed,
            **self.bench,
        }


def build_variants(source: Source, sample: np.ndarray, settings: OptimizeSettings) -> list[Variant]:
    """The original and every ONNX variant this machine can run, written into the output directory."""
    out = settings.output_dir
    original = Variant(ORIGINAL, "torch" if source.kind == "pytorch" else "onnxruntime", str(source.model_file))
    variants = [original]
    steps = ["export"] if source.kind == "pytorch" else []
    steps += ["optimise", "int8", "fp16"]
    fp32 = out / "model.fp32.onnx" if source.kind == "pytorch" else source.model_file
    gpu = build.gpu_provider()
    for step in tqdm(steps, desc="building variants", unit="variant", disable=not settings.progress):
        if step == "export":
            from tickserve.predictors.optimize.source import load_torch

            module = load_torch(source.model_file)
            build.export(module, sample, fp32, source.input_name, source.output_names, settings.opset)
            variants.append(Variant("onnx-fp32", "onnxruntime", str(fp32)))
        elif step == "optimise":
            path = build.optimise_graph(fp32, out / "model.optimised.onnx")
            variants.append(Variant("onnx-optimised", "onnxruntime", str(path)))
        elif step == "int8":
            variants.append(
                Variant("onnx-int8", "onnxruntime", str(build.quantise_int8(fp32, out / "model.int8.onnx")))
            )
        elif gpu is None:
            tqdm.write("fp16: skipped, this onnxruntime has no GPU execution provider (FP16 does not pay on CPU)")
        else:
            variants.append(
                Variant("onnx-fp16", "onnxruntime", str(build.convert_fp16(fp32, out / "model.fp16.onnx")), gpu)
            )
    return variants


def gate(variants: list[Variant], source: Source, sample: np.ndarray, settings: OptimizeSettings) -> list[Outcome]:
    """Run every variant on the sample and compare it with the original."""
    thresholds = Thresholds(settings.min_directional_agreement, settings.min_top_class_agreement, settings.max_abs_diff)
    reference = open_runner(variants[0], source.input_name, settings.threads)(sample)
    outcomes = [Outcome(variants[0])]
    for variant in tqdm(variants[1:], desc="parity gate", unit="variant", disable=not settings.progress):
        outcome = Outcome(variant)
        try:
            outcome.parity = measure(reference, open_runner(variant, source.input_name, settings.threads)(sample))
            outcome.refused = refusals(outcome.parity, thresholds)
        except Exception as error:  # a variant that cannot run is refused like one that answers wrongly
            outcome.refused = [f"does not run: {str(error).splitlines()[0] if str(error) else type(error).__name__}"]
        outcomes.append(outcome)
    return outcomes


def benchmark(outcomes: list[Outcome], source: Source, sample: np.ndarray, settings: OptimizeSettings) -> None:
    sample_path = settings.output_dir / "sample.npy"
    np.save(sample_path, sample)
    for outcome in tqdm(outcomes, desc="benchmark", unit="variant", disable=not settings.progress):
        if outcome.variant.name == ORIGINAL or outcome.parity is not None:
            outcome.bench = run_isolated(
                outcome.variant, sample_path, source.input_name, settings.threads, settings.bench_seconds
            )


COLUMNS = (
    ("variant", "variant", "{}"),
    ("size MB", "model_mb", "{:.3f}"),
    ("load ms", "load_ms", "{:.1f}"),
    ("p50 b1 ms", "p50_ms_b1", "{:.3f}"),
    ("p99 b1 ms", "p99_ms_b1", "{:.3f}"),
    ("p50 b32 ms", "p50_ms_b32", "{:.3f}"),
    ("p99 b32 ms", "p99_ms_b32", "{:.3f}"),
    ("rows/s", "rows_per_s", "{:,.0f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("model RSS MB", "model_rss_mb", "{:.1f}"),
    ("direction", "directional_agreement", "{:.2%}"),
    ("top class", "top_class_agreement", "{:.2%}"),
    ("max abs diff", "max_abs_diff", "{:.2g}"),
    ("verdict", "verdict", "{}"),
)


def table(outcomes: list[Outcome]) -> str:
    """The side-by-side table: one line per variant; `model RSS` is peak RSS minus the runtime's own RSS."""
    lines = []
    for outcome in outcomes:
        values: dict[str, object] = {"variant": outcome.variant.name, **outcome.bench}
        if outcome.bench:
            values["model_rss_mb"] = outcome.bench["peak_rss_mb"] - outcome.bench["runtime_rss_mb"]
        if outcome.parity is not None:
            values.update(outcome.parity.as_dict())
        values["verdict"] = "reference" if outcome.variant.name == ORIGINAL else "pass" if outcome.passed else "REFUSED"
        lines.append([fmt.format(values[key]) if values.get(key) is not None else "-" for _, key, fmt in COLUMNS])
    header = [title for title, _, _ in COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    render = [
        " | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *lines]
    ]
    return "\n".join([render[0], "-+-".join("-" * width for width in widths), *render[1:]])


def register_variant(
    best: Outcome,
    outcomes: list[Outcome],
    ref: ModelRef,
    source: Source,
    sample: np.ndarray,
    settings: OptimizeSettings,
) -> str:
    name = settings.registered_name or ref.name
    assert best.parity is not None
    original = outcomes[0].bench
    figures = {**{k: v for k, v in best.parity.as_dict().items() if v is not None}, **best.bench}
    figures["speedup_p50_b1"] = original["p50_ms_b1"] / best.bench["p50_ms_b1"]
    figures["rows_per_s_vs_original"] = best.bench["rows_per_s"] / original["rows_per_s"]
    tags = {
        TAG_PREFIX + "optimized_from": f"models:/{ref.name}/{ref.version}" if ref.registered else str(ref.path),
        TAG_PREFIX + "source_version": ref.version or "",
        TAG_PREFIX + "variant": best.variant.name,
        TAG_PREFIX + "parity_thresholds": (
            f"direction>={settings.min_directional_agreement} top_class>={settings.min_top_class_agreement}"
            + (f" max_abs_diff<={settings.max_abs_diff}" if settings.max_abs_diff is not None else "")
        ),
    }
    signature = source.mlflow_signature
    if signature is None:
        output = open_runner(best.variant, source.input_name, settings.threads)(sample[:2])
        signature = tensor_signature(source.input_name, sample, source.output_names, output)
    return register(Path(best.variant.path), name, signature, figures, tags, settings.tracking_uri)


def run(settings: OptimizeSettings) -> int:
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    ref = resolve(settings.model, settings.output_dir / "source", settings.tracking_uri)
    if settings.register_best and not (settings.registered_name or ref.registered):
        usage_error(PROG, "--register of a local model needs --registered_name")
    source = inspect(ref.path)
    sample = load_sample(source, settings.data, settings.sample_rows)
    variants = build_variants(source, sample, settings)
    outcomes = gate(variants, source, sample, settings)
    benchmark(outcomes, source, sample, settings)
    print(table(outcomes))
    passing = [outcome for outcome in outcomes if outcome.passed]
    best = min(passing, key=lambda outcome: outcome.bench["p50_ms_b1"], default=None)
    report: dict[str, object] = {
        "model": settings.model,
        "source_version": ref.version,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "sample_rows": len(sample),
        "threads": settings.threads,
        "variants": [outcome.row() for outcome in outcomes],
        "best": best.variant.name if best else None,
    }
    for outcome in outcomes:
        if outcome.refused:
            print(f"refused {outcome.variant.name}: {'; '.join(outcome.refused)}", file=sys.stderr)
    if best is not None and settings.register_best:
        report["registered_version"] = register_variant(best, outcomes, ref, source, sample, settings)
        print(f"registered {best.variant.name} as version {report['registered_version']}")
    (settings.output_dir / "optimize.json").write_text(json.dumps(report, indent=2))
    print(f"results in {settings.output_dir / 'optimize.json'}")
    if best is None:
        print(f"{PROG}: every variant failed the parity gate; nothing to use or register", file=sys.stderr)
        return EXIT_PARITY
    print(f"best passing variant: {best.variant.name} ({best.variant.path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    settings, _ = parse_settings(OptimizeSettings, PROG, argv, description=__doc__.splitlines()[0])
    try:
        return run(settings)
    except UnsupportedModel as error:
        print(f"{PROG}: unsupported model: {error}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except MissingExample as error:
        print(f"{PROG}: missing input example: {error}", file=sys.stderr)
        return EXIT_NO_EXAMPLE
    except build.ExportError as error:
        print(f"{PROG}: cannot export to ONNX: {error}", file=sys.stderr)
        return EXIT_UNEXPORTABLE
    except (ModelRefError, SampleError, BenchError, RegisterError, OSError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_FAILED
