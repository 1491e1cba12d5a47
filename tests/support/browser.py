"""A real browser for the integration tests: headless Debian Chromium driven over the
DevTools protocol (CDP) with Debian's python3-websocket, and a static web site to load pages
from. Both are subprocesses started on ephemeral loopback ports and stopped by PID.

    site = StaticSite(directory)            # http://127.0.0.1:<port>, python3 -m http.server
    chromium = Chromium()                   # --remote-debugging-port=0, port read from the profile
    tab = chromium.open(site.origin + "/page.html?...")
    tab.wait_text("#outcome", timeout=30)   # document.querySelector(...).textContent, polled
    chromium.stop(); site.stop()

Nothing here sleeps to wait for readiness: every wait is a bounded poll on something
observable (a file the process writes, a DOM node's text).
"""

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from polling import wait_until

try:
    import websocket  # Debian python3-websocket (websocket-client)
except ImportError:  # reported by unavailable(); the tests that need it skip
    websocket = None

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DEBIAN_PYTHON = "/usr/bin/python3"

STARTUP_TIMEOUT = 30.0  # a cold Chromium on a busy 2-core machine takes a few seconds
STOP_TIMEOUT = 10.0
CDP_TIMEOUT = 30.0
POLL_INTERVAL = 0.1


def _poll(predicate, timeout, what):
    return wait_until(predicate, timeout, interval=POLL_INTERVAL, what=what)


def unavailable():
    """Why the browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return "%s is not installed (Debian package chromium; `make test-deps` installs it)" % CHROMIUM
    if websocket is None:
        return "python module websocket is missing (Debian package python3-websocket)"
    return None




def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process goes away without cleaning
    up (ctest's timeout kills it, ^C), so no browser outlives its test. Chromium's own
    helpers exit when the browser process is gone."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _ProcessGroup:
    """A subprocess in its own session and process group, so that stop() reaches every
    process it forked (Chromium's zygotes, renderers, GPU and network services), by PID."""

    def __init__(self, argv, log_path, cwd=None, env=None):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM to the group, SIGKILL to whatever is left of it after STOP_TIMEOUT (or
        right away for children that outlived their leader). Idempotent."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode

    def _signal_group(self, sig):
        try:
            os.killpg(self.pid, sig)  # the group id is the leader's PID (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass


class StaticSite:
    """`python3 -m http.server` serving `directory` on 127.0.0.1:<ephemeral port>; `origin`
    is its http://127.0.0.1:<port>. A different port is a different origin, so two instances
    are two web sites to the browser."""

    def __init__(self, directory):
        self.dir = tempfile.mkdtemp(prefix="websmtp-site.")
        log_path = os.path.join(self.dir, "http.server.log")
        self._group = _ProcessGroup([DEBIAN_PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                                     "--directory", directory], log_path)
        try:
            # http.server prints the port it really bound before it serves.
            m = _poll(lambda: self._ready(log_path), STARTUP_TIMEOUT, "the static site to listen")
        except BaseException:
            self.stop()
            raise
        self.port = int(m.group(1))
        self.origin = "http://127.0.0.1:%d" % self.port

    def _ready(self, log_path):
        if not self._group.running():
            raise RuntimeError("http.server exited with %s; log:\n%s" % (self._group.proc.returncode, self.log_text()))
        return re.search(r"Serving HTTP on 127\.0\.0\.1 port (\d+) ", _read(log_path))

    def log_text(self):
        return _read(self._group.log_path)

    def stop(self):
        self._group.stop()
        text = self.log_text()
        shutil.rmtree(self.dir, ignore_errors=True)
        return text


class Chromium:
    """Headless Chromium with a fresh profile; DevTools on an ephemeral port that Chromium
    writes to <profile>/DevToolsActivePort. One browser-level CDP connection; pages are
    targets attached with flat sessions."""

    FLAGS = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        # CI reaches nothing but loopback: no update checks, safe-browsing lists or the like.
        "--disable-background-networking", "--disable-component-update",
    ]

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="websmtp-chromium.")
        self.profile = os.path.join(self.dir, "profile")
        os.mkdir(self.profile)
        self.log_path = os.path.join(self.dir, "chromium.log")
        self._final_log = None
        # /usr/bin/chromium is Debian's launcher script; it execs the browser, so the PID
        # started here is the browser's.
        argv = [CHROMIUM] + self.FLAGS + ["--user-data-dir=" + self.profile, "--remote-debugging-port=0"]
        self._group = _ProcessGroup(argv, self.log_path, cwd=self.dir)
        self.pid = self._group.pid
        self.cdp = None
        try:
            port, path = _poll(self._active_port, STARTUP_TIMEOUT, "Chromium's DevToolsActivePort")
            self.cdp = DevTools("ws://127.0.0.1:%d%s" % (port, path))
        except BaseException:
            self.stop()
            raise

    def _active_port(self):
        if not self._group.running():
            raise RuntimeError("chromium exited with %s before DevTools listened; log:\n%s"
                               % (self._group.proc.returncode, self.log_text()[-8000:]))
        lines = _read(os.path.join(self.profile, "DevToolsActivePort")).splitlines()
        # Two lines: the port, then the browser target's path. Chromium may not have
        # finished writing it yet.
        if len(lines) >= 2 and lines[0].isdigit() and lines[1].startswith("/devtools/browser/"):
            return int(lines[0]), lines[1]
        return None

    def open(self, url):
        """A new tab (target) with a flat CDP session and the Network domain on, sent to `url`."""
        target = self.cdp.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tab = Tab(self.cdp, target, session)
        self.cdp.call("Network.enable", session=session)
        self.cdp.call("Runtime.enable", session=session)
        tab.navigate(url)
        return tab

    def log_text(self):
        return self._final_log if self._final_log is not None else _read(self.log_path)

    def stop(self):
        if self.cdp is not None:
            self.cdp.close()
        self._group.stop()
        if self._final_log is None:
            self._final_log = _read(self.log_path)
            shutil.rmtree(self.dir, ignore_errors=True)
        return self._final_log


