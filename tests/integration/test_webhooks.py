"""Webhooks (api.md: Webhooks): a job's callback_url gets a signed job.completed event,
retried with backoff until a 2xx, kept in a durable outbox across kill -9, never following a
redirect; non-public destinations are refused at submit unless WEBHOOK_ALLOW_PRIVATE=true.

The receiver is a real HTTP server (Python http.server) on 127.0.0.1 with an ephemeral port;
the jobs complete against a real SMTP peer through the real websmtpd binary.
"""

import hashlib
import hmac
import http.server
import json
import re
import socket
import ssl
import threading
import time
import unittest

from harness import IntegrationTestCase, closed_port_socket, mail, self_signed_cert, wait_until

SECRET = "whsec_test_0123456789abcdef"


class Receiver:
    """An HTTP receiver that records every request and answers from a script
    (one (status, headers) per request; the last one repeats). `on_request(n)`, when given, runs
    before the n-th request (1-based) is answered, on that request's thread: a slow or a
    hanging receiver."""

    def __init__(self, answers=None, port=0, tls=None, on_request=None):
        self.requests = []
        self.answers = list(answers or [(200, {})])
        self.on_request = on_request
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer.lock:
                    outer.requests.append({"time": time.monotonic(), "path": self.path,
                                           "headers": dict(self.headers.items()), "body": body})
                    n = len(outer.requests)
                    status, headers = outer.answers[min(n, len(outer.answers)) - 1]
                if outer.on_request:
                    outer.on_request(n)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.scheme = "http"
        if tls:  # (cert, key): https
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook", host="127.0.0.1"):
        return "%s://%s:%d%s" % (self.scheme, host, self.port, path)

    def received(self):
        with self.lock:
            return list(self.requests)

    def wait_for(self, n, timeout=30.0):
        return wait_until(lambda: self.received() if len(self.received()) >= n else None, timeout,
                          what="%d webhook request(s) at :%d" % (n, self.port))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

