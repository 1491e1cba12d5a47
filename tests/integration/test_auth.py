"""Authentication, keys and limits (api.md): AUTH_MODE=keys, per-key policy, rate limits,
status privacy, CORS with publishable keys, RATE_LIMIT_IP with TRUSTED_PROXIES. Every refused
request is checked to reach nothing at the SMTP peer."""

import json
import unittest

from harness import IntegrationTestCase, mail, messages_by_test_id, new_test_id, wait_until

SITE = "http://127.0.0.1:5173"


class KeysTest(IntegrationTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(self.peer, AUTH_MODE="keys", THREADS="2"))

    # -- helpers ---------------------------------------------------------------------

    def create_key(self, **fields):
        fields.setdefault("name", "test key")
        r = self.daemon.request("POST", "/admin/keys", body=json.dumps(fields).encode(),
                                headers={"Content-Type": "application/json"}, admin=True)
        self.assertEqual(r.status, 201, r.body)
        doc = r.json()
        self.assertTrue(doc["key"].startswith("pk_" if fields.get("type") == "publishable" else "sk_"))
        return doc

    def send(self, key, payload, headers=None, path="/mail/send"):
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + key
        h.update(headers or {})
        return self.daemon.request("POST", path, body=json.dumps(payload).encode(), headers=h)

    def status(self, ref, key=None, token=None):
        path = "/mail/status/" + ref + ("?token=" + token if token else "")
        return self.daemon.request("GET", path, headers={"Authorization": "Bearer " + key} if key else {})

    def assert_nothing_delivered(self, test_id):
        self.daemon.wait_idle()
        self.assertNotIn(test_id, messages_by_test_id(self.peer))

    # -- tests -------------------------------------------------------------------------

    def test_credentials_are_required_and_bad_ones_refused(self):
        tid = new_test_id()
        key = self.create_key()["key"]
        cases = [
            ({}, "no credential"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "another scheme"),
            ({"Authorization": "Bearer"}, "empty bearer"),
            ({"Authorization": "Bearer sk_" + "A" * 43}, "unknown key"),
            ({"Authorization": "Bearer " + key[:-1]}, "truncated key"),
            ({"Authorization": "Bearer " + key + "x"}, "extended key"),
            ({"Authorization": "Bearer not-a-key-nor-a-token"}, "garbage (no JWT accepted)"),
        ]
        for headers, what in cases:
            with self.subTest(what):
                h = {"Content-Type": "application/json"}
                h.update(headers)
                r = self.daemon.request("POST", "/mail/send", body=json.dumps(mail(test_id=tid)).encode(), headers=h)
                self.assertJsonError(r, 401, "unauthorized")
                self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
        # Two Authorization headers: refused, never the first or last picked silently.
        conn = self.daemon.connection()
        body = json.dumps(mail(test_id=tid)).encode()
        conn.putrequest("POST", "/mail/send")
        for h, v in [("Content-Type", "application/json"), ("Authorization", "Bearer " + key),
                     ("Authorization", "Bearer sk_other"), ("Content-Length", str(len(body)))]:
            conn.putheader(h, v)
        conn.endheaders(body)
        r = conn.getresponse()
        self.assertEqual(r.status, 401)
        r.read()
        conn.close()
        # Liveness needs nothing; a status needs a credential or a token.
        self.assertEqual(self.daemon.request("GET", "/status").status, 200)
        self.assertJsonError(self.status("01a21e01-5724-7b35-bd3c-4360bba9caf5"), 401, "unauthorized")
        self.assert_nothing_delivered(tid)

    def test_a_key_sends_and_its_status_is_private(self):
        k1 = self.create_key(name="one")
        k2 = self.create_key(name="two")
        listed = self.daemon.request("GET", "/admin/keys", admin=True).json()["keys"]
        self.assertEqual({k["id"] for k in listed}, {k1["id"], k2["id"]})
        self.assertNotIn(k1["key"], json.dumps(listed))  # never the key again
        self.assertEqual({k["prefix"] for k in listed}, {k1["key"][:12], k2["key"][:12]})

        tid = new_test_id()
        r = self.send(k1["key"], mail(test_id=tid))
        self.assertEqual(r.status, 202, r.body)
        doc = r.json()
        ref, token = doc["ref"], doc["status_token"]
        self.assertTrue(token)
        self.assertEqual(self.status(ref, key=k1["key"]).status, 200)
        # Another key, a wrong token, no credential: exactly like a ref never issued.
        self.assertJsonError(self.status(ref, key=k2["key"]), 404, "unknown_ref")
        self.assertJsonError(self.status(ref, token=token[:-1] + ("A" if token[-1] != "A" else "B")), 404,
                             "unknown_ref")
        self.assertJsonError(self.status(ref, key=k2["key"], token="x"), 404, "unknown_ref")
        # The status token opens this one status to whoever holds it, with or without a key.
        self.assertEqual(self.status(ref, token=token).status, 200)
        self.assertEqual(self.status(ref, key=k2["key"], token=token).status, 200)
        # Long-polls honour the token too.
        self.assertEqual(self.daemon.request("GET", "/mail/status/%s?wait=20&token=%s" % (ref, token)).status, 200)
        wait_until(lambda: self.status(ref, token=token).json()["status"] == "completed", 20, what="completion")
        self.assertIn(tid, messages_by_test_id(self.peer))

    def test_idempotency_keys_are_scoped_per_key(self):
        k1, k2 = self.create_key()["key"], self.create_key()["key"]
        payload = mail()
        a = self.send(k1, payload, {"Idempotency-Key": "order-1"})
        b = self.send(k2, payload, {"Idempotency-Key": "order-1"})
        a2 = self.send(k1, payload, {"Idempotency-Key": "order-1"})
        self.assertEqual((a.status, b.status, a2.status), (202, 202, 200))
        self.assertNotEqual(a.json()["ref"], b.json()["ref"])
        self.assertEqual(a.json()["ref"], a2.json()["ref"])
        self.assertEqual(a.json()["status_token"], a2.json()["status_token"])

    def test_revocation_is_immediate(self):
        k = self.create_key()
        self.assertEqual(self.send(k["key"], mail()).status, 202)
        r = self.daemon.request("DELETE", "/admin/keys/" + k["id"], admin=True)
        self.assertEqual(r.status, 204)
        tid = new_test_id()
        self.assertJsonError(self.send(k["key"], mail(test_id=tid)), 401, "unauthorized")
        self.assertJsonError(self.daemon.request("DELETE", "/admin/keys/" + k["id"], admin=True), 404, "unknown_key")
        listed = self.daemon.request("GET", "/admin/keys", admin=True).json()["keys"]
        self.assertTrue(listed[0]["revoked"])
        # Revocation is stored: a restart does not bring the key back.
        self.daemon.stop()
        self.daemon.start()
        self.assertJsonError(self.send(k["key"], mail(test_id=tid)), 401, "unauthorized")
        self.assert_nothing_delivered(tid)

    def test_policy_limits_senders_recipients_and_size(self):
        k = self.create_key(senders=["*@shop.example", "alice@example.org"], recipients=["owner@shop.example"],
                            max_recipients=1, max_message_bytes=2000)["key"]
        tid = new_test_id()
        ok = mail(to=["owner@shop.example"], sender="Shop <noreply@shop.example>", test_id=tid)
        self.assertEqual(self.send(k, ok).status, 202)
        bad = new_test_id()
        cases = [
            (dict(mail(to=["owner@shop.example"], sender="ceo@bank.example", test_id=bad)), "from"),
            (dict(mail(to=["victim@example.net"], sender="alice@example.org", test_id=bad)), "to[0]"),
            (dict(mail(to=["owner@shop.example"], sender="alice@example.org", test_id=bad,
                       bcc=["spy@example.net"])), "to"),  # two recipients: over max_recipients first
            (dict(mail(to=["owner@shop.example"], sender="alice@example.org", test_id=bad, body="x" * 5000)),
             "body"),
        ]
        for payload, field in cases:
            with self.subTest(field):
                self.assertJsonError(self.send(k, payload), 403, "forbidden", field)
        # In a batch the field names the job.
        r = self.send(k, {"jobs": [ok, cases[0][0]]}, path="/mail/batch")
        self.assertJsonError(r, 403, "forbidden", "jobs[1].from")
        self.assert_nothing_delivered(bad)
        self.assertEqual(len(messages_by_test_id(self.peer).get(tid, [])), 1)

    def test_rate_limit_per_key_counts_jobs_and_spares_other_keys(self):
        noisy = self.create_key(rate_per_minute=5)["key"]
        quiet = self.create_key(rate_per_minute=5)["key"]
        r = self.send(noisy, {"jobs": [mail(), mail(), mail()]}, path="/mail/batch")
        self.assertEqual(r.status, 202)
        self.assertEqual(len(r.json()["status_tokens"]), 3)
        self.assertEqual(r.header("RateLimit-Limit"), "5")
        self.assertEqual(r.header("RateLimit-Remaining"), "2")
        self.assertEqual(self.send(noisy, mail()).status, 202)
        # A batch of 2 does not fit in the 1 left: all or nothing.
        tid = new_test_id()
        r = self.send(noisy, {"jobs": [mail(test_id=tid), mail(test_id=tid)]}, path="/mail/batch")
        self.assertJsonError(r, 429, "rate_limited")
        self.assertGreaterEqual(int(r.header("Retry-After")), 1)
        self.assertEqual(r.header("RateLimit-Remaining"), "1")
        self.assertEqual(self.send(noisy, mail()).status, 202)
        r = self.send(noisy, mail(test_id=tid))
        self.assertJsonError(r, 429, "rate_limited")
        retry = int(r.header("Retry-After"))
        self.assertTrue(1 <= retry <= 12, retry)  # one job every 12 s
        self.assertEqual(r.header("RateLimit-Remaining"), "0")
        # The other key is untouched.
        r = self.send(quiet, mail())
        self.assertEqual(r.status, 202)
        self.assertEqual(r.header("RateLimit-Remaining"), "4")
        # A status read reports the quota without spending it.
        ref = r.json()["ref"]
        s = self.status(ref, key=quiet)
        self.assertEqual(s.header("RateLimit-Remaining"), "4")
        self.assert_nothing_delivered(tid)


