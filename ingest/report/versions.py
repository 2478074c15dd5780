"""Decoder versions recorded in every report: a verdict is only as good as its decoder."""

from __future__ import annotations

from functools import cache

from ingest import __version__


@cache
def versions() -> dict[str, str]:
    out = {"ingest": __version__}
    try:
        import rawpy

        out["rawpy"] = rawpy.__version__
        out["libraw"] = ".".join(str(p) for p in rawpy.libraw_version)
    except Exception as e:  # noqa: BLE001
        out["libraw"] = f"unavailable ({e})"
    try:
        import simplejpeg

        out["simplejpeg"] = simplejpeg.__version__
        out["libjpeg"] = "libjpeg-turbo (bundled with simplejpeg)"
    except Exception as e:  # noqa: BLE001
        out["libjpeg"] = f"unavailable ({e})"
    try:
        import PIL

        out["pillow"] = PIL.__version__
    except Exception:  # noqa: BLE001
        pass
    return out
