"""websmtpd on a hostile network (issue 7): slow clients, connection floods, running out of file
descriptors, too many long-polls, strict HTTP/1.1 framing (Expect, whitespace before a colon,
HEAD), and the admin API's guard (Host, ADMIN_TOKEN, ADMIN_HOST) with websmtpctl's credentials.

Other clients are other loopback addresses: any 127.0.0.0/8 address is this host, so a socket
bound to 127.0.0.7 before connecting is "another client" for the per-client cap.
"""

import json
import os
import resource
import select
import shlex
import shutil
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import (WEBSMTPCTL, Daemon, IntegrationTestCase, clean_env, closed_port_socket, mail,
                     require_binary, wait_until)

TOKEN = "adm-0123456789abcdef-TOKEN"
CLI_TIMEOUT = 60


# -- raw sockets ------------------------------------------------------------------------------

def connect(port, source="127.0.0.1", timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_answer(s, timeout=10.0):
    """One answer (head plus Content-Length bytes), or what came before EOF/reset/timeout."""
    s.settimeout(timeout)
    data = b""
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = 0
            for line in data[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if not data.startswith(b"HTTP/1.1 1") and len(data) >= head_end + 4 + length:
                return data
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return data
        if not chunk:
            return data
        data += chunk


def served(s, extra=b""):
    """Sends GET /status (then `extra`); True when it is answered 200, False when the server
    closed the connection instead (a cap)."""
    try:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n" + extra)
    except OSError:
        return False
    return read_answer(s).startswith(b"HTTP/1.1 200 ")


def closed_by_server(s):
    """Non-blocking: True if the server has closed `s` (EOF or reset)."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, OSError):
        return True


def has_data(s):
    r, _, _ = select.select([s], [], [], 0)
    return bool(r)


def exchange(port, data, timeout=10.0):
    return harness.exchange(port, data, timeout, reset_ends=True)


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_own_descriptor_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise unittest.SkipTest("this test needs %d descriptors, the hard limit is %d" % (needed, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class LimitedDaemon(Daemon):
    """A websmtpd started under `prlimit --nofile=N:N`: soft and hard, so it cannot raise them.
    prlimit execs websmtpd, so the PID in the ready file is still the one started."""

    def __init__(self, nofile, env):
        super().__init__(env)
        prlimit = shutil.which("prlimit")
        if not prlimit:
            raise unittest.SkipTest("prlimit (util-linux) is not installed")
        self.wrapper = os.path.join(self.dir, "websmtpd-limited")
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s --nofile=%d:%d %s \"$@\"\n"
                    % (prlimit, nofile, nofile, shlex.quote(harness.WEBSMTPD)))
        os.chmod(self.wrapper, 0o755)

    def start(self, **overrides):
        real = harness.WEBSMTPD
        harness.WEBSMTPD = self.wrapper
        try:
            return super().start(**overrides)
        finally:
            harness.WEBSMTPD = real


class AbuseTestCase(IntegrationTestCase):

    def hold(self, s):
        self.addCleanup(s.close)
        return s

    def assertAdminAnswers(self, daemon, headers=None):
        r = daemon.request("GET", "/admin/queue", admin=True, headers=headers)
        self.assertEqual(r.status, 200, r.body)
        return r

    def fresh_client_is_served(self, daemon, source):
        """Polls until a new connection from `source` is answered (at a cap an idle connection
        makes room once it has idled a second)."""
        def attempt():
            s = connect(daemon.port, source)
            try:
                return served(s)
            finally:
                s.close()
        wait_until(attempt, 20, interval=0.1, what="a fresh client from %s to be served" % source)


# -- slow clients -----------------------------------------------------------------------------

class SlowClientTest(AbuseTestCase):

    def setUp(self):
        self.daemon = self.start_daemon(DELIVERY="sandbox", HTTP_HEADER_TIMEOUT="3s", HTTP_BODY_TIMEOUT="3s")

    def trickle(self, s, first, stop):
        """Sends `first`, then a header line one byte at a time, until the server stops reading."""
        sent = [0]

        def run():
            try:
                s.sendall(first)
                i = 0
                while not stop.is_set():
                    s.sendall(bytes([b"abcdefgh"[i % 8]]))  # never the end of the line
                    sent[0] += 1
                    i += 1
                    stop.wait(0.05)
            except OSError:
                pass
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        self.addCleanup(stop.set)
        return sent

    def test_a_trickled_head_gets_408_while_others_are_served(self):
        slow = self.hold(connect(self.daemon.port))
        stop = threading.Event()
        sent = self.trickle(slow, b"GET /status HTTP/1.1\r\nX-Slow: ", stop)
        wait_until(lambda: sent[0] >= 5, 10, what="the slow client to trickle")
        # While it trickles, other clients are served.
        for i in range(5):
            self.assertTrue(served(self.hold(connect(self.daemon.port, "127.0.0.%d" % (i + 2)))))
        self.assertAdminAnswers(self.daemon)
        answer = read_answer(slow, timeout=20)
        stop.set()
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:200])
        self.assertIn(b"header_timeout", answer)
        self.assertTrue(served(self.hold(connect(self.daemon.port))))

    def test_a_trickled_body_gets_408(self):
        slow = self.hold(connect(self.daemon.port))
        stop = threading.Event()
        sent = self.trickle(slow, b"POST /mail/send HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{", stop)
        wait_until(lambda: sent[0] >= 5, 10, what="the slow client to trickle")
        self.assertTrue(served(self.hold(connect(self.daemon.port, "127.0.0.2"))))
        answer = read_answer(slow, timeout=20)
        stop.set()
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:200])
        self.assertIn(b"body_timeout", answer)

    def test_a_connection_that_never_speaks_is_closed(self):
        silent = self.hold(connect(self.daemon.port))
        silent.settimeout(20)
        try:
            data = silent.recv(100)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")  # closed without an answer: nothing was asked


# -- connection caps --------------------------------------------------------------------------

BUSY = b"GET /status HTTP/1.1\r\n"  # the head of a second request, begun and never finished


class ConnectionCapTest(AbuseTestCase):

    def test_per_client_cap_refuses_the_flood_and_serves_everyone_else(self):
        d = self.start_daemon(DELIVERY="sandbox", MAX_CONNECTIONS="50", MAX_CONNECTIONS_PER_CLIENT="5",
                              HTTP_HEADER_TIMEOUT="60s")
        flood = [self.hold(connect(d.port, "127.0.0.1")) for _ in range(15)]
        results = [served(s, BUSY) for s in flood]
        self.assertEqual(results.count(True), 5, results)
        self.assertTrue(served(self.hold(connect(d.port, "127.0.0.2"))))
        self.assertAdminAnswers(d)
        for s in flood:
            s.close()
        self.fresh_client_is_served(d, "127.0.0.1")

    def test_a_flood_of_idle_connections_cannot_lock_clients_out(self):
        d = self.start_daemon(DELIVERY="sandbox", MAX_CONNECTIONS="10", HTTP_HEADER_TIMEOUT="60s")
        flood = [self.hold(connect(d.port, "127.0.1.%d" % (i + 1))) for i in range(30)]  # connect, say nothing
        wait_until(lambda: sum(closed_by_server(s) for s in flood) >= 20, 20,
                   what="connections over MAX_CONNECTIONS to be closed")
        self.assertAdminAnswers(d)
        # Idle for a second, a flood connection gives way to a client with something to ask.
        self.fresh_client_is_served(d, "127.0.2.1")

    def test_a_flood_of_busy_connections_meets_the_cap_and_leaves_the_admin_port(self):
        d = self.start_daemon(DELIVERY="sandbox", MAX_CONNECTIONS="10", HTTP_HEADER_TIMEOUT="60s")
        flood = [self.hold(connect(d.port, "127.0.1.%d" % (i + 1))) for i in range(10)]
        self.assertEqual([served(s, BUSY) for s in flood], [True] * 10)
        late = self.hold(connect(d.port, "127.0.2.1"))
        self.assertFalse(served(late))
        self.assertAdminAnswers(d)
        for s in flood:
            s.close()
        self.fresh_client_is_served(d, "127.0.2.2")


class DescriptorExhaustionTest(AbuseTestCase):

    NOFILE = 256

    def start_limited(self, nofile, **env):
        d = LimitedDaemon(nofile, dict({"DELIVERY": "sandbox", "HTTP_HEADER_TIMEOUT": "60s"}, **env))
        self.addCleanup(lambda: self._logs.append(("websmtpd (nofile %d)" % nofile, d.cleanup())))
        return d.start()

    def test_a_flood_past_the_descriptor_limit_neither_spins_nor_silences_the_ports(self):
        flood_size = 3 * self.NOFILE
        raise_own_descriptor_limit(flood_size + 256)
        d = self.start_limited(self.NOFILE)
        self.assertRegex(d.log_text(), r"MAX_CONNECTIONS 10000 does not fit the descriptor limit %d" % self.NOFILE)

        # Open connections until the daemon refuses them: three times its descriptor limit.
        flood = [self.hold(connect(d.port, "127.0.3.%d" % (i % 250 + 1))) for i in range(flood_size)]
        wait_until(lambda: sum(closed_by_server(s) for s in flood) >= flood_size - self.NOFILE, 30,
                   what="the connections past the limit to be closed")

        # Held flood: the daemon must not burn a core on it (a spinning accept loop takes ~1 s of
        # CPU per second). A generous bound: this is about spinning, not speed.
        before = cpu_seconds(d.pid)
        time.sleep(3)
        used = cpu_seconds(d.pid) - before
        self.assertLess(used, 1.0, "websmtpd used %.2f s of CPU in 3 s while the flood was held" % used)

        # Both ports still answer while the flood is held.
        self.assertAdminAnswers(d)
        self.fresh_client_is_served(d, "127.0.4.1")
        self.assertTrue(d.running())
        self.assertNotIn("Too many open files", d.log_text())

    def test_a_limit_too_low_to_serve_refuses_to_start(self):
        d = LimitedDaemon(64, {"DELIVERY": "sandbox"})
        self.addCleanup(lambda: self._logs.append(("websmtpd (nofile 64)", d.cleanup())))
        with self.assertRaises(RuntimeError):
            d.start()
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn("RLIMIT_NOFILE", d.log_text())


# -- long-polls -------------------------------------------------------------------------------

class LongPollCapTest(AbuseTestCase):

    def test_long_polls_over_max_longpolls_answer_at_once(self):
        relay_down = closed_port_socket()
        self.addCleanup(relay_down.close)
        d = self.start_daemon(DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT=relay_down.getsockname()[1],
                              SMTP_TLS="none", RETRY_MIN="10m", RETRY_MAX="20m", MAX_LONGPOLLS="2")
        ref = d.submit(mail())
        d.wait_status(ref, lambda doc: doc["status"] == "processing", what="the job to be deferred")

        def poll(wait):
            s = self.hold(connect(d.port))
            s.sendall(b"GET /mail/status/%s?wait=%d&since=processing HTTP/1.1\r\nHost: x\r\n\r\n"
                      % (ref.encode(), wait))
            return s

        def one_answers_now(wait):
            polls = [poll(wait) for _ in range(3)]
            # Two of them wait; whichever came third is over the cap and answers at once.
            first = wait_until(lambda: [s for s in polls if has_data(s)], 20, what="a long-poll over the cap")
            self.assertEqual(len(first), 1)
            answer = read_answer(first[0])
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:200])
            self.assertEqual(json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"], "processing")
            self.assertEqual([has_data(s) for s in polls if s is not first[0]], [False, False])
            return [s for s in polls if s is not first[0]]

        waiting = one_answers_now(5)
        # The two that waited answer at their deadline, and give their places back.
        for s in waiting:
            self.assertTrue(read_answer(s, timeout=30).startswith(b"HTTP/1.1 200 "))
        for s in one_answers_now(30):
            s.close()


# -- HTTP/1.1 strictness ----------------------------------------------------------------------

class StrictHttpTest(AbuseTestCase):

    def setUp(self):
        self.daemon = self.start_daemon(DELIVERY="sandbox", MAX_BODY_BYTES="64KiB")

    def test_whitespace_before_a_colon_is_400(self):
        for field in (b"Host : x", b"Content-Type\t: application/json", b"X-A : 1"):
            raw = exchange(self.daemon.port, b"GET /status HTTP/1.1\r\n" + field + b"\r\n\r\n")
            self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:200])
            self.assertIn(b'"code":"bad_request"', raw)

    def test_expect_100_continue_is_answered_before_the_body(self):
        body = json.dumps(mail()).encode()
        s = self.hold(connect(self.daemon.port))
        s.sendall(b"POST /mail/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.settimeout(10)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = s.recv(1)
            self.assertTrue(chunk, "closed before 100 Continue: %r" % interim)
            interim += chunk
        self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        answer = read_answer(s)
        self.assertTrue(answer.startswith(b"HTTP/1.1 202 "), answer[:300])
        self.assertIn(b'"ref"', answer)
        # The same connection goes on.
        self.assertTrue(served(s))

    def test_no_100_continue_when_the_body_came_along_or_is_refused(self):
        body = json.dumps(mail()).encode()
        raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertTrue(raw.startswith(b"HTTP/1.1 202 "), raw[:200])
        raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       b"Content-Length: 1000000\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 413 "), raw[:200])

    def test_another_expectation_is_417(self):
        raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n"
                       b"Content-Length: 2\r\n\r\n{}")
        self.assertTrue(raw.startswith(b"HTTP/1.1 417 Expectation Failed\r\n"), raw[:200])
        self.assertIn(b'"code":"expectation_failed"', raw)

    def test_head_answers_carry_no_body(self):
        for path, status in ((b"/status", b"200"), (b"/healthz", b"200"), (b"/nope", b"404"),
                             (b"/mail/status/not-a-ref", b"400")):
            raw = exchange(self.daemon.port, b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, sep, rest = raw.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 " + status + b" "), raw[:200])
            self.assertEqual(sep, b"\r\n\r\n")
            self.assertIn(b"Content-Length: ", head)
            self.assertEqual(rest, b"", path)
        # A HEAD refused by the gate has no body either.
        raw = exchange(self.daemon.port, b"HEAD /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        head, _, rest = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), raw[:200])
        self.assertEqual(rest, b"")


# -- the admin API's guard --------------------------------------------------------------------

class AdminGuardTest(AbuseTestCase):

    def admin(self, d, path="/admin/queue", host=None, token=None, method="GET"):
        headers = {}
        if host is not None:
            headers["Host"] = host
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        return d.request(method, path, admin=True, headers=headers)

    def ctl(self, d, *args, env=None):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        argv = [WEBSMTPCTL, "--server", "http://127.0.0.1:%d" % d.port,
                "--admin", "http://127.0.0.1:%d" % d.admin_port] + list(args)
        e = {k: v for k, v in clean_env(env).items() if k not in ("WEBSMTP_ADMIN_TOKEN", "ADMIN_TOKEN")}
        e.update(env or {})
        p = subprocess.run(argv, capture_output=True, env=e, timeout=CLI_TIMEOUT)
        self._logs.append(("websmtpctl %s" % " ".join(args), "rc=%d\n%s%s" % (
            p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))))
        return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")

    def test_host_must_name_the_admin_listener(self):
        d = self.start_daemon(DELIVERY="sandbox")
        for host in ("localhost", "localhost:%d" % d.admin_port, "127.0.0.1:%d" % d.admin_port, "[::1]"):
            self.assertEqual(self.admin(d, host=host).status, 200, host)
        for host in ("rebound.example", "rebound.example:%d" % d.admin_port, "127.0.0.1:%d" % (d.admin_port + 1),
                     "10.1.2.3"):
            r = self.admin(d, host=host)
            self.assertJsonError(r, 403, "bad_host", "Host")
        # Before the route is looked up: an unknown path tells a wrong Host nothing more.
        self.assertJsonError(self.admin(d, "/admin/nope", host="rebound.example"), 403, "bad_host")
        self.assertJsonError(self.admin(d, "/admin/nope"), 404, "not_found")
        # The public port does not care.
        r = d.request("GET", "/status", headers={"Host": "rebound.example"})
        self.assertEqual(r.status, 200)

    def test_admin_token_is_required_on_every_admin_route(self):
        d = self.start_daemon(DELIVERY="sandbox", ADMIN_TOKEN=TOKEN)
        for r in (self.admin(d), self.admin(d, token=TOKEN[:-1]), self.admin(d, token=TOKEN + "x"),
                  self.admin(d, "/admin/nope"), self.admin(d, "/admin/queue", method="POST")):
            self.assertJsonError(r, 401, "unauthorized")
            self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
        self.assertEqual(self.admin(d, token=TOKEN).status, 200)
        self.assertJsonError(self.admin(d, host="rebound.example", token=TOKEN), 403, "bad_host")
        # The public API knows nothing of the admin token.
        self.assertEqual(d.request("GET", "/status").status, 200)

    def test_websmtpctl_sends_the_admin_token_to_the_admin_api_only(self):
        d = self.start_daemon(DELIVERY="sandbox", ADMIN_TOKEN=TOKEN)
        rc, out, err = self.ctl(d, "queue", "--admin-token", TOKEN)
        self.assertEqual(rc, 0, err)
        self.assertIn("queued", out)
        rc, out, err = self.ctl(d, "queue", "--json", env={"WEBSMTP_ADMIN_TOKEN": TOKEN})
        self.assertEqual(rc, 0, err)
        self.assertIn("queued", json.loads(out))
        rc, out, err = self.ctl(d, "queue")
        self.assertEqual(rc, 1, err)
        self.assertIn("ADMIN_TOKEN", err)
        self.assertIn("unauthorized", err)
        # An API key is for the public API: it never reaches the admin port.
        rc, out, err = self.ctl(d, "queue", "--api-key", TOKEN)
        self.assertEqual(rc, 1, err)
        # And the admin token never reaches the public one (it is not needed there).
        rc, out, err = self.ctl(d, "--admin-token", TOKEN, "send", "--from", "a@example.org", "--to",
                                "b@example.net", "--subject", "s", "--body", "b")
        self.assertEqual(rc, 0, err)

    def test_a_non_loopback_admin_host_needs_a_token(self):
        d = self.make_daemon(DELIVERY="sandbox", ADMIN_HOST="0.0.0.0")
        with self.assertRaises(RuntimeError):
            d.start()
        self.assertEqual(d.proc.returncode, 2)
        log = d.log_text()
        self.assertIn("ADMIN_HOST", log)
        self.assertIn("ADMIN_TOKEN", log)
        # With a token it starts, and the wildcard listener takes an IP literal as Host.
        d = self.start_daemon(DELIVERY="sandbox", ADMIN_HOST="0.0.0.0", ADMIN_TOKEN=TOKEN)
        self.assertEqual(self.admin(d, token=TOKEN).status, 200)
        self.assertEqual(self.admin(d, host="127.0.0.1:%d" % d.admin_port, token=TOKEN).status, 200)
        self.assertJsonError(self.admin(d), 401, "unauthorized")
        self.assertJsonError(self.admin(d, host="rebound.example", token=TOKEN), 403, "bad_host")

    def test_a_short_admin_token_is_refused_at_start(self):
        d = self.make_daemon(DELIVERY="sandbox", ADMIN_TOKEN="short")
        with self.assertRaises(RuntimeError):
            d.start()
        self.assertEqual(d.proc.returncode, 2)
        self.assertIn("ADMIN_TOKEN", d.log_text())


if __name__ == "__main__":
    unittest.main()
