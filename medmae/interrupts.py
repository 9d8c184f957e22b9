"""SIGTERM stops any command as Ctrl-C does, with exit code 143.

A scheduler (SLURM, Kubernetes, systemd, ``timeout``) sends SIGTERM; Python's default is
to die at once: no ``finally`` block runs, MLflow runs stay RUNNING for good, and nothing
is logged. :func:`sigterm_interrupts` (installed by ``medmae.cli.main`` around every
command) raises :class:`Interrupted` instead, in the main thread, like ``KeyboardInterrupt``
for Ctrl-C: cleanups run, tracked runs are marked KILLED, outputs written whole-then-renamed
stay whole, and the command exits ``128 + signal`` (143). Loops that can stop more gently
(pretraining and fine-tuning finish the step in progress and checkpoint it: see
``medmae.training.signals``) install their own handler inside and restore this one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator


class Interrupted(KeyboardInterrupt):
    """A command stopped on signal ``signum``; it exits with ``128 + signum`` (143 for SIGTERM)."""

    def __init__(self, signum: int, message: str | None = None):
        self.signum = int(signum)
        super().__init__(message or f"stopped by {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal: an :class:`Interrupted`'s own, else SIGINT's (130, a plain Ctrl-C)."""
    return err.exit_code if isinstance(err, Interrupted) else 128 + signal.SIGINT


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Interrupted` in the main thread (outside
    the main thread, where no handler can be set, this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handle(signum: int, frame) -> None:
        if os.getpid() != pid:  # a forked child (a pool worker) that kept this handler: dies as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
