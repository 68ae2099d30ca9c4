"""The parity gate: how far a variant's answers are from the original's on the held-out sample, and whether
that is close enough to ship.

Measured on the first output, row by row against the original:
- max absolute and max relative difference (relative to |original|, floored at 1e-6);
- directional agreement: the share of rows where sign(p_up - p_down) is the same, the number trading acts on.
  For [N, K] class probabilities p_down is the first class and p_up the last ([p_down, p_up] for binary
  classifiers); a one-value output ([N] or [N, 1]) is taken as a signed score;
- for classifiers (K >= 2), top-class agreement: the share of rows whose argmax is the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

REL_FLOOR = 1e-6


@dataclass(frozen=True)
class Thresholds:
    min_directional_agreement: float
    min_top_class_agreement: float
    max_abs_diff: float | None


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    max_rel_diff: float
    directional_agreement: float
    top_class_agreement: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def direction(output: np.ndarray) -> np.ndarray:
    flat = output.reshape(len(output), -1).astype(np.float64)
    edge = flat[:, -1] - flat[:, 0] if flat.shape[1] >= 2 else flat[:, 0]
    return np.sign(edge)


def measure(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    if reference.shape != candidate.shape:
        raise ValueError(f"the variant answers shape {list(candidate.shape)}, the original {list(reference.shape)}")
    ref, got = reference.astype(np.float64), candidate.astype(np.float64)
    diff = np.abs(ref - got)
    classes = ref.reshape(len(ref), -1).shape[1]
    top = None
    if classes >= 2:
        top = float(np.mean(ref.reshape(len(ref), -1).argmax(1) == got.reshape(len(got), -1).argmax(1)))
    return Parity(
        rows=len(ref),
        max_abs_diff=float(diff.max(initial=0.0)),
        max_rel_diff=float((diff / np.maximum(np.abs(ref), REL_FLOOR)).max(initial=0.0)),
        directional_agreement=float(np.mean(direction(ref) == direction(got))),
        top_class_agreement=top,
    )


def refusals(parity: Parity, thresholds: Thresholds) -> list[str]:
    """Why the variant is refused (empty when it passes), each reason with its measured number."""
    reasons = []
    if parity.directional_agreement < thresholds.min_directional_agreement:
        reasons.append(
            f"directional agreement {parity.directional_agreement:.2%} < {thresholds.min_directional_agreement:.2%}"
        )
    if parity.top_class_agreement is not None and parity.top_class_agreement < thresholds.min_top_class_agreement:
        reasons.append(
            f"top-class agreement {parity.top_class_agreement:.2%} < {thresholds.min_top_class_agreement:.2%}"
        )
    if thresholds.max_abs_diff is not None and parity.max_abs_diff > thresholds.max_abs_diff:
        reasons.append(f"max abs diff {parity.max_abs_diff:.3g} > {thresholds.max_abs_diff:.3g}")
    return reasons
