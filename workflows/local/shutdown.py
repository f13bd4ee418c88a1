"""Stopping a local run cleanly: SIGTERM/SIGINT handling and children that die with their parent.

* :class:`SignalStop` turns SIGTERM (``kill``, ``timeout``, systemd, Kubernetes) and SIGINT (Ctrl-C) into an
  orderly stop. While a cancellable operation runs (``with stop.cancels(runner.cancel)``) a signal only calls
  its cancel function - no I/O and no exception in the signal handler, so the runner stops its tasks through
  its own code path; anywhere else it raises :class:`Interrupted` (like KeyboardInterrupt, so ``finally``
  blocks run: the llama-server is stopped). The caller reports it and exits with ``128 + signal``.
* :func:`die_with_parent` is a ``preexec_fn`` that asks Linux to SIGKILL the child when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), which covers what no handler can: the CLI itself killed with SIGKILL or
  crashing. Chosen over a watch pipe because it needs no cooperation from the child (``llama-server`` is a
  foreign binary) and is enforced by the kernel. Caveats, accepted: the "parent" is the *thread* that forked,
  so start such children from a thread that outlives them (the main thread; a runner worker thread that waits
  for its process); and a ``preexec_fn`` runs Python between fork and exec in a threaded process - it only
  calls an already-resolved libc function and ``os.getppid``, which take no Python-level locks. Elsewhere
  than Linux it is a no-op.

No hera import here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["Interrupted", "SignalStop", "die_with_parent", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException (like KeyboardInterrupt) so ``except Exception`` does not eat it."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(self.name)

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:  # pragma: no cover - only the signals above are handled
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by signal: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


class SignalStop:
    """Context manager installing SIGTERM/SIGINT handlers (main thread only; elsewhere it does nothing).

    ``signum`` is the first stop signal received, or None. Later signals are ignored while a cancel is under
    way (every wait on that path is bounded), and raise :class:`Interrupted` again outside one.
    """

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None
        self._cancel: Callable[[str], Any] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)  # None: set outside Python
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self._cancel is not None:
            if first:
                self._cancel(f"stopped by {signal.Signals(signum).name}")
            return
        raise Interrupted(self.signum or signum)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal has arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def cancels(self, cancel: Callable[[str], Any]) -> Iterator[None]:
        """Inside the block a stop signal calls ``cancel(reason)`` (which must only set flags and return);
        after the block, :class:`Interrupted` is raised if one arrived."""
        self.check()
        self._cancel = cancel
        try:
            yield
        finally:
            self._cancel = None
        self.check()


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _libc_prctl()  # resolved once, here, never between fork and exec
_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this thread/process dies (None where unsupported).

    The parent pid is taken now; the child compares it after ``prctl`` to close the race of a parent that died
    between fork and prctl (the child would otherwise have been reparented already and never be signalled).
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return preexec
