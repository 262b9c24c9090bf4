"""Launched training processes die with whoever started them.

A worker killed with SIGKILL cannot end its `accelerate launch` (nor can anything after a power cut), and the
launch's processes would train on, holding memory and cores, with nobody left to register the result. On Linux
the kernel can do it: `prctl(PR_SET_PDEATHSIG, sig)` asks it to send `sig` to a process once its parent dies.
The worker arms it in the launcher (`preexec_fn`, between fork and exec), and each launched rank arms it too
(torchrun starts the ranks in sessions of their own, and the setting is not inherited by children), so killing
the worker ends the launcher, whose death ends the ranks. Elsewhere (macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def dies_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A function that, called in a process whose parent is `parent_pid`, has the kernel send it `sig` when that
    parent dies, and sends it at once when the parent is already gone (it died before the call). Everything is
    looked up here, so the function is safe to call between fork and exec (`subprocess.Popen(preexec_fn=…)`)."""
    prctl = _libc_prctl()
    kill, getppid, getpid, signum = os.kill, os.getppid, os.getpid, int(sig)

    def arm() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if getppid() != parent_pid:
            kill(getpid(), signum)

    return arm
