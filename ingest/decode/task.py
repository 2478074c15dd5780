"""One file's decode check and preview, run inside a worker process.

`run_task(req) -> dict` is the contract with the pipeline (see DecodePool). It reads the file
once, decodes it with the decoder for its kind, writes the preview from what that decode holds
in memory, and, when the copy is damaged and the card original is given, decodes the card
original too so the pipeline can tell transfer damage from damage on the card.

It never raises: any exception becomes a "damaged" result carrying the error text, except
running out of memory, which says nothing about the file: that is "unsupported" (the file is
reported unverified, its copy proven by its checksum alone), never "damaged".

Run it in a DecodePool worker (one OpenMP thread, crash and timeout isolation; see pool.py).
A damaged lossless-JPEG DNG tile that LibRaw leaves undecoded is found from its stored bytes
(decode/lj92.py), whatever the worker's heap held before.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from ingest.decode import DAMAGED, NO_MEMORY, NOT_READ, UNSUPPORTED, check, outcome
from ingest.decode.capture import capture_fd2

KINDS = ("raw", "jpeg", "heif", "tiff")


def decoder_for_kind(kind: str) -> str:
    """Decoder name and version for a kind (used for results the worker could not produce)."""
    if kind == "raw":
        # lazy: a heavy decoder; the parent imports it only to name a failed task's decoder
        from ingest.decode.raw import decoder_name
        return decoder_name()
    if kind == "jpeg":
        # lazy: a heavy decoder; the parent imports it only to name a failed task's decoder
        from ingest.decode.jpeg import decoder_name
        return decoder_name()
    if kind == "heif":
        # lazy: a heavy decoder; the parent imports it only to name a failed task's decoder
        from ingest.decode.heif import heif_decoder_name
        return heif_decoder_name()
    if kind == "tiff":
        # lazy: a heavy decoder; the parent imports it only to name a failed task's decoder
        from ingest.decode.other import tiff_decoder_name
        return tiff_decoder_name()
    return "none"


def run_task(req: dict) -> dict:
    result: dict = {"decode": None, "card_decode": None, "preview": None, "preview_error": None}
    kind = req.get("kind", "")
    try:
        decode, holder = _decode_file(req["path"], kind, req)
    except Exception as exc:  # noqa: BLE001 - the contract: a per-file failure is a result
        result["decode"] = _exception_result(kind, exc)
        if req.get("preview"):
            result["preview_error"] = "no preview: the decode check failed"
        return result
    result["decode"] = decode
    try:
        if req.get("preview"):
            _add_preview(result, holder, req)
    except Exception as exc:  # noqa: BLE001
        result["preview"] = None
        result["preview_error"] = f"preview failed: {type(exc).__name__}: {exc}"
    finally:
        _close(holder)
    card_path = req.get("card_path")
    if decode["verdict"] == DAMAGED and card_path:
        try:
            card, card_holder = _decode_file(card_path, kind, None)
            _close(card_holder)
        except Exception as exc:  # noqa: BLE001
            card = _exception_result(kind, exc)
        result["card_decode"] = card
    return result


def _exception_result(kind: str, exc: Exception) -> dict:
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    try:
        name = decoder_for_kind(kind)
    except Exception:  # noqa: BLE001 - a decoder that cannot even be imported
        name = "unknown"
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    detail = f"{text} (at {where[0].filename}:{where[0].lineno})" if where else text
    if isinstance(exc, MemoryError):
        return outcome(name, [check("decode", False, f"{NO_MEMORY} ({detail})")],
                       verdict=UNSUPPORTED, error=NO_MEMORY)
    return outcome(name, [check("decode", False, detail)], verdict=DAMAGED, error=text)


def _decode_file(path: str, kind: str, req: dict | None):
    """Read once, decode with fd 2 captured; returns (decode dict, decoder-held data)."""
    started = time.perf_counter()
    holder = None
    if kind not in KINDS:
        text = f"no decoder for kind '{kind}'"
        return outcome("none", [check("decode", False, text)], verdict=UNSUPPORTED,
                       error=text), None
    with capture_fd2() as captured:
        # The copy first; another verified copy when it cannot be read (its destination died
        # after the copy was proven): that says nothing about the image, so it is no finding.
        tried: list[str] = []
        for candidate in [path, *((req or {}).get("alternates") or [])]:
            try:
                data = Path(candidate).read_bytes()
            except OSError as exc:
                tried.append(str(exc))
                continue
            decode, holder = _decode_bytes(candidate, kind, data, req)
            if candidate != path:
                decode["read_from"] = candidate
            break
        else:
            text = "; ".join(tried)
            verdict = NOT_READ if req is not None else DAMAGED  # the card: read errors count
            decode = outcome(decoder_for_kind(kind), [check("read", False, text)],
                             verdict=verdict, error=f"cannot read the file: {text}")
    decode["seconds"] = round(time.perf_counter() - started, 4)
    decode["stderr"] = captured.text.replace("unknown file:", f"{Path(path).name}:")
    if decode["stderr"] and decode["verdict"] != "ok":
        decode["error"] = f"{decode['error']} [decoder said: {decode['stderr'][:500]}]"
    return decode, holder


def _decode_bytes(path: str, kind: str, data: bytes, req: dict | None):
    size = int(req["preview"].get("size", 2048)) if req and req.get("preview") else None
    if kind == "raw":
        from ingest.decode.raw import verify_raw  # lazy: only in the decode worker process
        dec = verify_raw(path, data, size)
        return dec.result, dec
    if kind == "jpeg":
        from ingest.decode.jpeg import verify_jpeg  # lazy: only in the decode worker process
        dec = verify_jpeg(data, size)
        return dec.result, dec
    if kind == "heif":
        from ingest.decode.heif import verify_heif  # lazy: only in the decode worker process
        dec = verify_heif(data)
        return dec.result, dec
    if kind == "tiff":
        from ingest.decode.other import verify_tiff  # lazy: only in the decode worker process
        dec = verify_tiff(data)
        return dec.result, dec
    raise ValueError(f"no decoder for kind '{kind}'")


def _add_preview(result: dict, holder, req: dict) -> None:
    from ingest.preview import PreviewRequest  # lazy: only in the decode worker process
    preq = PreviewRequest.from_req(req["preview"], req.get("capture_time"))
    decode = result["decode"]
    with capture_fd2() as captured:
        result["preview"], result["preview_error"] = _preview(holder, decode, preq)
    if captured.text:
        decode["stderr"] = (decode["stderr"] + "\npreview: " + captured.text).strip()


def _preview(holder, decode: dict, preq) -> tuple[dict | None, str | None]:
    from ingest import preview as pv  # lazy: only in the decode worker process
    verdict = decode["verdict"]
    damaged = verdict != "ok"
    if holder is None:
        return None, f"no preview: {decode['error'] or 'nothing decoded'}"
    if decode["decoder"].startswith("rawpy"):
        if holder.raw is not None:
            return pv.preview_from_raw(holder.raw, holder.thumb, preq, partial=damaged,
                                       stored_long_edge=holder.thumb_long_edge), None
        # lazy: only in the decode worker process
        from ingest.decode.raw import embedded_preview_only
        found = embedded_preview_only(holder.data)
        if found is None:
            return None, ("no preview: the sensor data did not decode and the file holds no "
                          "decodable embedded preview")
        thumb, flip = found
        summary = pv.preview_from_thumb(thumb, flip, preq)
        # An unsupported file is complete: its camera preview shows the whole image.
        summary["partial"] = verdict == DAMAGED
        return summary, None
    if holder.pixels is None:
        return None, "no preview: nothing of the image decoded"
    return pv.preview_from_pixels(holder.pixels, preq, orientation=holder.orientation,
                                  icc=holder.icc, partial=damaged), None


def _close(holder) -> None:
    raw = getattr(holder, "raw", None)
    if raw is not None:
        raw.close()
        holder.raw = None