class CdpError(Exception):
    pass


class DevTools:
    """A minimal CDP client over one WebSocket: numbered commands, answers matched by id;
    events that arrive meanwhile are kept in `events` for the tests to inspect."""

    def __init__(self, url):
        # Chromium refuses DevTools WebSockets whose handshake carries an Origin it was not
        # told to allow (--remote-allow-origins); a non-browser client sends none.
        self.ws = websocket.create_connection(url, timeout=CDP_TIMEOUT, suppress_origin=True)
        self.events = []
        self._next_id = 0

    def call(self, method, session=None, timeout=CDP_TIMEOUT, **params):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CdpError("no answer to %s within %.0fs" % (method, timeout))
            self.ws.settimeout(remaining)
            try:
                answer = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if answer.get("id") != msg["id"]:
                if "method" in answer:
                    self.events.append(answer)
                continue
            if "error" in answer:
                raise CdpError("%s: %s" % (method, answer["error"]))
            return answer.get("result", {})

    def events_of(self, method, session):
        return [e["params"] for e in self.events if e.get("method") == method and e.get("sessionId") == session]

    def close(self):
        try:
            self.ws.close()
        except Exception:  # closing a connection the browser already dropped
            pass


class Tab:
    def __init__(self, cdp, target, session):
        self.cdp = cdp
        self.target = target
        self.session = session

    def navigate(self, url):
        r = self.cdp.call("Page.navigate", session=self.session, url=url)
        if r.get("errorText"):
            raise CdpError("navigating to %s: %s" % (url, r["errorText"]))

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        r = self.cdp.call("Runtime.evaluate", session=self.session, expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise CdpError("%s threw: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def text(self, selector):
        """textContent of the first element matching `selector`, or None when there is none."""
        return self.evaluate("(() => { const e = document.querySelector(%s); return e ? e.textContent : null; })()"
                             % json.dumps(selector))

    def wait_text(self, selector, timeout):
        """Poll until the element's text is non-empty; returns it."""
        return _poll(lambda: self.text(selector), timeout, "text in %s" % selector)

    def events(self, method):
        """The events of `method` this tab's session has sent so far (Network.* with the
        Network domain on)."""
        return self.cdp.events_of(method, self.session)

    def wait_events(self, method, match, timeout, count=1):
        """Poll until at least `count` events of `method` satisfy `match`; returns them all.
        Events come from the browser and the renderer by different paths, so one the page
        has already acted on may still be on its way."""
        def found():
            self.cdp.call("Runtime.evaluate", session=self.session, expression="0")  # reads what has arrived
            hits = [e for e in self.events(method) if match(e)]
            return hits if len(hits) >= count else None
        return _poll(found, timeout, "%d %s event(s) in the tab" % (count, method))

    def close(self):
        self.cdp.call("Target.closeTarget", targetId=self.target)
