"""Peak extra memory of one step: the rise of the peak resident set over the resident set
before it, read from ``/proc/self`` (Linux). Shared by the CPU benchmarks' worker processes."""

from __future__ import annotations

from collections.abc import Callable


def status_bytes(field: str) -> int:
    """A ``/proc/self/status`` field (``"VmRSS:"``, ``"VmHWM:"``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rise_mib(step: Callable[[], object]) -> float:
    """MiB by which the peak resident set (``VmHWM``) rises above the resident set before
    ``step()``."""
    before = status_bytes("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    step()
    return (status_bytes("VmHWM:") - before) / 2**20
