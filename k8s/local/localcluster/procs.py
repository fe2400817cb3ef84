"""Background processes with pidfiles, so `cluster-up` can return and `cluster-down` find them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def env_port(name: str, default: int) -> int:
    """A port the user may move with ``MODELYARD_<NAME>_PORT`` (two clusters on one host)."""
    return int(os.environ.get(f"MODELYARD_{name}_PORT", str(default)))


def start(name: str, argv: list[str], state: Path, env: dict[str, str] | None = None,
          user: str | None = None) -> int:
    """Start ``argv`` in its own session, logging to ``<state>/logs/<name>.log``; ``user`` runs
    it under another account (PostgreSQL refuses to run as root)."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / f"{name}.log").open("ab")
    # Another account may not be able to enter the caller's working directory (e.g. /root).
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})}, user=user, cwd=state if user else None)
    (state / "pids").mkdir(exist_ok=True)
    (state / "pids" / name).write_text(str(proc.pid))
    return proc.pid


def pid_of(name: str, state: Path) -> int | None:
    path = state / "pids" / name
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def running(name: str, state: Path) -> bool:
    return pid_of(name, state) is not None


def stop(name: str, state: Path, grace: float = 10, sig: signal.Signals = signal.SIGTERM) -> None:
    pid = pid_of(name, state)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            # reap if it is our child (tests start processes in-process)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    (state / "pids" / name).unlink(missing_ok=True)
