"""Which card a source folder is on: volume UUID or label where the system knows it."""

from __future__ import annotations

import os


def volume_identity(path: str) -> str | None:
    """`uuid:1234-ABCD` or `label:NIKON D850`, else None. Linux only; elsewhere None."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    for kind in ("uuid", "label"):
        folder = f"/dev/disk/by-{kind}"
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            try:
                if os.stat(os.path.join(folder, name)).st_rdev == dev:
                    return f"{kind}:{name}"
            except OSError:
                continue
    return None
