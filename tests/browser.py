"""A real browser for tests: headless Chromium driven over the DevTools protocol through a pipe.

`--remote-debugging-pipe` makes Chromium read protocol commands from fd 3 and write replies and events
to fd 4, NUL-separated JSON: no port, no websocket, nothing but the standard library.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
PROBLEMS = ("Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded")


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM) if path), None)


class Browser:
    """One headless Chromium with one page, networking off; close() ends it."""

    def __init__(self, executable: str, profile: Path, width: int = 1200, height: int = 900) -> None:
        commands, browser_in = os.pipe()  # we write commands; the browser reads them on fd 3
        browser_out, replies = os.pipe()  # the browser writes on fd 4; we read
        # copies at fd >= 10 so that moving them to 3 and 4 cannot overwrite one another
        import fcntl  # POSIX: the browser test skips elsewhere (a pipe handed over as fd 3 and 4)

        read_end, write_end = fcntl.fcntl(commands, fcntl.F_DUPFD, 10), fcntl.fcntl(replies, fcntl.F_DUPFD, 10)
        os.close(commands)
        os.close(replies)
        arguments = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                     f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-extensions",
                     "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "about:blank"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{read_end} 4>&{write_end} {read_end}<&- {write_end}>&-', "bash", *arguments],
            pass_fds=(read_end, write_end), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(read_end)
        os.close(write_end)
        self.commands, self.replies = browser_in, browser_out
        self.buffer, self.last_id, self.events = b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", page=True)
        self.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, page=True)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, page=True)

    def send(self, method: str, params: dict[str, Any] | None = None, page: bool = False,
             timeout: float = 60) -> dict[str, Any]:
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            if not select.select([self.replies], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._receive(deadline))

    def open(self, path: Path) -> None:
        """Load a file and wait for its load event."""
        self.send("Page.navigate", {"url": path.resolve().as_uri()}, page=True)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, page=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page, top to bottom, as a PNG."""
        height = self.send("Page.getLayoutMetrics", page=True)["cssContentSize"]["height"]
        width = self.evaluate("document.documentElement.clientWidth")
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, page=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def problems(self) -> list[dict[str, Any]]:
        """Console messages of level error or warning, uncaught exceptions, and log entries of level error."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown" or (
                    event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning")
            ) or (event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error"):
                found.append(event)
        return found

    def requested_urls(self) -> list[str]:
        return [event["params"]["request"]["url"] for event in self.events
                if event.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
