"""Shared helpers for the websmtp integration tests.

The tests run the real ``websmtpd`` / ``websmtpctl`` binaries (paths in the WEBSMTPD and
WEBSMTPCTL environment variables, set by ctest) against the scriptable aiosmtpd peer in
tests/support/smtp_peer.py. Everything binds port 0 and reports the real port; nothing
sleeps to wait for readiness: every wait is a bounded poll on an observable condition.
"""

import concurrent.futures
import email
import email.header
import email.policy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SUPPORT = os.path.join(os.path.dirname(HERE), "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from polling import wait_until  # noqa: E402  (tests/support, on the path just above)

from smtp_peer import PeerProcess  # noqa: E402,F401  (re-exported for the tests)

WEBSMTPD = os.environ.get("WEBSMTPD", "")
WEBSMTPCTL = os.environ.get("WEBSMTPCTL", "")

# Every key websmtpd reads (libcore/src/config/config.cpp). They are removed from the
# inherited environment so that a developer's shell cannot change what a test runs.
CONFIG_KEYS = (
    "HOST", "PORT", "ADMIN_PORT", "THREADS", "HTTP_THREADS", "GIN_MODE", "LOG_LEVEL",
    "DELIVERY", "SMTP_SERVER", "SMTP_PORT", "SMTP_USER", "SMTP_PWD", "SMTP_TLS",
    "SMTP_TLS_VERIFY", "SMTP_HELO", "DATA_DIR", "STORE_SYNC", "STATUS_TTL",
    "MAX_BODY_BYTES", "MAX_RECIPIENTS", "CORS_ORIGINS", "MESSAGE_ID_DOMAIN", "RETRY_MIN",
    "RETRY_MAX", "MAX_LIFETIME", "AFTER_DATA_TIMEOUT", "SHUTDOWN_GRACE",
    "SMTP_CONNECT_TIMEOUT", "SMTP_COMMAND_TIMEOUT", "SMTP_DATA_TIMEOUT",
    "STATUS_CACHE_SIZE", "READY_FILE", "HTTP_HEADER_TIMEOUT", "HTTP_BODY_TIMEOUT", "HTTP_IDLE_TIMEOUT",
    "WORKER_NICE", "AUTH_MODE", "RATE_LIMIT_IP", "TRUSTED_PROXIES", "JWT_HS256_SECRET",
    "JWT_PUBLIC_KEY_FILE", "JWT_JWKS_FILE", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_RATE_PER_MINUTE",
    "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_CLIENT", "MAX_LONGPOLLS", "ADMIN_HOST", "ADMIN_TOKEN",
    "WEBSMTP_URL", "WEBSMTP_ADMIN_URL", "WEBSMTP_API_KEY", "WEBSMTP_ADMIN_TOKEN",
    "DNS_SERVER", "MX_TLS", "SMTP_CA_FILE", "MX_MAX_PER_HOST", "MX_POOL_SIZE", "MX_IDLE_TIMEOUT",
    "DKIM_KEYS_DIR", "DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_KEY_FILE",
    "OUTBOUND_IP",
    "STORE", "DATABASE_URL", "LEASE_TIMEOUT", "NODE_ID",
    "WEBHOOK_SECRET", "WEBHOOK_RETRY_MIN", "WEBHOOK_RETRY_MAX", "WEBHOOK_ALLOW_PRIVATE",
)

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0
HTTP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


def require_binary(path, name):
    if not path or not os.access(path, os.X_OK):
        raise unittest.SkipTest("%s is not set to an executable (got %r)" % (name, path))


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_KEYS}
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


