"""SIGTERM and Ctrl-C stop a run cleanly, between two optimizer steps.

Cluster schedulers (SLURM, Kubernetes, ...) send SIGTERM some seconds before SIGKILL.
The first SIGTERM or SIGINT only sets a flag; the loop checks it after each optimizer step,
writes a checkpoint of the step just done, marks the MLflow run KILLED and raises
:class:`StopRequested` (a ``KeyboardInterrupt``), which the command turns into exit code
128 + signal number (143 for SIGTERM, 130 for Ctrl-C). A second signal stops at once,
without a checkpoint (the previous one stays intact: checkpoints are written atomically).

Under torchrun every rank checks the flag of every rank (one all-reduce of one number
per step), so all ranks stop after the same step.

A scheduler signals the whole process group, DataLoader workers included. PyTorch's
worker SIGTERM handler lets a worker die of a SIGTERM that its parent did not send, and the
training process then fails at once ("DataLoader worker ... is killed by signal:
Terminated") instead of checkpointing; so :func:`protect_workers` makes the workers ignore
SIGTERM and SIGINT: they stop with the loader, as the training process decides.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import torch
import torch.distributed as dist

from medmae.interrupts import Interrupted
from medmae.training.distributed import DistInfo

logger = logging.getLogger("medmae.training.engine")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Interrupted):
    """The run stopped on a signal after ``step`` steps (its checkpoint is written)."""

    def __init__(self, signum: int, step: int, checkpoint=None):
        self.step, self.checkpoint = int(step), checkpoint
        super().__init__(signum, f"stopped by {signal.Signals(int(signum)).name} after step {self.step}")


class GracefulStop:
    """Context manager: SIGTERM / SIGINT handlers that set :attr:`signum` (main thread only;
    elsewhere, e.g. a run started from a worker thread, the handlers are left alone)."""

    def __init__(self):
        self.signum: int | None = None
        self._pid = os.getpid()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:
            return  # a forked child before its own handlers: the training process decides
        if self.signum is not None:
            raise Interrupted(signum, f"second {signal.Signals(signum).name}: stopped at once, without a checkpoint")
        self.signum = signum
        logger.warning("%s received: stopping after the step in progress, with a checkpoint "
                       "(send it again to stop at once)", signal.Signals(signum).name)

    def requested(self, info: DistInfo) -> int | None:
        """The signal number when any rank was signalled (every rank must call it)."""
        if not info.distributed:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=info.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


class _IgnoreStopSignals:
    """A DataLoader ``worker_init_fn``: the original one, then SIGTERM / SIGINT ignored."""

    def __init__(self, original):
        self.original = original

    def __call__(self, worker_id: int) -> None:
        if self.original is not None:
            self.original(worker_id)
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def protect_workers(loader) -> None:
    """Make the (not yet started) workers of a DataLoader ignore SIGTERM and SIGINT."""
    if getattr(loader, "num_workers", 0) > 0 and not isinstance(loader.worker_init_fn, _IgnoreStopSignals):
        loader.worker_init_fn = _IgnoreStopSignals(loader.worker_init_fn)
