"""The contact sheet in a real headless Chromium: what a photographer sees on the first screen.

Chromium is driven over --remote-debugging-pipe: the DevTools protocol as NUL-terminated JSON
on file descriptors 3 and 4, so no websocket client or browser-automation package is needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from ingest.model import ADVICE
from ingest.report.html import write_html

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = (1280, 900)
RED_VERDICT = (0xA3, 0x22, 0x1B)  # --bad in the page's CSS


def _require_chromium() -> None:
    if CHROMIUM.is_file():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: CI must install it with .ci/install-browser")
    pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium (bash .ci/install-browser)")


class Chromium:
    """One headless Chromium page, spoken to in the DevTools protocol over a pipe."""

    def __init__(self, profile: Path, log: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.log = log
        self.events: list[dict] = []
        self._buffer = b""
        self._next_id = 0
        chrome_in_r, self._to_chrome = os.pipe()
        self._from_chrome, chrome_out_w = os.pipe()

        def wire_pipe_to_fds_3_and_4() -> None:
            # Move both ends above 4 first so neither dup2 can clobber the other.
            read_end = fcntl.fcntl(chrome_in_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(chrome_out_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        with open(log, "wb") as log_file:
            self.proc = subprocess.Popen(
                [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
                 "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                close_fds=False, preexec_fn=wire_pipe_to_fds_3_and_4,
            )
        os.close(chrome_in_r)
        os.close(chrome_out_w)
        self.session = None
        target = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        width, height = VIEWPORT
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        reply = self._read_until(lambda m: m.get("id") == self._next_id, method)
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict:
        return self._read_until(lambda m: m.get("method") == method, method)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"probe script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path) -> None:
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        self.wait_event("Page.loadEventFired")

    def console_errors(self) -> list[str]:
        errors = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                errors.append(str(params.get("exceptionDetails", {}).get("text")))
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(json.dumps(params.get("args")))
            elif event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('text')} {entry.get('url', '')}")
        return errors

    def close(self) -> None:
        try:
            self.session = None
            self.call("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def _read_until(self, wanted, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if wanted(message):
                    return message
                if "method" in message:
                    self.events.append(message)
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"Chromium did not answer {what} in {self.timeout:.0f} s; "
                                     f"log: {self.log.read_text(errors='replace')[-2000:]}")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium exited while waiting for {what}; "
                                     f"log: {self.log.read_text(errors='replace')[-2000:]}")
            self._buffer += chunk


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _require_chromium()
    base = tmp_path_factory.mktemp("chromium")
    chrome = Chromium(base / "profile", base / "chromium.log")
    yield chrome
    chrome.close()


def _photo(path: Path, seed: int, damaged: bool = False) -> None:
    """A small landscape-ish picture; `damaged` grey-smears the bottom like a half-decoded RAW."""
    width, height = 360, 240
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    top = (40 + seed * 23 % 120, 90 + seed * 37 % 100, 150 + seed * 11 % 90)
    for y in range(height):
        shade = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(c * (1 - shade) + 60 * shade) for c in top))
    draw.polygon([(0, 200), (120 - seed % 40, 110), (220, 190), (300, 130), (360, 200), (360, 240), (0, 240)],
                 fill=(30 + seed % 50, 70, 40))
    draw.ellipse([260 - seed % 60, 30, 300 - seed % 60, 70], fill=(250, 230, 160))
    if damaged:
        for y in range(110, height, 4):
            draw.rectangle([0, y, width, y + 3], fill=(128 + (y * 7) % 40, 128, 128 + (y * 3) % 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=85)


def _record(path, kind, status="verified", preview=None, detail="", **extra):
    record = {"path": path, "kind": kind, "size": 24_000_000 if kind == "raw" else 9_000_000,
              "mtime_ns": 0, "xxh3_128": "ab" * 16, "status": status, "detail": detail,
              "copies": [], "capture_time": "2026-11-20T14:03:11", "camera_make": "NIKON CORPORATION",
              "camera_model": "NIKON Z 6_2", "seconds": 0.2,
              "decode": {"decoder": "rawpy", "ok": True, "error": None, "checks": [], "seconds": 0.1,
                         "verdict": "ok"},
              "preview": preview, "attempts": 1}
    record.update(extra)
    return record


@pytest.fixture(scope="module")
def sheet(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("dest")
    previews = dest / ".ingest" / "previews"
    day = "2026/2026-11-20"
    folder = "DCIM/100NZ6_2"
    files = []
    for n in range(1, 25):
        stem = f"DSC_{n:04d}"
        if n == 3:
            _photo(previews / day / f"{stem}.NEF.jpg", n, damaged=True)
            files.append(_record(
                f"{folder}/{stem}.NEF", "raw", "needs_recopy", preview=f"{day}/{stem}.NEF.jpg",
                detail="The copy on /Volumes/Backup B read back with a different hash.",
                copies=[{"destination": "/Volumes/Archive A", "path": f"{day}/{stem}.NEF", "verified": True, "action": "copied"},
                        {"destination": "/Volumes/Backup B", "path": f"{day}/{stem}.NEF", "verified": False, "action": "failed"}]))
        elif n == 7:
            files.append(_record(
                f"{folder}/{stem}.NEF", "raw", "damaged_on_card", detail="LibRaw: data corrupted at row 1184 of 4024.",
                decode={"decoder": "rawpy", "ok": False, "error": "data corrupted", "checks": [], "seconds": 0.3,
                        "verdict": "damaged"}))
        elif n % 4 == 0:
            _photo(previews / day / f"{stem}.JPG.jpg", n)
            _photo(previews / day / f"{stem}.NEF.jpg", n)
            files.append(_record(f"{folder}/{stem}.NEF", "raw", preview=f"{day}/{stem}.NEF.jpg"))
            files.append(_record(f"{folder}/{stem}.JPG", "jpeg", preview=f"{day}/{stem}.JPG.jpg"))
        else:
            _photo(previews / day / f"{stem}.NEF.jpg", n)
            files.append(_record(f"{folder}/{stem}.NEF", "raw", preview=f"{day}/{stem}.NEF.jpg"))
    hostile = "<b>bold<b> & \"quoted\".JPG"  # no "/": a card name cannot hold one
    _photo(previews / day / f"{hostile}.jpg", 99)
    files.append(_record(f"{folder}/{hostile}", "jpeg", preview=f"{day}/{hostile}.jpg"))
    files.append(_record(f"{folder}/DSC_0030.NEF", "raw", decode=None))  # no preview written
    files.append(_record(f"{folder}/DSC_0031.MOV", "video", size=1_800_000_000, decode=None))
    files.append(_record(f"{folder}/DSC_0001.XMP", "sidecar", size=3_000, decode=None))
    total = sum(f["size"] for f in files)
    report = {
        "schema": "ingest-report/1", "command": "offload", "tool_version": "0.1.0",
        "started_at": "2026-11-26T05:00:00+00:00", "finished_at": "2026-11-26T05:01:04+00:00",
        "seconds": 64.2, "source": "/media/NIKON Z 6_2",
        "destinations": [
            {"root": "/Volumes/Archive A", "device": 2049, "files": len(files), "bytes": total, "error": None},
            {"root": "/Volumes/Backup B", "device": 2065, "files": len(files), "bytes": total, "error": None}],
        "versions": {"ingest": "0.1.0", "libraw": "0.22.2", "rawpy": "0.28.0",
                     "libjpeg": "libjpeg-turbo 3.0.4"},
        "skipped_system_files": 2, "files": files,
        "summary": {"files": len(files), "bytes": total, "flagged": 2, "safe_to_format": False,
                    "verdict": "2 files need attention: do not format this card"},
    }
    return write_html(report, dest / ".ingest" / "reports" / "offload-20261126-050000.html", previews)


FIRST_SCREEN = """(() => {
  const box = el => { const r = el.getBoundingClientRect();
                      return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const onTop = el => { const r = el.getBoundingClientRect();
                        const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
                        return !!hit && el.contains(hit); };
  const tile = [...document.querySelectorAll('#attention article')]
                 .find(t => t.innerText.includes('DSC_0003.NEF'));
  const reason = tile.querySelector('.reason');
  const verdict = document.querySelector('h1.verdict');
  return {width: innerWidth, height: innerHeight, scrollY: scrollY,
          tile: box(tile), tileText: tile.innerText, tileOnTop: onTop(tile),
          reason: box(reason), reasonText: reason.innerText, reasonOnTop: onTop(reason),
          verdict: box(verdict), verdictText: verdict.innerText};
})()"""

ALL_IMAGES = """(async () => {
  const images = [...document.images];
  for (const img of images) {
    img.scrollIntoView({block: 'center'});
    if (!img.complete) {
      await new Promise(done => {
        img.addEventListener('load', done, {once: true});
        img.addEventListener('error', done, {once: true});
        setTimeout(done, 10000);
      });
    }
  }
  window.scrollTo(0, 0);
  return images.map(img => ({src: img.getAttribute('src'), width: img.naturalWidth}));
})()"""


def test_flagged_tile_and_reason_are_on_the_first_screen(browser, sheet, tmp_path):
    browser.open(sheet)
    seen = browser.evaluate(FIRST_SCREEN)
    assert (seen["width"], seen["height"]) == VIEWPORT and seen["scrollY"] == 0
    for part in ("tile", "reason", "verdict"):
        box = seen[part]
        assert 0 <= box["top"] < box["bottom"] <= VIEWPORT[1], (part, box)
        assert 0 <= box["left"] < box["right"] <= VIEWPORT[0], (part, box)
    assert seen["tileOnTop"] and seen["reasonOnTop"]
    assert "read back with a different hash" in seen["reasonText"]
    assert ADVICE["needs_recopy"] in seen["tileText"]
    assert seen["verdictText"] == "2 files need attention: do not format this card"

    shot = browser.call("Page.captureScreenshot", {"format": "png"})
    png = tmp_path / "first-screen.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    with Image.open(png) as image:
        assert image.size == VIEWPORT
        verdict = seen["verdict"]
        # The verdict banner really is painted red where the DOM says it is.
        pixel = image.convert("RGB").getpixel((int(verdict["left"]) + 6, int(verdict["top"]) + 6))
        assert all(abs(a - b) < 12 for a, b in zip(pixel, RED_VERDICT, strict=True)), pixel


def test_every_image_loads_and_the_console_stays_clean(browser, sheet):
    browser.events.clear()
    browser.open(sheet)
    images = browser.evaluate(ALL_IMAGES)
    assert len(images) == 24  # 23 shots with previews (a pair shares one) + the hostile name
    broken = [img["src"] for img in images if img["width"] <= 0]
    assert broken == []
    assert browser.console_errors() == []


def test_the_console_check_does_catch_a_broken_image(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><meta charset="utf-8"><img src="absent.jpg" width="10" height="10">')
    browser.events.clear()
    browser.open(page)
    images = browser.evaluate(ALL_IMAGES)
    assert images == [{"src": "absent.jpg", "width": 0}]
    assert any("absent.jpg" in error or "ERR_FILE_NOT_FOUND" in error for error in browser.console_errors())
