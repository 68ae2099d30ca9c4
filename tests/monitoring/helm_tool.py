"""The helm binary the chart tests of this folder render with: the one `make envtest-assets` builds into the tools
cache (found as hack/render-rules.sh finds it), else one on PATH; missing, it skips loudly (fails in CI)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tiers import require


def find_helm() -> str:
    cache = Path(
        os.environ.get("TOOLS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tickserve"
    )
    built = sorted((cache / "bin").glob("helm-v*"))
    found = str(built[-1]) if built else shutil.which("helm")
    require(found is not None, f"helm is not in {cache}/bin; run `make envtest-assets`")
    return found  # type: ignore[return-value]
