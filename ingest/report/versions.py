"""Decoder versions recorded in every report: a verdict is only as good as its decoder."""

from __future__ import annotations

from functools import cache

from ingest import __version__

# The decoders named in the report of a run that decoded nothing (`--no-decode`): no verdict
# rests on one.
NOT_RUN = {"decoders": "not run (--no-decode)"}


@cache
def decoder_versions() -> dict[str, str]:
    """Imports every decoder: about 0.15 s in a fresh process, so an offload takes these from
    its decode workers, which have them imported already."""
    out = {}
    try:
        import rawpy  # lazy: a decoder; an offload asks its decode workers instead

        out["rawpy"] = rawpy.__version__
        out["libraw"] = ".".join(str(p) for p in rawpy.libraw_version)
    except Exception as e:  # noqa: BLE001
        out["libraw"] = f"unavailable ({e})"
    try:
        import simplejpeg  # lazy: a decoder; an offload asks its decode workers instead

        out["simplejpeg"] = simplejpeg.__version__
        out["libjpeg"] = "libjpeg-turbo (bundled with simplejpeg)"
    except Exception as e:  # noqa: BLE001
        out["libjpeg"] = f"unavailable ({e})"
    try:
        import PIL  # lazy: a decoder; an offload asks its decode workers instead

        out["pillow"] = PIL.__version__
    except Exception:  # noqa: BLE001
        pass
    return out


def versions(decoders: dict[str, str] | None = None) -> dict[str, str]:
    """`decoders`: as the decode workers reported them; None: this process's own."""
    return {"ingest": __version__, **(decoder_versions() if decoders is None else decoders)}
