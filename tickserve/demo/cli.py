"""`tickserve demo`: the whole data path on one machine, on embedded defaults.

1. Train: a synthetic market runs through the serving feature engine; LightGBM learns two horizons and a
   small PyTorch MLP (exported to ONNX) challenges the short one (`--bad_challenger`: with its answers inverted).
2. Register: the models go into an embedded MLflow (sqlite, local artifacts); the LightGBM models are promoted
   to production and the MLP, the next version of the short model, gets the `challenger` alias. Serving
   downloads `models:/<name>@<alias>` as KServe's storage initializer would.
3. Serve: a local redis-server (unless one already answers on 6379), ingest (a live synthetic feed), one
   KServe predictor per version, the feature transformer for the stable track and a second one, on the
   `canary` track, for the challenger, and the prediction quality monitor with its judge.
4. Alert: real Prometheus scrapes every server and evaluates the shipped rules (with `for:` shortened); real
   Alertmanager delivers rollback alerts to the rollback receiver, which rolls the canary back locally (its
   traffic share to 0, the MLflow version tagged and its alias removed; see `rollback`).
5. Watch: strategy-like requests for every symbol on every bar (`--canary_share` of the short horizon's go to
   the canary), with a live view of the latest signals, latency percentiles, accuracy per model and track, and
   the canary's judge verdict, alerts and rollback as they happen.

Ctrl-C stops everything cleanly; `--duration SECONDS` runs unattended. Exit status 0 when every server stayed
up and predictions were served and, with `--bad_challenger`, the canary was rolled back (the demo then ends
`--after_rollback_seconds` later).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickserve import launch
from tickserve.demo import alerting
from tickserve.demo.rollback import LocalRollback, TrafficSplit
from tickserve.demo.rollout import RolloutView
from tickserve.launch import RedisServer, Server, metric_samples
from tickserve.monitoring.rollback.receiver import PATH as RECEIVER_PATH
from tickserve.monitoring.rollback.receiver import RollbackReceiver
from tickserve.processes import ServerProcess, port_open
from tickserve.registry_sync.registry import Registry
from tickserve.settings import Track, parse_settings

STABLE_HORIZONS = ("15s", "1m")
CANARY_HORIZON = STABLE_HORIZONS[0]
NAMESPACE = "demo"  # the `namespace` label Prometheus adds, as a cluster's scrape config would
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
    bad_challenger: bool = Field(
        False,
        description="make the canary bad on purpose (the challenger's answers inverted): the quality judge finds it "
        "worse, Prometheus fires TickserveCanaryQualityWorse, Alertmanager delivers it and the rollback receiver "
        "rolls the canary back; the demo then ends (`make demo` sets this)",
    )
    canary_share: float = Field(
        0.1, gt=0, le=0.5, description="share of the short horizon's requests sent to the canary (canaryTrafficPercent)"
    )
    judge_min_scored: int = Field(
        100, ge=1, description="scored outcomes per track before the quality judge gives a verdict (the monitor's)"
    )
    alert_for_seconds: float = Field(
        5.0, gt=0, description="every alert rule's `for:` in the demo's Prometheus (the shipped rules wait minutes)"
    )
    after_rollback_seconds: float = Field(
        10.0,
        ge=0,
        description="with bad_challenger: keep serving stable only for this long after the rollback, then end",
    )


def symbols(count: int) -> list[str]:
    return [f"SYM{index:02d}" for index in range(count)]


def horizon_bars(label: str, bar_seconds: float) -> int:
    from tickserve.transformers.transformer.settings import horizon_seconds

    return max(1, round(horizon_seconds(label) / bar_seconds))


def model_name(horizon: str) -> str:
    return f"signal-{horizon}"


@dataclass(frozen=True)
class Served:
    """A registry version to serve: its model directory (what /mnt/models holds) and version."""

    model_dir: Path
    version: str


@dataclass(frozen=True)
class Models:
    tracking_uri: str
    stable: dict[str, Served]  # registered model name -> its production version
    canary: Served  # the challenger: the next version of model_name(CANARY_HORIZON)


def train_and_register(settings: DemoSettings) -> Models:
    """Train and register every model: the LightGBM ones promoted to production, the MLP the challenger."""
    from tickserve.demo.registry import LocalRegistry
    from tickserve.demo.rollback import CHALLENGER_ALIAS
    from tickserve.demo.training import accuracy, onnx_probability_up, synthetic_dataset, train_lightgbm, train_mlp_onnx
    from tickserve.transformers.features.engine import FeatureConfig
    from tickserve.transformers.ingest.synthetic import SyntheticMarket

    config = FeatureConfig()
    bars = {label: horizon_bars(label, settings.bar_seconds) for label in STABLE_HORIZONS}
    print(f"[1/5] training on {settings.training_bars} synthetic bars x {settings.symbols} symbols", flush=True)
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
    train_x, train_y, test_x, test_y = dataset.split(bars[CANARY_HORIZON])
    onnx_path = settings.workdir / "build" / "mlp.onnx"
    train_mlp_onnx(train_x, train_y, onnx_path, invert=settings.bad_challenger)
    score = accuracy(onnx_probability_up(onnx_path, test_x), test_y)
    challenger = registry.log_onnx(model_name(CANARY_HORIZON), onnx_path, train_x.head(5), {"holdout_accuracy": score})
    bad = ", its answers inverted on purpose" if settings.bad_challenger else ""
    print(f"      {challenger.name} v{challenger.version}: PyTorch MLP exported to ONNX{bad}, "
          f"holdout directional accuracy {score:.3f}", flush=True)  # fmt: skip

    print(
        f"[2/5] registering in MLflow at {registry.tracking_uri}: LightGBM to production, "
        f"{challenger.name} v{challenger.version} as {CHALLENGER_ALIAS}",
        flush=True,
    )
    stable = {}
    for model in registered:
        registry.promote(model)
        target = settings.workdir / "models" / model.name
        shutil.rmtree(target, ignore_errors=True)
        stable[model.name] = Served(registry.download(model.name, target), model.version)
    registry.name_alias(challenger, CHALLENGER_ALIAS)
    target = settings.workdir / "models" / f"{challenger.name}-{CHALLENGER_ALIAS}"
    shutil.rmtree(target, ignore_errors=True)
    canary = Served(registry.download(challenger.name, target, CHALLENGER_ALIAS), challenger.version)
    return Models(registry.tracking_uri, stable, canary)


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


@dataclass
class Serving:
    processes: list[Server]
    transformers: dict[Track, str]  # track -> transformer URL
    monitor: Server
    scrape_jobs: dict[str, list[str]]  # Prometheus job -> host:port targets, named as the chart's ServiceMonitors


def serving_processes(settings: DemoSettings, models: Models, redis_url: str, logs: Path) -> Serving:
    """Predictors (one per version and track), transformers (one per track), ingest and monitor."""
    stable = {
        name: launch.predictor(name, served.model_dir, model_version=served.version, track="stable", cwd=logs)
        for name, served in models.stable.items()
    }
    canary_name = model_name(CANARY_HORIZON)
    (logs / "canary").mkdir(exist_ok=True)  # the canary predictor has the stable one's name, so its own log folder
    canary = launch.predictor(
        canary_name, models.canary.model_dir, model_version=models.canary.version, track="canary", cwd=logs / "canary"
    )
    routes: dict[Track, tuple[dict[str, str], dict[str, str]]] = {  # track -> (horizons, predictor hosts)
        "stable": ({label: model_name(label) for label in STABLE_HORIZONS}, {n: p.http for n, p in stable.items()}),
        "canary": ({CANARY_HORIZON: canary_name}, {canary_name: canary.http}),
    }
    transformers = {
        track: launch.transformer(
            redis_url,
            hosts,
            horizons,
            track=track,
            name=f"transformer-{track}",
            args=["--max_feature_age_seconds", str(max(5.0, 20 * settings.bar_seconds))],
            cwd=logs,
        )
        for track, (horizons, hosts) in routes.items()
    }
    ingest = launch.ingest(
        redis_url,
        args=["--source", "synthetic", "--synthetic_symbols", ",".join(symbols(settings.symbols)),
              "--synthetic_seed", str(settings.seed + 1), "--synthetic_interval_seconds", str(settings.bar_seconds),
              "--synthetic_history_bars", "300"],
        cwd=logs,
    )  # fmt: skip
    monitor = launch.monitor(
        redis_url,
        args=["--poll_seconds", "0.5", "--window", "100", "--judge_min_scored", str(settings.judge_min_scored)],
        cwd=logs,
    )
    predictors = [*stable.values(), canary]
    return Serving(
        processes=[*predictors, *transformers.values(), ingest, monitor],
        transformers={track: server.url for track, server in transformers.items()},
        monitor=monitor,
        scrape_jobs={
            "tickserve-predictor": [server.http for server in predictors],
            "tickserve-transformer": [server.http for server in transformers.values()],
            "tickserve-ingest": [ingest.http],
            "tickserve-monitor": [monitor.http],
        },
    )


class LiveView:
    """What the demo shows: latest signal per symbol and horizon, latency percentiles, accuracy per model."""

    def __init__(self) -> None:
        self.latencies_ms: deque[float] = deque(maxlen=2000)
        self.signals: dict[tuple[str, str], tuple[float, float, str, bool]] = {}
        self.served = 0
        self.errors: dict[str, int] = {}
        self.accuracy: list[tuple[str, str, str, float, float]] = []

    def record(self, horizon: str, track: Track, answer: dict, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        outputs = {output["name"]: output["data"] for output in answer["outputs"]}
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

    def render(self, elapsed: float, rollout: list[str]) -> str:
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
        lines += ["", *rollout]
        return "\n".join(lines)


@dataclass
class Alerting:
    """The running alert path: Prometheus to read alerts from and the receiver whose rollbacks the view shows."""

    prometheus_url: str
    receiver: RollbackReceiver
    rollback: LocalRollback


def start_alerting(settings: DemoSettings, serving: Serving, rollback: LocalRollback, stack: Stack) -> Alerting:
    """The rollback receiver in this process (with a fresh token), Alertmanager delivering to it and Prometheus
    scraping every server, in a fresh folder (no alert of an earlier run survives)."""
    folder = settings.workdir / "alerting"
    shutil.rmtree(folder, ignore_errors=True)
    token = secrets.token_urlsafe(24)
    receiver = RollbackReceiver("127.0.0.1", 0, token, rollback.execute).start()
    try:
        manager = alerting.alertmanager(
            alerting.find_binary(alerting.ALERTMANAGER_BINARIES) or "", folder / "alertmanager",
            f"http://127.0.0.1:{receiver.port}{RECEIVER_PATH}", token,
        )  # fmt: skip
        stack.start([manager])
        prometheus = alerting.prometheus(
            alerting.find_binary(alerting.PROMETHEUS_BINARIES) or "", folder / "prometheus", serving.scrape_jobs,
            manager.url, {"namespace": NAMESPACE}, rule_for=f"{settings.alert_for_seconds:g}s",
        )  # fmt: skip
        stack.start([prometheus])
    except BaseException:
        receiver.stop()
        raise
    return Alerting(prometheus.url, receiver, rollback)


async def drive(
    settings: DemoSettings,
    serving: Serving,
    split: TrafficSplit,
    rollout: RolloutView,
    prometheus_url: str | None,
    stack: Stack,
    stop: asyncio.Event,
) -> LiveView:
    """Request every symbol's signal once per bar per horizon; redraw the view once a second. With a bad
    challenger, end `after_rollback_seconds` after its rollback."""
    view = LiveView()
    names = symbols(settings.symbols)
    interactive = sys.stdout.isatty()
    started = last_draw = time.monotonic()
    rng = random.Random(settings.seed)
    async with httpx.AsyncClient(timeout=5.0) as client:
        while not stop.is_set():
            for horizon in STABLE_HORIZONS:
                track: Track = "canary" if horizon == CANARY_HORIZON and rng.random() < split.share else "stable"
                if horizon == CANARY_HORIZON:
                    rollout.count(track)
                body = {
                    "inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [len(names)], "data": names}],
                    "parameters": {"horizon": horizon},
                }
                began = time.perf_counter()
                try:
                    response = await client.post(f"{serving.transformers[track]}/v2/models/signal/infer", json=body)
                except httpx.HTTPError as error:
                    view.error(type(error).__name__)
                    continue
                if response.status_code == 200:
                    view.record(horizon, track, response.json(), (time.perf_counter() - began) * 1000)
                else:
                    view.error(f"HTTP {response.status_code}: {response.text[:60]}")
            now = time.monotonic()
            if now - last_draw >= 1.0:
                last_draw = now
                await observe(client, serving, rollout, view, prometheus_url, now - started)
                screen = view.render(now - started, rollout.render())
                print(("\033[H\033[J" + screen) if interactive else screen + "\n", flush=True)
                if stack.dead():
                    print(f"tickserve demo: server(s) stopped unexpectedly: {', '.join(stack.dead())}", flush=True)
                    break
            if settings.duration and now - started >= settings.duration:
                break
            rolled_back = rollout.rolled_back_at
            if rolled_back is not None and now - started >= rolled_back + settings.after_rollback_seconds:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.bar_seconds)
    return view


async def observe(
    client: httpx.AsyncClient,
    serving: Serving,
    rollout: RolloutView,
    view: LiveView,
    prometheus_url: str | None,
    elapsed: float,
) -> None:
    """Read the monitor's metrics, Prometheus's alerts and the receiver's reports into the views."""
    with contextlib.suppress(httpx.HTTPError):
        metrics = (await client.get(f"{serving.monitor.url}/metrics")).text
        view.read_accuracy(metrics)
        rollout.observe_judge(metrics, elapsed)
    if prometheus_url:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            rollout.observe_alerts((await client.get(f"{prometheus_url}/api/v1/alerts")).json(), elapsed)
    rollout.observe_rollbacks(elapsed)


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
    registry = Registry(models.tracking_uri)
    split = TrafficSplit(
        model_name(CANARY_HORIZON), models.stable[model_name(CANARY_HORIZON)].version, models.canary.version,
        settings.canary_share,
    )  # fmt: skip
    rollback = LocalRollback(split, registry)
    missing = alerting.missing_parts()
    note = f"off: this machine lacks {' and '.join(missing)}" if missing else ""
    rollout = RolloutView(split, CANARY_HORIZON, settings.bad_challenger, rollback, note)
    stack = Stack()
    stop = asyncio.Event()
    dead: list[str] = []
    alert_path: Alerting | None = None
    try:
        redis_url, redis_process = local_redis(settings, logs)
        print(f"[3/5] starting servers (Redis {redis_url}; logs in {logs})", flush=True)
        if redis_process:
            stack.start([redis_process])
        serving = serving_processes(settings, models, redis_url, logs)
        stack.start(serving.processes)
        if missing:
            print(f"[4/5] no alerts and no rollback: this machine lacks {' and '.join(missing)}", flush=True)
        else:
            alert_path = start_alerting(settings, serving, rollback, stack)
            print(
                f"[4/5] Prometheus {alert_path.prometheus_url} (rules with for: {settings.alert_for_seconds:g}s) -> "
                f"Alertmanager -> rollback receiver :{alert_path.receiver.port}{RECEIVER_PATH}",
                flush=True,
            )
        print("[5/5] streaming ticks; Ctrl-C stops", flush=True)
        loop = asyncio.new_event_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        prometheus_url = alert_path.prometheus_url if alert_path else None
        view = loop.run_until_complete(drive(settings, serving, split, rollout, prometheus_url, stack, stop))
        loop.close()
        dead = stack.dead()
    finally:
        if alert_path:
            alert_path.receiver.stop()
        stack.stop()
    print("\n".join(rollout.summary(registry)))
    print(
        f"stopped: {view.served} predictions served, p50 {view.percentile(50):.2f} ms, p99 {view.percentile(99):.2f} ms"
        + (f"; servers that died: {', '.join(dead)}" if dead else "")
    )
    rolled_back = rollout.rolled_back_at is not None or not settings.bad_challenger or alert_path is None
    return 0 if view.served and not dead and rolled_back else 1


if __name__ == "__main__":
    sys.exit(main())
