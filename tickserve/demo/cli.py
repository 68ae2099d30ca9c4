"""`tickserve demo`: the whole data path on one machine, on embedded defaults.

1. Train: a synthetic market runs through the serving feature engine; LightGBM learns two horizons and a
   small PyTorch MLP (exported to ONNX) challenges the short one.
2. Register: the models go into an embedded MLflow (sqlite, local artifacts) and are promoted to production;
   serving downloads `models:/<name>@production` as KServe's storage initializer would.
3. Serve: a local redis-server (unless one already answers on 6379), ingest (a live synthetic feed), one
   KServe predictor per model, the feature transformer for the stable models and a second one, on the
   `canary` track, for the challenger, and the prediction quality monitor.
4. Watch: strategy-like requests for every symbol on every bar (a tenth go to the canary), with a live view of
   the latest signals, request latency percentiles and directional accuracy per model and track.

Ctrl-C stops everything cleanly; `--duration SECONDS` runs unattended and exits 0 when every server stayed
up and predictions were served.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import sys
import time
from collections import deque
from pathlib import Path

import httpx
import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickserve import launch
from tickserve.launch import RedisServer, Server, metric_samples
from tickserve.processes import ServerProcess, port_open
from tickserve.settings import Track, parse_settings

STABLE_HORIZONS = ("15s", "1m")
CHALLENGER = "mlp"
CANARY_SHARE = 0.1
ACCURACY, SCORED = "tickserve_quality_directional_accuracy", "tickserve_quality_scored_total"


def default_workdir() -> Path:
    return Path.home() / ".cache" / "tickserve" / "demo"


class DemoSettings(BaseSettings):
    """The demo's own knobs (TICKSERVE_DEMO_* or flags); the servers it starts keep their defaults."""

    model_config = SettingsConfigDict(env_prefix="TICKSERVE_DEMO_", extra="ignore", cli_implicit_flags=True)

    duration: float | None = Field(
        None, gt=0, description="run this many seconds, then stop and exit (default: until Ctrl-C)"
    )
    symbols: int = Field(6, ge=1, le=50, description="symbols in the synthetic market")
    bar_seconds: float = Field(
        0.25, gt=0, description="bar interval of the live feed (event time follows the wall clock)"
    )
    training_bars: int = Field(4000, ge=600, description="bars per symbol of training history")
    workdir: Path = Field(default_factory=default_workdir, description="MLflow store, model copies and server logs")
    redis_url: str | None = Field(None, description="use this Redis instead of a local one")
    seed: int = Field(7, description="seed of the synthetic market (the live feed uses seed + 1)")
    promotion: bool = Field(
        False,
        description="instead of serving: a registry promotion end to end (embedded MLflow, local GitOps repository, "
        "registry-sync with forge none), then exit",
    )


def symbols(count: int) -> list[str]:
    return [f"SYM{index:02d}" for index in range(count)]


def horizon_bars(label: str, bar_seconds: float) -> int:
    from tickserve.transformers.transformer.settings import horizon_seconds

    return max(1, round(horizon_seconds(label) / bar_seconds))


def model_name(horizon: str, challenger: bool = False) -> str:
    return f"signal-{horizon}" + (f"-{CHALLENGER}" if challenger else "")


def train_and_register(settings: DemoSettings) -> dict[str, tuple[Path, str]]:
    """Train, register and promote every model; return name -> (production model dir, registry version)."""
    from tickserve.demo.registry import LocalRegistry
    from tickserve.demo.training import accuracy, synthetic_dataset, train_lightgbm, train_mlp_onnx
    from tickserve.transformers.features.engine import FeatureConfig
    from tickserve.transformers.ingest.synthetic import SyntheticMarket

    config = FeatureConfig()
    bars = {label: horizon_bars(label, settings.bar_seconds) for label in STABLE_HORIZONS}
    print(f"[1/4] training on {settings.training_bars} synthetic bars x {settings.symbols} symbols", flush=True)
    market = SyntheticMarket(symbols(settings.symbols), seed=settings.seed)
    dataset = synthetic_dataset(market, config, settings.training_bars, list(bars.values()), settings.bar_seconds)
    registry = LocalRegistry(settings.workdir / "mlflow", experiment="tickserve-demo")
    registered = []
    for label, steps in bars.items():
        train_x, train_y, test_x, test_y = dataset.split(steps)
        booster = train_lightgbm(train_x, train_y)
        score = accuracy(booster.predict(test_x), test_y)
        print(f"      {model_name(label)}: LightGBM, holdout directional accuracy {score:.3f}", flush=True)
        registered.append(
            registry.log_lightgbm(model_name(label), booster, train_x.head(5), {"holdout_accuracy": score})
        )
    train_x, train_y, test_x, test_y = dataset.split(bars[STABLE_HORIZONS[0]])
    onnx_path = train_mlp_onnx(train_x, train_y, settings.workdir / "build" / "mlp.onnx")
    challenger = model_name(STABLE_HORIZONS[0], challenger=True)
    registered.append(registry.log_onnx(challenger, onnx_path, train_x.head(5), {}))
    print(f"      {challenger}: PyTorch MLP exported to ONNX", flush=True)

    print(f"[2/4] registering in MLflow at {registry.tracking_uri} and promoting to production", flush=True)
    models = {}
    for model in registered:
        registry.promote(model)
        target = settings.workdir / "models" / model.name
        shutil.rmtree(target, ignore_errors=True)
        models[model.name] = (registry.download_production(model.name, target), model.version)
    return models