def self_signed_cert(test):
    """A self-signed certificate for CN=localhost: (cert path, key path), removed at cleanup."""
    d = tempfile.mkdtemp(prefix="websmtp-cert-")
    test.addCleanup(shutil.rmtree, d, True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return cert, key


def closed_port_socket():
    """A TCP socket bound to 127.0.0.1:<ephemeral> that never listens.

    Connections to its port are refused, and while the socket stays open no other
    process can take the port, so "a relay that is down" cannot turn into someone
    else's server. Close it to free the port.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s



class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # http.client.HTTPMessage: case-insensitive .get()
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Daemon:
    """One websmtpd process in its own temporary working directory.

    The working directory has no .env and ``--env-file /nonexistent`` is passed, so only
    the environment given here configures the daemon. DATA_DIR lives inside it and
    survives stop()/kill9(), so start() again resumes on the same store.
    """

    def __init__(self, env=None, name="websmtpd"):
        require_binary(WEBSMTPD, "WEBSMTPD")
        self.dir = tempfile.mkdtemp(prefix="websmtp-it.")
        self.data_dir = os.path.join(self.dir, "data")
        self.ready_file = os.path.join(self.dir, "ready.json")
        self.log_path = os.path.join(self.dir, name + ".log")
        self.env = {
            "PORT": "0",
            "ADMIN_PORT": "0",
            "HOST": "0.0.0.0",
            "DATA_DIR": self.data_dir,
            "READY_FILE": self.ready_file,
            "LOG_LEVEL": "debug",
            "RETRY_MIN": "1s",
            "RETRY_MAX": "2s",
            "SMTP_CONNECT_TIMEOUT": "5s",
            "SMTP_COMMAND_TIMEOUT": "10s",
            "SMTP_DATA_TIMEOUT": "20s",
            "SHUTDOWN_GRACE": "10s",
            # No lookup may leave the machine: a closed loopback port (tests that resolve
            # start their own DNS server and name it).
            "DNS_SERVER": "127.0.0.1:9",
        }
        self.env.update({k: str(v) for k, v in (env or {}).items()})
        self.proc = None
        self.pid = None
        self.port = None
        self.admin_port = None
        self.returncodes = []
        self._starts = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self, **overrides):
        """Start (or restart) the daemon; `overrides` update the environment for good."""
        if self.running():
            raise RuntimeError("daemon already running")
        self.env.update({k: str(v) for k, v in overrides.items()})
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        self._starts += 1
        log = open(self.log_path, "ab")
        log.write(("==== start #%d: %s\n" % (self._starts, json.dumps(self.env, sort_keys=True))).encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                [WEBSMTPD, "--env-file", "/nonexistent"],
                cwd=self.dir, env=clean_env(self.env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, close_fds=True)
        finally:
            log.close()
        self._read_ready()
        return self

    def _read_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("websmtpd exited with %s before it was ready; log:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            try:
                with open(self.ready_file) as f:
                    info = json.load(f)
                break
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() >= deadline:
                self.kill9()
                raise RuntimeError("websmtpd not ready within %.0fs; log:\n%s"
                                   % (STARTUP_TIMEOUT, self.log_text()))
            time.sleep(0.02)
        if info.get("pid") != self.proc.pid:
            raise RuntimeError("ready file names pid %r, started %r" % (info.get("pid"), self.proc.pid))
        self.pid = info["pid"]
        self.port = int(info["port"])
        self.admin_port = int(info["admin_port"])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError("websmtpd (pid %d) did not exit within %.0fs" % (self.proc.pid, timeout))
        self.returncodes.append(rc)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the daemon by PID and wait for it; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill9(self):
        return self.stop(signal.SIGKILL, timeout=10)

    def cleanup(self):
        """Stop the process (SIGKILL if needed) and remove the working directory."""
        if self.running():
            try:
                self.stop(signal.SIGTERM, timeout=10)
            except AssertionError:
                pass
        if self.running():
            self.kill9()
        log = self.log_text()
        shutil.rmtree(self.dir, ignore_errors=True)
        # Under the asan/ubsan/tsan presets the daemon reports to its stderr (this log):
        # any report fails the test that ran it.
        for marker in SANITIZER_MARKERS:
            at = log.find(marker)
            if at >= 0:
                raise AssertionError("websmtpd reported a sanitizer error:\n" + log[max(0, at - 200):at + 4000])
        return log

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- HTTP ----------------------------------------------------------------------

    def connection(self, admin=False, host="127.0.0.1", timeout=HTTP_TIMEOUT):
        return http.client.HTTPConnection(host, self.admin_port if admin else self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, admin=False):
        conn = self.connection(admin=admin)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.reason, r.headers, r.read())
        finally:
            conn.close()

    def post_send(self, payload, headers=None):
        """POST /mail/send; `payload` is a dict (sent as JSON) or raw bytes/str."""
        if isinstance(payload, (dict, list)):
            body = json.dumps(payload).encode("utf-8")
        elif isinstance(payload, str):
            body = payload.encode("utf-8")
        else:
            body = payload
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.request("POST", "/mail/send", body=body, headers=h)

    def submit(self, payload, headers=None):
        """post_send that must be accepted; returns the ref."""
        r = self.post_send(payload, headers)
        if r.status != 202:
            raise AssertionError("submit answered %d: %r" % (r.status, r.body[:500]))
        return r.json()["ref"]

    def status(self, ref):
        """GET /mail/status/<ref> -> (http status, parsed JSON)."""
        r = self.request("GET", "/mail/status/" + ref)
        return r.status, r.json()

    def queue(self):
        r = self.request("GET", "/admin/queue", admin=True)
        if r.status != 200:
            raise AssertionError("admin queue answered %d: %r" % (r.status, r.body))
        return r.json()

    def wait_status(self, ref, predicate, timeout=20.0, what=None):
        """Poll the status of `ref` until predicate(doc) holds; returns the document."""
        last = {}

        def check():
            code, doc = self.status(ref)
            last["doc"] = (code, doc)
            return doc if code == 200 and predicate(doc) else None
        try:
            return wait_until(check, timeout, what=what or "status of %s" % ref)
        except AssertionError as e:
            raise AssertionError("%s; last status: %r" % (e, last.get("doc")))

    def wait_completed(self, ref, timeout=20.0):
        return self.wait_status(ref, lambda d: d["status"] == "completed", timeout,
                                what="%s to complete" % ref)

    def wait_idle(self, timeout=60.0):
        """Poll the admin queue until nothing is queued, deferred or in flight: every
        outcome is committed. Returns the queue figures."""
        def idle():
            q = self.queue()
            return q if q["queued"] == 0 and q["deferred"] == 0 and q["in_flight"] == 0 \
                and q["workers_busy"] == 0 else None
        return wait_until(idle, timeout, interval=0.1, what="the queue to drain")

    def wait_all_completed(self, refs, timeout=60.0):
        """Poll every ref until all are completed; returns {ref: status document}."""
        pending = set(refs)
        docs = {}
        deadline = time.monotonic() + timeout
        while pending:
            for ref in list(pending):
                code, doc = self.status(ref)
                if code != 200:
                    raise AssertionError("status of accepted ref %s answered %d: %r" % (ref, code, doc))
                if doc["status"] == "completed":
                    docs[ref] = doc
                    pending.discard(ref)
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise AssertionError("%d of %d jobs not completed after %.0fs, e.g. %r"
                                     % (len(pending), len(refs), timeout,
                                        self.status(next(iter(pending)))))
            time.sleep(0.2)
        return docs


def mail(to=None, subject="Hello World", body="hello, how are you sir?", sender="Alice <alice@example.org>",
         test_id=None, **extra):
    """A /mail/send request; `test_id` becomes an X-Test-Id header to find the message."""
    req = {"from": sender, "to": to if to is not None else ["bob@example.net"], "subject": subject, "body": body}
    req.update(extra)
    if test_id is not None:
        req["headers"] = dict(req.get("headers") or {}, **{"X-Test-Id": test_id})
    return req


def exchange(port, data, timeout=5.0, reset_ends=False):
    """Sends raw bytes on a fresh connection to 127.0.0.1:port and returns everything the server
    sends until it closes (or `timeout` passes). With `reset_ends`, a reset ends the reading too
    (a server that closes with unread input resets); otherwise it is an error."""
    ends = (socket.timeout, ConnectionResetError) if reset_ends else (socket.timeout,)
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ends:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def new_test_id():
    return uuid.uuid4().hex


def parse_message(data):
    """Peer `data` (str, surrogateescape) -> email.message.EmailMessage."""
    raw = data.encode("utf-8", "surrogateescape")
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def header_text(value):
    """Unfold (RFC 5322 2.2.3) and decode (RFC 2047) a header value to text."""
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", value)
    return str(email.header.make_header(email.header.decode_header(unfolded)))


def test_id_of(message_record):
    msg = parse_message(message_record["data"])
    return msg.get("X-Test-Id")


def messages_by_test_id(peer):
    out = {}
    for m in peer.messages():
        out.setdefault(test_id_of(m), []).append(m)
    return out


def submit_concurrently(daemon, payloads, workers=16, on_accepted=None):
    """POST every payload from a pool of `workers` threads.

    Returns a list of (index, Response or exception). `on_accepted(count)` is called
    (under a lock) each time a 202 arrives, with the number of 202s so far.
    """
    lock = threading.Lock()
    accepted = [0]
    results = [None] * len(payloads)

    def one(i):
        try:
            r = daemon.post_send(payloads[i])
        except (OSError, http.client.HTTPException) as e:
            results[i] = e
            return
        results[i] = r
        if r.status == 202 and on_accepted is not None:
            with lock:
                accepted[0] += 1
                on_accepted(accepted[0])

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(payloads))))
    return results


class IntegrationTestCase(unittest.TestCase):
    """Starts peers and daemons whose cleanup is registered at once; keeps their logs
    and prints them when the test fails or errors."""

    maxDiff = 4000

    def run(self, result=None):
        self._logs = []
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for name, text in self._logs + self.extra_logs():
                tail = text[-20000:]
                sys.stderr.write("\n----- %s (%s) log tail -----\n%s\n----- end -----\n" % (name, self.id(), tail))
        return out

    def extra_logs(self):
        """Logs of class-level processes, for classes that share a daemon between tests."""
        return []

    def start_peer(self, fault=None, port=0):
        peer = PeerProcess(fault=fault, port=port)

        def stop():
            peer.stop()
            stderr = peer.stderr_text()
            if stderr:
                self._logs.append(("smtp peer :%s" % peer.port, stderr))
        self.addCleanup(stop)
        return peer

    def make_daemon(self, **env):
        d = Daemon(env)
        self.addCleanup(lambda: self._logs.append(("websmtpd", d.cleanup())))
        return d

    def start_daemon(self, **env):
        return self.make_daemon(**env).start()

    def relay_env(self, peer, **env):
        e = {"DELIVERY": "relay", "SMTP_SERVER": "127.0.0.1", "SMTP_PORT": peer.port, "SMTP_TLS": "none"}
        e.update(env)
        return e

    def assertJsonError(self, response, status, code=None, field=None):
        """A contract error: `status`, JSON content type, {error, code[, field]}."""
        self.assertEqual(response.status, status, response.body[:500])
        ctype = response.header("Content-Type") or ""
        self.assertTrue(ctype.startswith("application/json"), "Content-Type %r" % ctype)
        doc = response.json()
        self.assertIsInstance(doc, dict)
        self.assertIsInstance(doc.get("error"), str)
        self.assertTrue(doc["error"])
        self.assertIsInstance(doc.get("code"), str)
        if code is not None:
            self.assertEqual(doc["code"], code, doc)
        if field is not None:
            self.assertEqual(doc.get("field"), field, doc)
        return doc


class SharedDaemonTestCase(IntegrationTestCase):
    """One healthy peer and one relay daemon for the whole class (set up once: cheaper
    when many tests only send requests). `daemon_env` adds to the relay environment."""

    daemon_env = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.peer = PeerProcess()
        cls.addClassCleanup(cls.peer.stop)
        env = {"DELIVERY": "relay", "SMTP_SERVER": "127.0.0.1", "SMTP_PORT": cls.peer.port, "SMTP_TLS": "none"}
        env.update(cls.daemon_env)
        cls.daemon = Daemon(env)
        cls.addClassCleanup(cls.daemon.cleanup)
        cls.daemon.start()

    def extra_logs(self):
        return [("websmtpd (shared)", self.daemon.log_text()), ("smtp peer (shared)", self.peer.stderr_text())]