class DripReceiver:
    """Accepts connections, reads the request, then answers a status line and one header byte
    every 0.5 s, never ending the head: each byte is well within any read timeout."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections.append(time.monotonic())
            threading.Thread(target=self.drip, args=(conn,), daemon=True).start()

    def drip(self, conn):
        with conn:
            try:
                conn.settimeout(10)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(240):  # at most 2 minutes
                    if self.stopping.wait(0.5):
                        return
                    conn.sendall(b"a")
            except OSError:
                return  # the sender gave up on it

    def count(self):
        with self.lock:
            return len(self.connections)

    def stop(self):
        self.stopping.set()
        self.sock.close()


def header(req, name):
    for k, v in req["headers"].items():
        if k.lower() == name.lower():
            return v
    return None


class WebhookTestCase(IntegrationTestCase):
    def start_receiver(self, answers=None, port=0, tls=None):
        r = Receiver(answers, port, tls)
        self.addCleanup(r.stop)
        return r

    def hook_daemon(self, peer, **env):
        e = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_MIN": "1s"}
        e.update(env)
        return self.start_daemon(**self.relay_env(peer, **e))

    def assertSigned(self, req):
        sig = header(req, "Websmtp-Signature")
        self.assertIsNotNone(sig, req["headers"])
        m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", sig)
        self.assertIsNotNone(m, sig)
        expected = hmac.new(SECRET.encode(), m.group(1).encode() + b"." + req["body"], hashlib.sha256).hexdigest()
        self.assertTrue(hmac.compare_digest(expected, m.group(2)), "signature does not verify: %s" % sig)
        self.assertLess(abs(int(m.group(1)) - time.time()), 300)


class TestWebhookDelivery(WebhookTestCase):
    def test_signed_event_carries_the_public_status(self):
        peer = self.start_peer()
        receiver = self.start_receiver()
        daemon = self.hook_daemon(peer)
        ref = daemon.submit(mail(callback_url=receiver.url("/in?src=websmtp")))
        daemon.wait_completed(ref)
        req = receiver.wait_for(1)[0]
        self.assertEqual(req["path"], "/in?src=websmtp")
        self.assertSigned(req)
        self.assertTrue(header(req, "Content-Type").startswith("application/json"))
        self.assertTrue(header(req, "User-Agent").startswith("websmtp/"), header(req, "User-Agent"))
        self.assertEqual(header(req, "Host"), "127.0.0.1:%d" % receiver.port)
        event = json.loads(req["body"])
        self.assertEqual(event["type"], "job.completed")
        self.assertIsInstance(event["id"], str)
        self.assertTrue(event["id"])
        self.assertIsInstance(event["created"], int)
        code, status = daemon.status(ref)
        self.assertEqual(code, 200)
        self.assertEqual(event["data"], status)
        self.assertEqual(event["data"]["status"], "completed")
        self.assertEqual(event["data"]["recipients"][0]["state"], "delivered")

    def test_failed_posts_are_retried_with_the_same_event_and_growing_gaps(self):
        peer = self.start_peer()
        receiver = self.start_receiver([(500, {}), (500, {}), (200, {})])
        daemon = self.hook_daemon(peer, WEBHOOK_RETRY_MIN="1s", WEBHOOK_RETRY_MAX="1h")
        ref = daemon.submit(mail(callback_url=receiver.url()))
        daemon.wait_completed(ref)
        reqs = receiver.wait_for(3, timeout=30)
        self.assertEqual(len({r["body"] for r in reqs}), 1, "the same body on every attempt")
        ids = {json.loads(r["body"])["id"] for r in reqs}
        self.assertEqual(len(ids), 1)
        for r in reqs:
            self.assertSigned(r)
        first_gap = reqs[1]["time"] - reqs[0]["time"]
        second_gap = reqs[2]["time"] - reqs[1]["time"]
        self.assertGreater(second_gap, first_gap, (first_gap, second_gap))
        # The 200 ended it: the daemon logs the delivery, and nothing else arrives for this event.
        wait_until(lambda: "delivered to %s: HTTP 200" % receiver.url() in daemon.log_text(), 10,
                   what="the delivery to be logged")
        self.assertEqual(len(receiver.received()), 3)

    def test_a_cancelled_job_sends_its_event_too(self):
        peer = self.start_peer()
        receiver = self.start_receiver()
        daemon = self.hook_daemon(peer, RETRY_MIN="1h", RETRY_MAX="1h")  # "defer-" recipients wait
        ref = daemon.submit(mail(to=["ok-w@example.net", "defer-w@example.net"], callback_url=receiver.url()))
        daemon.wait_status(ref, lambda d: d["status"] == "processing", what="%s deferred" % ref)
        self.assertEqual(receiver.received(), [])  # not completed yet: no event
        r = daemon.request("POST", "/admin/jobs/%s/cancel" % ref, admin=True)
        self.assertEqual(r.status, 200, r.body)
        req = receiver.wait_for(1)[0]
        self.assertSigned(req)
        data = json.loads(req["body"])["data"]
        self.assertEqual(data["status"], "completed")
        self.assertEqual(data["failed"], ["defer-w@example.net"])
        self.assertEqual(data, daemon.status(ref)[1])

    def test_redirect_is_not_followed(self):
        peer = self.start_peer()
        elsewhere = self.start_receiver()
        receiver = self.start_receiver([(302, {"Location": elsewhere.url("/stolen")})])
        daemon = self.hook_daemon(peer)
        ref = daemon.submit(mail(callback_url=receiver.url()))
        daemon.wait_completed(ref)
        # A 302 is a failure: the same event comes back to the URL it was given, never to Location.
        reqs = receiver.wait_for(2, timeout=30)
        self.assertEqual(reqs[0]["body"], reqs[1]["body"])
        self.assertEqual(elsewhere.received(), [])
        self.assertIn("HTTP 302", daemon.log_text())

    def test_event_survives_kill9_while_the_receiver_is_down(self):
        peer = self.start_peer()
        down = closed_port_socket()  # the receiver's port, refusing connections
        port = down.getsockname()[1]
        self.addCleanup(down.close)
        daemon = self.hook_daemon(peer, WEBHOOK_RETRY_MIN="1s", WEBHOOK_RETRY_MAX="1s")
        ref = daemon.submit(mail(callback_url="http://127.0.0.1:%d/hook" % port))
        daemon.wait_completed(ref)
        pattern = re.compile(r"webhook (\S+) for job %s to \S+ failed" % re.escape(ref))
        first = wait_until(lambda: pattern.search(daemon.log_text()), 30, what="a failed webhook attempt")
        event_id = first.group(1)
        daemon.kill9()
        down.close()
        receiver = self.start_receiver(port=port)
        daemon.start()
        req = receiver.wait_for(1, timeout=30)[0]
        event = json.loads(req["body"])
        self.assertEqual(event["id"], event_id)
        self.assertEqual(event["data"]["id"], ref)
        self.assertSigned(req)


    def test_https_is_verified_with_smtp_ca_file(self):
        peer = self.start_peer()
        cert, key = self_signed_cert(self)
        receiver = self.start_receiver(tls=(cert, key))
        daemon = self.hook_daemon(peer, SMTP_CA_FILE=cert)
        ref = daemon.submit(mail(callback_url=receiver.url(host="localhost")))
        daemon.wait_completed(ref)
        req = receiver.wait_for(1)[0]
        self.assertSigned(req)
        self.assertEqual(header(req, "Host"), "localhost:%d" % receiver.port)
        self.assertEqual(json.loads(req["body"])["data"]["id"], ref)

    def test_https_with_an_untrusted_certificate_is_not_sent(self):
        peer = self.start_peer()
        cert, key = self_signed_cert(self)
        receiver = self.start_receiver(tls=(cert, key))
        daemon = self.hook_daemon(peer)  # no SMTP_CA_FILE: the self-signed certificate is not trusted
        ref = daemon.submit(mail(callback_url=receiver.url(host="localhost")))
        daemon.wait_completed(ref)
        pattern = re.compile(r"webhook \S+ for job %s to \S+ failed \(attempt 2\)" % re.escape(ref))
        wait_until(lambda: pattern.search(daemon.log_text()), 30, what="two failed webhook attempts")
        self.assertEqual(receiver.received(), [])


    def test_a_dripping_answer_is_cut_at_the_total_timeout(self):
        peer = self.start_peer()
        receiver = DripReceiver()
        self.addCleanup(receiver.stop)
        daemon = self.hook_daemon(peer)
        ref = daemon.submit(mail(callback_url="http://127.0.0.1:%d/hook" % receiver.port))
        daemon.wait_completed(ref)
        # Each byte comes well within any read timeout, but the exchange as a whole is cut
        # after 30 s and tried again (the drip itself would go on for two minutes).
        wait_until(lambda: receiver.count() >= 2, 90, what="the POST to be abandoned and retried")
        self.assertIn("no answer within the total timeout", daemon.log_text())
        # Stopping while a POST hangs does not wait for it.
        started = time.monotonic()
        daemon.stop()
        self.assertLess(time.monotonic() - started, 20)


class TestWebhookSubmitChecks(WebhookTestCase):
    def test_private_destinations_are_refused_by_default(self):
        peer = self.start_peer()
        daemon = self.start_daemon(**self.relay_env(peer, WEBHOOK_SECRET=SECRET))
        for url in ("http://127.0.0.1:9/", "http://10.0.0.1/", "http://[::1]/", "http://localhost/",
                    "http://169.254.169.254/latest/meta-data/", "https://[::ffff:127.0.0.1]/",
                    "http://100.64.0.1/", "http://[fd00::1]/"):
            with self.subTest(url=url):
                r = daemon.post_send(mail(callback_url=url))
                self.assertJsonError(r, 400, "callback_url_not_public", "callback_url")
        r = daemon.request("POST", "/mail/batch", body=json.dumps(
            {"jobs": [mail(), mail(callback_url="http://192.168.1.1/")]}).encode(),
            headers={"Content-Type": "application/json"})
        self.assertJsonError(r, 400, "callback_url_not_public", "jobs[1].callback_url")
        r = daemon.request("POST", "/mail/batch", body=json.dumps(  # a name: resolved off the HTTP threads
            {"jobs": [mail(), mail(), mail(callback_url="http://localhost:9/")]}).encode(),
            headers={"Content-Type": "application/json"})
        self.assertJsonError(r, 400, "callback_url_not_public", "jobs[2].callback_url")
        self.assertEqual(daemon.queue()["queued"] + daemon.queue()["completed"], 0)

    def test_malformed_callback_urls_are_refused(self):
        peer = self.start_peer()
        daemon = self.start_daemon(**self.relay_env(peer, WEBHOOK_SECRET=SECRET))
        r = daemon.post_send(mail(callback_url=42))
        self.assertJsonError(r, 400, "invalid_type", "callback_url")
        for url in ("ftp://example.com/", "https://user:pw@example.com/", "example.com/hook", "http://",
                    "https://example.com/" + "a" * 2048, "http://exa mple.com/"):
            with self.subTest(url=url[:60]):
                r = daemon.post_send(mail(callback_url=url))
                self.assertJsonError(r, 400, "invalid_callback_url", "callback_url")

    def test_without_a_secret_callbacks_are_refused(self):
        peer = self.start_peer()
        daemon = self.start_daemon(**self.relay_env(peer, WEBHOOK_ALLOW_PRIVATE="true"))
        r = daemon.post_send(mail(callback_url="http://127.0.0.1:9/"))
        doc = self.assertJsonError(r, 400, "webhooks_disabled", "callback_url")
        self.assertIn("WEBHOOK_SECRET", doc["error"])
        # A job without one is as before.
        daemon.wait_completed(daemon.submit(mail()))


if __name__ == "__main__":
    unittest.main()
