"""The relay's STARTTLS and AUTH against a real peer (aiosmtpd): TLS used when offered,
required STARTTLS never falls back, certificate verification, AUTH PLAIN preferred, a
refused login never reported as delivered but deferred at once with the relay's own reply."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import IntegrationTestCase, mail, self_signed_cert, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "support", "tls_auth_peer.py")


class TlsAuthPeer:
    def __init__(self, test, *args):
        self.dir = tempfile.mkdtemp(prefix="websmtp-tlsauth-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.log = os.path.join(self.dir, "peer.jsonl")
        self.proc = subprocess.Popen(["/usr/bin/python3", PEER, "--log", self.log, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        test.addCleanup(self.stop)
        line = self.proc.stdout.readline()  # the peer prints READY once listening (or dies)
        if not line.startswith("READY "):
            raise AssertionError("tls_auth_peer did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def records(self):
        try:
            with open(self.log) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def messages(self):
        return [r for r in self.records() if "event" not in r]

    def auths(self):
        return [r for r in self.records() if r.get("event") == "auth"]

    def quits(self):
        return [r for r in self.records() if r.get("event") == "quit"]


class TlsAuthTest(IntegrationTestCase):

    def relay(self, peer, **env):
        e = {"DELIVERY": "relay", "SMTP_SERVER": "127.0.0.1", "SMTP_PORT": peer.port,
             "RETRY_MIN": "60s", "RETRY_MAX": "60s", "SMTP_COMMAND_TIMEOUT": "5s"}
        e.update(env)
        return self.start_daemon(**e)

    def first_attempt(self, daemon, ref):
        return daemon.wait_status(ref, lambda d: d["recipients"][0]["attempts"] >= 1, what="a first attempt")

    def long_poll_first_attempt(self, daemon, ref, bound=30.0):
        """Long-polls the status (?wait=) until the first attempt is recorded, for at most `bound` s."""
        deadline = time.monotonic() + bound
        since = urllib.parse.quote("not started")
        while True:
            code, doc = daemon.status(ref)
            self.assertEqual(code, 200, doc)
            if doc["recipients"][0]["attempts"] >= 1:
                return doc
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("no attempt recorded within %.0fs: %r" % (bound, doc))
            daemon.request("GET", "/mail/status/%s?wait=%d&since=%s" % (ref, max(1, min(left, 25)), since))

    def test_opportunistic_tls_is_used_when_offered(self):
        cert, key = self_signed_cert(self)
        peer = TlsAuthPeer(self, "--cert", cert, "--key", key)
        daemon = self.relay(peer, SMTP_TLS="opportunistic", SMTP_TLS_VERIFY="false")
        doc = daemon.wait_completed(daemon.submit(mail(to=["a@example.net"])))
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        [m] = peer.messages()
        self.assertTrue(m["tls"])

    def test_required_starttls_delivers_over_tls(self):
        cert, key = self_signed_cert(self)
        peer = TlsAuthPeer(self, "--cert", cert, "--key", key)
        daemon = self.relay(peer, SMTP_TLS="starttls", SMTP_TLS_VERIFY="false")
        doc = daemon.wait_completed(daemon.submit(mail(to=["a@example.net"])))
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        self.assertTrue(peer.messages()[0]["tls"])

    def test_an_unverifiable_certificate_defers_and_sends_nothing(self):
        cert, key = self_signed_cert(self)
        peer = TlsAuthPeer(self, "--cert", cert, "--key", key)
        daemon = self.relay(peer, SMTP_TLS="starttls", SMTP_TLS_VERIFY="true")
        doc = self.first_attempt(daemon, daemon.submit(mail(to=["a@example.net"])))
        self.assertEqual(doc["recipients"][0]["state"], "deferred")
        self.assertEqual(peer.messages(), [])

    def test_auth_plain_is_preferred_and_logs_in(self):
        peer = TlsAuthPeer(self, "--user", "relayuser", "--password", "s3cret pass")
        daemon = self.relay(peer, SMTP_TLS="none", SMTP_USER="relayuser", SMTP_PWD="s3cret pass")
        doc = daemon.wait_completed(daemon.submit(mail(to=["a@example.net"])))
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        self.assertEqual([(a["method"], a["ok"]) for a in peer.auths()], [("PLAIN", True)])
        self.assertEqual(peer.messages()[0]["auth"], "relayuser")
        # Never a password in the daemon's log (the harness's own "==== start" lines list the env).
        daemon_lines = [l for l in daemon.log_text().splitlines() if not l.startswith("==== start")]
        self.assertFalse(any("s3cret" in l for l in daemon_lines))

    def test_auth_login_when_plain_is_not_offered(self):
        peer = TlsAuthPeer(self, "--user", "relayuser", "--password", "pw", "--auth-methods", "LOGIN")
        daemon = self.relay(peer, SMTP_TLS="none", SMTP_USER="relayuser", SMTP_PWD="pw")
        doc = daemon.wait_completed(daemon.submit(mail(to=["a@example.net"])))
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        self.assertEqual([(a["method"], a["ok"]) for a in peer.auths()], [("LOGIN", True)])

    def test_a_refused_login_defers_and_sends_nothing(self):
        for methods in ("PLAIN LOGIN", "LOGIN"):
            with self.subTest(methods=methods):
                peer = TlsAuthPeer(self, "--user", "relayuser", "--password", "right", "--auth-methods", methods)
                daemon = self.relay(peer, SMTP_TLS="none", SMTP_USER="relayuser", SMTP_PWD="wrong")
                doc = self.first_attempt(daemon, daemon.submit(mail(to=["a@example.net"])))
                r = doc["recipients"][0]
                self.assertEqual(r["state"], "deferred")
                self.assertIn("AUTH", r["smtp_reply"])
                self.assertEqual(peer.messages(), [])
                self.assertTrue(peer.auths() and not any(a["ok"] for a in peer.auths()))

    def test_a_refused_login_after_starttls_defers_at_once_with_the_relays_reply(self):
        # With the default SMTP_COMMAND_TIMEOUT (300 s), the refusal must end the attempt at
        # once: the recipients are deferred (a wrong password is fixable, like Postfix's
        # smtp_sasl_auth_soft_bounce) with the relay's own code and text, the session is
        # closed with QUIT, and once the password is fixed the mail goes out.
        cert, key = self_signed_cert(self)
        refusal_text = "5.7.8 Error: authentication failed: bad credentials for relayuser"
        password = "wr0ng Secret"
        for methods in ("PLAIN LOGIN", "LOGIN"):
            with self.subTest(methods=methods):
                peer = TlsAuthPeer(self, "--cert", cert, "--key", key, "--user", "relayuser", "--password", "right",
                                   "--auth-methods", methods, "--refusal", "535 " + refusal_text)
                daemon = self.relay(peer, SMTP_TLS="starttls", SMTP_TLS_VERIFY="false", SMTP_USER="relayuser",
                                    SMTP_PWD=password, SMTP_COMMAND_TIMEOUT="300s", RETRY_MIN="1s", RETRY_MAX="1s")
                ref = daemon.submit(mail(to=["a@example.net", "b@example.net"]))
                doc = self.long_poll_first_attempt(daemon, ref)
                self.assertEqual(doc["status"], "processing", doc)
                for r in doc["recipients"]:
                    self.assertEqual((r["state"], r.get("smtp_code")), ("deferred", 535), r)
                    self.assertIn(refusal_text, r["smtp_reply"])
                    self.assertNotIn("reason", r)
                self.assertEqual(peer.messages(), [])
                auth = peer.auths()[0]
                self.assertEqual((auth["method"], auth["ok"]), (methods.split()[0], False))
                wait_until(peer.quits, 10, what="the refused session to end with QUIT")
                # Never the password, nor its base64 forms, in the daemon's log.
                secrets = [password, base64.b64encode(password.encode()).decode(),
                           base64.b64encode(b"\0relayuser\0" + password.encode()).decode()]
                daemon_lines = [l for l in daemon.log_text().splitlines() if not l.startswith("==== start")]
                self.assertEqual([l for l in daemon_lines if any(s in l for s in secrets)], [])

                daemon.stop()
                daemon.start(SMTP_PWD="right")
                doc = daemon.wait_completed(ref, timeout=30)
                self.assertEqual([(r["state"], r["smtp_code"]) for r in doc["recipients"]],
                                 [("delivered", 250), ("delivered", 250)])
                self.assertEqual(sorted(peer.messages()[0]["rcpt_tos"]), ["a@example.net", "b@example.net"])


if __name__ == "__main__":
    unittest.main()
