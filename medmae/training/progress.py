"""The progress line: step/total, loss, mean-predictor loss, hidden-token correlation, lr, crops/s and ETA."""

from __future__ import annotations

import time


def format_duration(seconds: float) -> str:
    """3725.2 -> '1:02:05'."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """Throughput and ETA over the steps since the previous line.

    ``crops_per_step`` is the effective batch (crops per optimizer step, all ranks).
    """

    def __init__(self, total_steps: int, start_step: int, crops_per_step: int, clock=time.perf_counter):
        self.total = int(total_steps)
        self.crops_per_step = int(crops_per_step)
        self._clock = clock
        self._last_time = clock()
        self._last_step = int(start_step)
        self.crops_per_s = 0.0

    def line(self, step: int, loss: float, lr: float, mean_pred: float | None = None,
             corr: float | None = None) -> str:
        """``step`` is the number of steps done; updates throughput from the previous call."""
        now = self._clock()
        steps = step - self._last_step
        elapsed = now - self._last_time
        if steps > 0 and elapsed > 0:
            self.crops_per_s = steps * self.crops_per_step / elapsed
            eta = (self.total - step) * elapsed / steps
        else:
            eta = float("nan")
        self._last_time, self._last_step = now, step
        width = len(str(self.total))
        parts = [f"step {step:>{width}}/{self.total}", f"loss {loss:.4f}"]
        if mean_pred is not None and mean_pred > 0:
            parts.append(f"mean-predictor {mean_pred:.4f} ({loss / mean_pred:.2f}x)")
        if corr is not None and corr == corr:
            parts.append(f"r {corr:.2f}")
        parts += [f"lr {lr:.2e}", f"{self.crops_per_s:.1f} crops/s",
                  f"ETA {format_duration(eta) if eta == eta else '?'}"]
        return " | ".join(parts)
