"""Headless Chromium driven over the DevTools protocol: pages laid out as a person sees them.

``Browser`` starts Debian's ``chromium`` with ``--remote-debugging-port=0`` (Chromium picks a
free port and writes it to ``DevToolsActivePort`` in its profile), opens one tab and talks
to it over a WebSocket (``websocket-client``). A test can then size the viewport like a
phone, load a page, ask the page for its layout (``evaluate``) and keep a screenshot: what
``--dump-dom`` and ``--screenshot`` alone cannot tell (a column cut off at 420 px).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import websocket

from tests.support.processes import ProcessHandle, start_process, tail, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0
LOAD_TIMEOUT = 30.0


class Browser:
    """One headless Chromium with one tab; use as a context manager."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._process: ProcessHandle | None = None
        self._socket: websocket.WebSocket | None = None
        self._ids = itertools.count(1)
        self._session: str | None = None

    def __enter__(self) -> Browser:
        if CHROMIUM is None:
            raise AssertionError("chromium is not installed (scripts/test installs it)")
        profile = self.work_dir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        self._process = start_process(
            [
                CHROMIUM,
                *HEADLESS_FLAGS,
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            env={**os.environ, "HOME": str(self.work_dir)},
            cwd=self.work_dir,
            log_path=self.work_dir / "chromium.log",
        )
        try:
            active = profile / "DevToolsActivePort"
            port, path = wait_for(
                lambda: active.read_text().split(),
                START_TIMEOUT,
                message=lambda: (
                    "chromium did not open its DevTools port:\n" + tail(self._process.output())
                ),
            )[:2]
            self._socket = websocket.create_connection(
                f"ws://127.0.0.1:{port}{path}", timeout=COMMAND_TIMEOUT, suppress_origin=True
            )
            target = self._send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self._send("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._socket is not None:
            self._socket.close()
        if self._process is not None:
            self._process.kill_tree()

    def _send(self, method: str, **params: Any) -> dict:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        self._socket.send(json.dumps(message))
        while True:  # events arrive in between; only our answer matters
            answer = json.loads(self._socket.recv())
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def open(self, url: str, width: int, height: int = 900, mobile: bool = False) -> None:
        """Load ``url`` in a viewport of ``width`` x ``height`` CSS pixels (a phone's, with
        ``mobile``: the page's viewport meta tag applies) and wait until it has loaded."""
        self._send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        self._send("Page.navigate", url=url)
        deadline = time.monotonic() + LOAD_TIMEOUT
        while self.evaluate("document.readyState + ' ' + location.href") != f"complete {url}":
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not load within {LOAD_TIMEOUT:g} s")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self._send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> tuple[int, int]:
        """The whole page as a PNG at ``path``; returns its width and height in pixels."""
        data = base64.b64decode(
            self._send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return png_size(data)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR), which must be there."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise AssertionError("not a PNG image")
    return struct.unpack(">II", data[16:24])


# What the layout checks ask the page: is anything wider than the window, and is every
# labelled cell (the status tables' data-label cells) shown, inside the window.
LAYOUT = """(() => {
  const width = window.innerWidth;
  const cells = [...document.querySelectorAll('td[data-label]')].map(td => {
    const box = td.getBoundingClientRect();
    return {label: td.dataset.label, left: box.left, right: box.right, width: box.width,
            height: box.height};
  });
  return {width, scrollWidth: document.documentElement.scrollWidth, cells};
})()"""


def layout_problems(layout: dict) -> list[str]:
    """What a person would miss on this page: cut-off cells, a page wider than the window."""
    width = layout["width"]
    problems = []
    if layout["scrollWidth"] > width + 1:
        problems.append(f"the page is {layout['scrollWidth']} px wide in a {width} px window")
    for cell in layout["cells"]:
        if cell["width"] <= 0 or cell["height"] <= 0:
            problems.append(f"{cell['label']} is hidden")
        elif cell["left"] < -1 or cell["right"] > width + 1:
            problems.append(
                f"{cell['label']} is cut off ({cell['left']:.0f}-{cell['right']:.0f} px)"
            )
    return problems
