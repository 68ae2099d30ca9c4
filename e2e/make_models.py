"""Write two small LightGBM models for the e2e run, as the plain files KServe's storage puts under /mnt/models:
OUT/ticks-1m/3/model.txt (the stable version) and OUT/ticks-1m/4/model.txt (the canary).

They take the transformer's feature vector (tickserve's default feature windows), so requests flow end to end.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tickserve import zoo
from tickserve.transformers.features.engine import feature_names

VERSIONS = {"3": 3, "4": 4}  # version -> training seed


def main(out: Path) -> int:
    names = feature_names()
    for version, seed in VERSIONS.items():
        target = out / "ticks-1m" / version
        target.mkdir(parents=True, exist_ok=True)
        booster, _ = zoo.train_signal_booster(names, seed=seed, rows=2000, rounds=20, shuffle=False)
        booster.save_model(str(target / "model.txt"))
    print(f"make_models: {len(names)} features, versions {sorted(VERSIONS)} under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