class PublishableKeyTest(IntegrationTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(self.peer, AUTH_MODE="keys"))
        r = self.daemon.request("POST", "/admin/keys", admin=True, headers={"Content-Type": "application/json"},
                                body=json.dumps({"name": "contact form", "type": "publishable", "origins": [SITE],
                                                 "recipients": ["owner@shop.example"], "rate_per_minute": 20}).encode())
        self.assertEqual(r.status, 201, r.body)
        self.key = r.json()["key"]

    def send(self, origin, payload, key=None):
        h = {"Content-Type": "application/json", "Authorization": "Bearer " + (key or self.key)}
        if origin:
            h["Origin"] = origin
        return self.daemon.request("POST", "/mail/send", body=json.dumps(payload).encode(), headers=h)

    def test_works_from_its_origin_only(self):
        ok = mail(to=["owner@shop.example"])
        r = self.send(SITE, ok)
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), SITE)
        self.assertIn("RateLimit-Remaining", r.header("Access-Control-Expose-Headers"))
        self.assertEqual(r.header("Access-Control-Allow-Credentials"), None)
        # The key's origin is allowed for CORS without being in CORS_ORIGINS.
        pre = self.daemon.request("OPTIONS", "/mail/send", headers={
            "Origin": SITE, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        self.assertEqual(pre.status, 204)
        self.assertEqual(pre.header("Access-Control-Allow-Origin"), SITE)
        tid = new_test_id()
        bad = mail(to=["owner@shop.example"], test_id=tid)
        # Another origin: the browser gets no CORS header, and the server refuses anyway.
        r = self.send("http://127.0.0.1:6666", bad)
        self.assertEqual(r.status, 403)
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        # No Origin at all (a script replaying the key from a server): refused.
        self.assertJsonError(self.send(None, bad), 403, "forbidden", "origin")
        # Another recipient than the one the form may mail.
        self.assertJsonError(self.send(SITE, mail(to=["victim@example.net"], test_id=tid)), 403, "forbidden", "to[0]")
        self.daemon.wait_idle()
        self.assertNotIn(tid, messages_by_test_id(self.peer))

    def test_a_revoked_keys_origin_is_no_longer_allowed(self):
        keys = self.daemon.request("GET", "/admin/keys", admin=True).json()["keys"]
        self.assertEqual(self.daemon.request("DELETE", "/admin/keys/" + keys[0]["id"], admin=True).status, 204)
        pre = self.daemon.request("OPTIONS", "/mail/send", headers={"Origin": SITE,
                                                                    "Access-Control-Request-Method": "POST"})
        self.assertEqual(pre.status, 403)
        self.assertIsNone(pre.header("Access-Control-Allow-Origin"))


class AddressLimitTest(IntegrationTestCase):

    def test_rate_limit_per_address_believes_forwarded_for_only_from_trusted_proxies(self):
        peer = self.start_peer()
        d = self.start_daemon(**self.relay_env(peer, RATE_LIMIT_IP="3/m", TRUSTED_PROXIES="127.0.0.1"))
        xff = {"X-Forwarded-For": "203.0.113.7"}
        codes = [d.post_send(mail(), headers=xff).status for _ in range(4)]
        self.assertEqual(codes, [202, 202, 202, 429])
        r = d.post_send(mail(), headers=xff)
        self.assertJsonError(r, 429, "rate_limited")
        self.assertGreaterEqual(int(r.header("Retry-After")), 1)
        # Another client behind the same proxy has its own count.
        self.assertEqual(d.post_send(mail(), headers={"X-Forwarded-For": "203.0.113.8"}).status, 202)
        # A forged left part does not move the count: the rightmost untrusted hop is the client.
        r = d.post_send(mail(), headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        self.assertEqual(r.status, 429)

    def test_forwarded_for_from_an_untrusted_peer_is_ignored(self):
        peer = self.start_peer()
        d = self.start_daemon(**self.relay_env(peer, RATE_LIMIT_IP="2/m"))
        codes = [d.post_send(mail(), headers={"X-Forwarded-For": "203.0.113.%d" % i}).status for i in range(3)]
        self.assertEqual(codes, [202, 202, 429])


class StartupTest(IntegrationTestCase):

    def test_warns_when_unauthenticated_beyond_loopback(self):
        peer = self.start_peer()
        d = self.start_daemon(**self.relay_env(peer))  # the harness listens on 0.0.0.0
        self.assertRegex(d.log_text(), r"AUTH_MODE=none and HOST=0\.0\.0\.0 is not loopback")
        d2 = self.start_daemon(**self.relay_env(peer, HOST="127.0.0.1"))
        self.assertNotIn("is not loopback", d2.log_text())

    def test_bad_auth_configuration_stops_the_daemon_naming_the_key(self):
        for env, key in [({"AUTH_MODE": "password"}, "AUTH_MODE"), ({"RATE_LIMIT_IP": "lots"}, "RATE_LIMIT_IP"),
                         ({"TRUSTED_PROXIES": "10.0.0.0/99"}, "TRUSTED_PROXIES"),
                         ({"AUTH_MODE": "jwt"}, "AUTH_MODE"),
                         ({"AUTH_MODE": "jwt", "JWT_HS256_SECRET": "short"}, "JWT_HS256_SECRET")]:
            with self.subTest(key):
                d = self.make_daemon(**env)
                with self.assertRaises(Exception):
                    d.start()
                self.assertIn(key, d.log_text())


if __name__ == "__main__":
    unittest.main()
