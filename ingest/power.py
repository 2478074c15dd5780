"""Be a good guest on a laptop: run at idle priority, and stop when the battery runs low.

Both are best effort: a platform without a knob is simply left at normal priority, and a
machine without a battery (a desktop, a NAS) never stops.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Battery:
    percent: float
    plugged: bool | None  # None: the OS cannot tell


def read_battery() -> Battery | None:
    """The battery now, or None when there is none (or psutil cannot see it)."""
    try:
        import psutil  # lazy: inside the try, so a broken psutil costs only this step

        state = psutil.sensors_battery()
    except Exception:  # noqa: BLE001 - a sensor failure must never stop a verify run
        return None
    if state is None:
        return None
    return Battery(percent=float(state.percent), plugged=state.power_plugged)


def battery_stop_reason(threshold: int | None, battery: Battery | None) -> str | None:
    """Why to stop now, or None. Only a known unplugged state stops: an unknown one might
    be a desktop UPS reporting oddly, and stopping a nightly run for that helps nobody."""
    if threshold is None or battery is None or battery.plugged is not False:
        return None
    if battery.percent < threshold:
        return f"on battery at {battery.percent:.0f}% (below {threshold}%)"
    return None


def lower_priority() -> list[str]:
    """Lower this process's CPU and I/O priority; children (decode workers) inherit both.
    Returns what was applied, for the report."""
    applied: list[str] = []
    try:
        current = os.nice(0)
        if current < 19:
            os.nice(19 - current)
        applied.append("nice 19")
    except OSError:
        pass
    try:
        import psutil  # lazy: inside the try, so a broken psutil costs only this step

        if sys.platform.startswith("linux"):
            # Idle class: the disk serves us only when nobody else wants it.
            psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)
            applied.append("ionice idle")
    except Exception:  # noqa: BLE001 - some kernels/schedulers refuse; normal I/O is still fine
        pass
    background = getattr(os, "PRIO_DARWIN_BG", None)  # Python 3.12+ on macOS
    if background is not None:
        try:
            os.setpriority(os.PRIO_DARWIN_PROCESS, 0, background)
            applied.append("darwin background")
        except OSError:
            pass
    return applied
