"""CPU / memory / disk / network / GPU usage sampled in a thread, logged through the tracker.

MLflow's own ``SystemMetricsMonitor`` stops for good at the first failed call to the
server, so a tracking outage ended the system metrics of the run. Here the same MLflow
collectors (``mlflow.system_metrics.metrics``) are sampled every ``interval_s`` seconds
whatever the server does, and each sample goes into the tracker's queue like any metric:
samples taken while the server is down are sent when it is back.

Keys are MLflow's (``system/cpu_utilization_percentage``, ...); steps count samples, and
continue after the last one already logged when a run is resumed. A run that ends before
its first interval gets one sample at :meth:`SystemMetricsSampler.stop`, so every tracked
run has system metrics, however short or however loaded the machine.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

logger = logging.getLogger(__name__)

PREFIX = "system/"
THREAD_NAME = "medmae-system-metrics"


def _collectors() -> list:
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    found = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        found.append(GPUMonitor())
    except Exception:  # no NVIDIA GPU / no pynvml: CPU-side metrics only
        logger.debug("no GPU system metrics", exc_info=True)
    return found


class SystemMetricsSampler:
    """Calls ``log(metrics, step)`` every ``interval_s`` seconds until :meth:`stop`."""

    def __init__(self, log: Callable[[Mapping[str, float], int], None], interval_s: float, first_step: int = 0):
        self._log = log
        self.interval_s = float(interval_s)
        self.step = self.first_step = int(first_step)
        self._collectors = _collectors()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)

    def start(self) -> "SystemMetricsSampler":
        self._thread.start()
        return self

    def sample(self) -> dict[str, float]:
        """One sample of every collector, keys prefixed with ``system/``."""
        out = {}
        for c in self._collectors:
            c.collect_metrics()
            out.update(c.aggregate_metrics())
            c.clear_metrics()
        return {PREFIX + k: float(v) for k, v in out.items()}

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample_and_log()

    def _sample_and_log(self) -> None:
        try:
            values = self.sample()
        except Exception as e:  # a collector that fails once (e.g. a vanished disk) is skipped
            logger.debug("system metrics sample failed: %s: %s", type(e).__name__, e)
            return
        self._log(values, self.step)
        self.step += 1

    def stop(self) -> None:
        """Stop sampling; take one sample now if none was taken (a run shorter than one interval)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self.step == self.first_step and not self._thread.is_alive():
            self._sample_and_log()
