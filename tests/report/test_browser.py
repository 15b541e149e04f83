"""The HTML report in a real browser: headless Chromium renders report.html (built from the
fixture run) at 1400 and 420 CSS px; every image must decode and nothing may overflow sideways.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``, stdlib
only). Window sizes cannot go below ~500 px in headless Chromium, so the 420 px phone is the
protocol's device emulation (``Emulation.setDeviceMetricsOverride``, mobile), which also makes the
page's ``<meta viewport>`` count, as on a phone.

Run directly for screenshots of any report::

    python tests/report/test_browser.py reports/report.html /tmp/report 1400 420
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe")
TIMEOUT_S = 20.0

pytestmark = pytest.mark.e2e  # a real browser: `make test-e2e`

#: Runs in the page once it has loaded, with the intended width: images decoded, widths, and
#: the first elements (outside the sideways-scrolling table wrappers) that stick out past it.
CHECK_JS = """async (width) => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const body = document.body.getBoundingClientRect();
  const px = imgs.filter(i => i.classList.contains('px')).map(i => ({
    alt: i.alt, natural: i.naturalWidth, shown: i.getBoundingClientRect().width}));
  const out = [...document.body.querySelectorAll('*')].filter(e =>
    !e.closest('.tablewrap') && e.getBoundingClientRect().right > width + 0.5);
  return {images: imgs.length,
          broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
          innerWidth: window.innerWidth, bodyWidth: body.width,
          scrollWidth: document.documentElement.scrollWidth,
          overflowing: out.slice(0, 5).map(e => e.tagName + '.' + e.className), px};
}"""


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def _high_fd(fd: int) -> int:
    """``fd`` moved above 10, so the child's dup2 onto 3 and 4 cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """A headless Chromium and one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_r, to_w = map(_high_fd, os.pipe())
        from_r, from_w = map(_high_fd, os.pipe())

        def child() -> None:  # the protocol's fds: Chromium reads 3, writes 4
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"], pass_fds=(3, 4),
            preexec_fn=child, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.out, self.inp, self.buf, self.next_id, self.events = to_w, from_r, b"", 0, []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Page.enable", session=True)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            ready, _, _ = select.select([self.inp], [], [], max(0.0, deadline - time.time()))
            chunk = os.read(self.inp, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("Chromium did not answer over the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str) -> None:
        deadline = time.time() + TIMEOUT_S
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._read(deadline))
        self.events.clear()

    def open(self, url: str, width: int, height: int = 900) -> dict[str, Any]:
        """Load ``url`` at a viewport of ``width`` CSS px (a phone below 800) and run
        :data:`CHECK_JS`."""
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=width < 800)
        self.events.clear()
        self.send("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        result = self.send("Runtime.evaluate", session=True,
                           expression=f"({CHECK_JS})({width})", awaitPromise=True,
                           returnByValue=True)
        return result["result"]["value"]

    def screenshot(self, path: Path, width: int, chunk: int = 8000) -> None:
        """The whole page as one PNG, captured in chunks (Chromium caps one capture's size)."""
        from PIL import Image as PILImage

        height = int(self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]["height"])
        page = PILImage.new("RGB", (width, height), "white")
        for top in range(0, height, chunk):
            clip = {"x": 0, "y": top, "width": width, "height": min(chunk, height - top),
                    "scale": 1}
            shot = self.send("Page.captureScreenshot", session=True, format="png", clip=clip,
                             captureBeyondViewport=True)
            page.paste(PILImage.open(io.BytesIO(base64.b64decode(shot["data"]))), (0, top))
        page.save(path)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.out)
        os.close(self.inp)


@pytest.fixture
def browser(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary found (Debian: apt-get install chromium; .ci/run "
                    "installs it)")
    chrome = Chromium(binary, tmp_path / "profile")
    yield chrome
    chrome.close()


@pytest.fixture
def report_html(tmp_path, fake_run) -> Path:
    """report.html of the fixture run, copied alone into an empty directory."""
    from genduel.report.build import write_report

    run = tmp_path / "run"
    inp = fake_run(run, extras=True)
    write_report(inp, eval_dir=run / "eval", artifacts_dir=run / "artifacts",
                 data_dir=run / "data", out_dir=run / "reports")
    alone = tmp_path / "alone" / "report.html"
    alone.parent.mkdir()
    shutil.copy(run / "reports" / "report.html", alone)  # no figures/ beside it
    return alone


@pytest.mark.parametrize("width", [1400, 420])
def test_report_html_renders_alone_with_every_image_and_no_sideways_overflow(
        browser, report_html, width):
    page = browser.open(report_html.as_uri(), width)
    assert page["images"] > 20 and page["broken"] == []
    assert page["overflowing"] == []
    # a phone lays the page out at its own width only with the viewport meta and when nothing
    # is wider (else it zooms out to fit the content)
    assert page["innerWidth"] == width
    assert page["scrollWidth"] <= page["innerWidth"]
    for img in page["px"]:  # grids: 3x where the page has room, never wider than the page
        assert img["shown"] <= page["bodyWidth"] + 0.5
        if 3 * img["natural"] <= page["bodyWidth"] - 40:
            assert img["shown"] == pytest.approx(3 * img["natural"], abs=0.5), img


def main(argv: list[str]) -> int:
    """``REPORT.html OUT_PREFIX WIDTH...``: screenshots OUT_PREFIX_<width>.png and the checks."""
    html, prefix, widths = Path(argv[0]).resolve(), argv[1], [int(w) for w in argv[2:]]
    with tempfile.TemporaryDirectory() as profile:
        chrome = Chromium(chromium_binary() or "chromium", Path(profile))
        try:
            for width in widths:
                page = chrome.open(html.as_uri(), width)
                page.pop("px")
                print(width, json.dumps(page))
                chrome.screenshot(Path(f"{prefix}_{width}.png"), width)
        finally:
            chrome.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
