"""The numbers a run's summary prints, computed as the progress lines compute them.

A progress line shows the mean loss (and mean-predictor loss) over the steps since the previous
line: lines fall every ``train.log_every`` steps and at the last step. A summary's
"first" and "final" loss are the first and last of those lines' values, so the summary
and the console always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Window:
    """Steps ``first..last`` (1-based, inclusive) of one progress line, and their means."""

    first: int
    last: int
    loss: float
    mean_predictor: float


def report_windows(losses: Sequence[float], mean_predictor: Sequence[float], start: int, log_every: int,
                   total: int) -> list[Window]:
    """The progress lines' windows over per-step ``losses`` of steps ``start+1 ..``."""
    out, lo = [], start
    for i in range(len(losses)):
        done = start + i + 1
        if done % log_every == 0 or done == total or i == len(losses) - 1:
            a, b = lo - start, done - start
            n = b - a
            out.append(Window(lo + 1, done, sum(losses[a:b]) / n, sum(mean_predictor[a:b]) / n))
            lo = done
    return out