def local_redis(settings: DemoSettings, logs: Path) -> tuple[str, RedisServer | None]:
    """The Redis to use: the configured one, one already answering on 6379, or a redis-server we start."""
    if settings.redis_url:
        return settings.redis_url, None
    if port_open(6379):
        with contextlib.suppress(redis.RedisError):
            if redis.Redis(port=6379, socket_timeout=1).ping():
                return "redis://127.0.0.1:6379/0", None
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("tickserve demo: no Redis answers on 6379 and redis-server is not installed (`make install`)")
    server = RedisServer(binary, cwd=logs)
    return server.url, server


class Stack:
    """The local servers, started together and stopped in reverse order."""

    def __init__(self) -> None:
        self.processes: list[ServerProcess] = []

    def start(self, processes: list[ServerProcess]) -> None:
        for process in processes:  # launch all, then wait: the KServe servers import in parallel
            process.launch()
            self.processes.append(process)
        for process in processes:
            process.wait_ready()

    def dead(self) -> list[str]:
        return [process.name for process in self.processes if not process.alive()]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def serving_processes(
    settings: DemoSettings, models: dict[str, tuple[Path, str]], redis_url: str, logs: Path
) -> tuple[list[Server], dict[str, str], Server]:
    """Predictors, transformers, ingest and monitor; returns them, the transformer URLs by track, the monitor."""
    predictors = {
        name: launch.predictor(
            name, model_dir, model_version=version, track="canary" if name.endswith(CHALLENGER) else "stable", cwd=logs
        )
        for name, (model_dir, version) in models.items()
    }
    routes: dict[Track, dict[str, str]] = {
        "stable": {label: model_name(label) for label in STABLE_HORIZONS},
        "canary": {STABLE_HORIZONS[0]: model_name(STABLE_HORIZONS[0], challenger=True)},
    }
    transformers = {
        track: launch.transformer(
            redis_url,
            {model: predictors[model].http for model in horizons.values()},
            horizons,
            track=track,
            name=f"transformer-{track}",
            args=["--max_feature_age_seconds", str(max(5.0, 20 * settings.bar_seconds))],
            cwd=logs,
        )
        for track, horizons in routes.items()
    }
    ingest = launch.ingest(
        redis_url,
        args=["--source", "synthetic", "--synthetic_symbols", ",".join(symbols(settings.symbols)),
              "--synthetic_seed", str(settings.seed + 1), "--synthetic_interval_seconds", str(settings.bar_seconds),
              "--synthetic_history_bars", "300"],
        cwd=logs,
    )  # fmt: skip
    monitor = launch.monitor(redis_url, args=["--poll_seconds", "0.5", "--window", "100"], cwd=logs)
    processes = [*predictors.values(), *transformers.values(), ingest, monitor]
    return processes, {track: server.url for track, server in transformers.items()}, monitor


