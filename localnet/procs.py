"""Background processes of a localnet: start detached, pid files, liveness, stop.

Every process runs in its own session (so a Ctrl-C in the terminal that ran ``localnet up``
does not reach it and it outlives that command), writes stdout and stderr to
``HOME/logs/NAME.log`` and is remembered in ``HOME/run/NAME.pid``. A pid file alone is not
trusted: pids get reused, so a process counts as ours only if its command line names this
localnet's home. ``stop`` sends SIGTERM (graceful: nodes close their storage), waits, then
SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

STOP_GRACE_S = 10.0


class Procs:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.run_dir = home / "run"
        self.log_dir = home / "logs"

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def names(self) -> list[str]:
        if not self.run_dir.exists():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.pid"))

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
        executable: str = sys.executable,
    ) -> int:
        """Start ``executable argv...`` (by default ``python argv...``) detached; its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(
                [executable, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
                close_fds=True,
                # ``python -m`` puts the working directory first on sys.path: run where no
                # stray module can shadow a dependency.
                cwd=self.home,
            )
        self.pid_path(name).write_text(f"{proc.pid}\n")
        return proc.pid

    def pid(self, name: str) -> int | None:
        """The pid of ``name`` if that process is alive and is ours, else None."""
        try:
            pid = int(self.pid_path(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if not raw:
            return False  # a zombie has an empty command line
        return str(self.home).encode() in raw

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    def stop(self, names: Sequence[str], grace_s: float = STOP_GRACE_S) -> list[str]:
        """SIGTERM then (after ``grace_s``) SIGKILL; returns the names that were running."""
        running = {name: pid for name in names if (pid := self.pid(name)) is not None}
        for pid in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(self._is_ours(p) for p in running.values()):
            time.sleep(0.1)
        for pid in running.values():
            if self._is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name in names:
            self.pid_path(name).unlink(missing_ok=True)
        return sorted(running)

    def peak_rss_mb(self, name: str) -> float | None:
        """Peak resident memory (VmHWM) of a running process, in MiB."""
        pid = self.pid(name)
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def cpu_seconds(self, name: str) -> float | None:
        """User plus system CPU time a running process has used so far."""
        pid = self.pid(name)
        if pid is None:
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks_per_s  # utime, stime

    def tail(self, name: str, lines: int) -> list[str]:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]