class LiveView:
    """What the demo shows: latest signal per symbol and horizon, latency percentiles, accuracy per model."""

    def __init__(self) -> None:
        self.latencies_ms: deque[float] = deque(maxlen=2000)
        self.signals: dict[tuple[str, str], tuple[float, float, str, bool]] = {}
        self.served = 0
        self.errors: dict[str, int] = {}
        self.accuracy: list[tuple[str, str, str, float, float]] = []

    def record(self, horizon: str, answer: dict, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        outputs = {output["name"]: output["data"] for output in answer["outputs"]}
        track = "canary" if answer.get("parameters", {}).get("model", "").endswith(CHALLENGER) else "stable"
        for index, symbol in enumerate(outputs["symbol"]):
            self.signals[(symbol, f"{horizon}/{track}")] = (
                outputs["prediction"][index],
                outputs["confidence"][index],
                outputs["model_version"][index],
                outputs["cached"][index],
            )
            self.served += 1

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")

    def read_accuracy(self, metrics_text: str) -> None:
        rows = {}
        for name, labels, value in metric_samples(metrics_text):
            if labels.get("scope") != "all" or name not in (ACCURACY, SCORED):
                continue
            key = (labels["model"], labels["track"], labels["horizon"])
            accuracy, scored = rows.get(key, (float("nan"), 0.0))
            if name == ACCURACY:
                accuracy = value
            else:
                scored += value
            rows[key] = (accuracy, scored)
        self.accuracy = [(*key, accuracy, scored) for key, (accuracy, scored) in sorted(rows.items())]

    def render(self, elapsed: float) -> str:
        columns = sorted({column for _, column in self.signals})
        symbols_seen = sorted({symbol for symbol, _ in self.signals})
        lines = [f"tickserve demo  t={elapsed:6.1f}s  served={self.served}  errors={sum(self.errors.values())}"]
        lines.append(
            f"request latency (transformer round trip, last {len(self.latencies_ms)}): "
            f"p50 {self.percentile(50):.2f} ms  p99 {self.percentile(99):.2f} ms"
        )
        lines.append("")
        lines.append("symbol  " + "".join(f"{column:>24}" for column in columns))
        for symbol in symbols_seen:
            cells = []
            for column in columns:
                value = self.signals.get((symbol, column))
                cells.append(f"{value[0]:+8.3f} conf {value[1]:.2f} v{value[2]:<3}" if value else "")
            lines.append(f"{symbol:<8}" + "".join(f"{cell:>24}" for cell in cells))
        lines.append("")
        lines.append("directional accuracy (quality monitor, realised returns):")
        if not self.accuracy:
            lines.append("  waiting for the first horizon to pass ...")
        for model, track, horizon, accuracy, scored in self.accuracy:
            lines.append(f"  {model:<18} {track:<7} {horizon:>4}  {accuracy:6.3f}  over {scored:.0f} predictions")
        if self.errors:
            lines.append("errors: " + ", ".join(f"{reason} x{count}" for reason, count in sorted(self.errors.items())))
        return "\n".join(lines)


async def drive(
    settings: DemoSettings, transformers: dict[str, str], monitor_url: str, stack: Stack, stop: asyncio.Event
) -> LiveView:
    """Request every symbol's signal once per bar per horizon; redraw the view once a second."""
    view = LiveView()
    names = symbols(settings.symbols)
    interactive = sys.stdout.isatty()
    started = last_draw = time.monotonic()
    rng = random.Random(settings.seed)
    async with httpx.AsyncClient(timeout=5.0) as client:
        while not stop.is_set():
            for horizon in STABLE_HORIZONS:
                canary = horizon == STABLE_HORIZONS[0] and rng.random() < CANARY_SHARE
                url = f"{transformers['canary' if canary else 'stable']}/v2/models/signal/infer"
                body = {
                    "inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [len(names)], "data": names}],
                    "parameters": {"horizon": horizon},
                }
                began = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                except httpx.HTTPError as error:
                    view.error(type(error).__name__)
                    continue
                if response.status_code == 200:
                    view.record(horizon, response.json(), (time.perf_counter() - began) * 1000)
                else:
                    view.error(f"HTTP {response.status_code}: {response.text[:60]}")
            if time.monotonic() - last_draw >= 1.0:
                last_draw = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    view.read_accuracy((await client.get(monitor_url)).text)
                screen = view.render(last_draw - started)
                print(("\033[H\033[J" + screen) if interactive else screen + "\n", flush=True)
                if stack.dead():
                    print(f"tickserve demo: server(s) stopped unexpectedly: {', '.join(stack.dead())}", flush=True)
                    break
            if settings.duration and time.monotonic() - started >= settings.duration:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.bar_seconds)
    return view


def main(argv: list[str] | None = None) -> int:
    settings, _ = parse_settings(DemoSettings, "tickserve demo", argv, description=__doc__.split("\n")[0])
    if settings.promotion:
        from tickserve.registry_sync.demo import promotion_demo

        return 0 if promotion_demo(settings.workdir / "promotion") else 1
    logs = settings.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        models = train_and_register(settings)
    except KeyboardInterrupt:
        print("tickserve demo: interrupted while training; nothing was started", file=sys.stderr)
        return 130
    stack = Stack()
    stop = asyncio.Event()
    dead: list[str] = []
    try:
        redis_url, redis_process = local_redis(settings, logs)
        print(f"[3/4] starting servers (Redis {redis_url}; logs in {logs})", flush=True)
        if redis_process:
            stack.start([redis_process])
        processes, transformers, monitor = serving_processes(settings, models, redis_url, logs)
        stack.start(processes)
        print("[4/4] streaming ticks; Ctrl-C stops", flush=True)
        loop = asyncio.new_event_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        view = loop.run_until_complete(drive(settings, transformers, f"{monitor.url}/metrics", stack, stop))
        loop.close()
        dead = stack.dead()
    finally:
        stack.stop()
    print(
        f"stopped: {view.served} predictions served, p50 {view.percentile(50):.2f} ms, p99 {view.percentile(99):.2f} ms"
        + (f"; servers that died: {', '.join(dead)}" if dead else "")
    )
    return 0 if view.served and not dead else 1


if __name__ == "__main__":
    sys.exit(main())
