"""Delivery outcomes against real SMTP peers: per-recipient states, retries, sandbox mode,
a relay that is down, and required STARTTLS."""

import os
import unittest

from harness import IntegrationTestCase, closed_port_socket, mail, new_test_id, parse_message, test_id_of


def by_address(doc):
    return {r["address"]: r for r in doc["recipients"]}


class RelayDeliveryTest(IntegrationTestCase):

    def setUp(self):
        self.peer = self.start_peer()

    def test_mixed_job_reports_delivered_failed_and_deferred_recipients(self):
        # A long retry delay keeps the deferred recipient still while we look at it.
        daemon = self.start_daemon(**self.relay_env(self.peer, RETRY_MIN="60s", RETRY_MAX="60s"))
        ref = daemon.submit(mail(to=["ok@example.net", "reject1@example.net", "defer1@example.net"]))
        doc = daemon.wait_status(
            ref, lambda d: all(r["attempts"] >= 1 for r in d["recipients"]), what="a first attempt for everyone")

        self.assertEqual(doc["status"], "processing")
        self.assertEqual(doc["failed"], ["reject1@example.net"])
        self.assertEqual(doc["time_completed"], 0)
        r = by_address(doc)

        ok = r["ok@example.net"]
        self.assertEqual((ok["state"], ok["attempts"], ok["smtp_code"]), ("delivered", 1, 250))
        self.assertEqual((ok["host"], ok["tls"]), ("127.0.0.1", False))  # the relay that answered

        rejected = r["reject1@example.net"]
        self.assertEqual((rejected["state"], rejected["attempts"], rejected["smtp_code"]), ("failed", 1, 550))
        self.assertEqual(rejected["reason"], "rejected")
        self.assertIn("user unknown", rejected["smtp_reply"])

        deferred = r["defer1@example.net"]
        self.assertEqual((deferred["state"], deferred["attempts"], deferred["smtp_code"]), ("deferred", 1, 451))
        self.assertIn("try again later", deferred["smtp_reply"])
        self.assertIsInstance(deferred["next_attempt"], int)
        self.assertGreater(deferred["next_attempt"], deferred["time"])

        [m] = self.peer.wait_for_messages(1)
        self.assertEqual(m["rcpt_tos"], ["ok@example.net"])
        queue = daemon.queue()
        self.assertEqual(queue["deferred"], 1)
        self.assertEqual(queue["delivered_total"], 1)
        self.assertEqual(queue["failed_total"], 1)

    def test_temporary_failure_is_retried_and_delivered_once_per_recipient(self):
        daemon = self.start_daemon(**self.relay_env(self.peer, RETRY_MIN="1s", RETRY_MAX="2s"))
        test_id = new_test_id()
        ref = daemon.submit(mail(to=["ok@example.net", "deferonce1@example.net"], test_id=test_id))
        doc = daemon.wait_completed(ref, timeout=30)
        self.assertEqual(doc["failed"], [])
        r = by_address(doc)
        self.assertEqual((r["ok@example.net"]["state"], r["ok@example.net"]["attempts"]), ("delivered", 1))
        self.assertEqual((r["deferonce1@example.net"]["state"], r["deferonce1@example.net"]["attempts"]),
                         ("delivered", 2))
        self.assertEqual(r["deferonce1@example.net"]["smtp_code"], 250)
        self.assertNotIn("possible_duplicate", r["ok@example.net"])

        msgs = [m for m in self.peer.messages() if test_id_of(m) == test_id]
        got = sorted(a for m in msgs for a in m["rcpt_tos"])
        self.assertEqual(got, ["deferonce1@example.net", "ok@example.net"], "one copy per recipient")
        events = [e for e in self.peer.rcpt_events() if e["address"] == "deferonce1@example.net"]
        self.assertEqual([e["code"] for e in events], [451, 250])

    def test_relay_down_defers_then_delivers_once_a_peer_listens(self):
        placeholder = closed_port_socket()
        self.addCleanup(placeholder.close)
        port = placeholder.getsockname()[1]
        daemon = self.start_daemon(DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT=port, SMTP_TLS="none",
                                   RETRY_MIN="1s", RETRY_MAX="1s")
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = daemon.wait_status(ref, lambda d: d["recipients"][0]["attempts"] >= 1, what="the first attempt")
        rcpt = doc["recipients"][0]
        self.assertEqual(doc["status"], "processing")
        self.assertEqual(rcpt["state"], "deferred")
        self.assertIn(rcpt.get("smtp_code", 0), (0,))
        self.assertRegex(rcpt["smtp_reply"].lower(), "connect|refused")
        self.assertGreaterEqual(rcpt["next_attempt"], rcpt["time"])

        # The relay comes up on that very port.
        placeholder.close()
        peer = self.start_peer(port=port)
        doc = daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "delivered")
        self.assertGreaterEqual(rcpt["attempts"], 2)
        self.assertEqual(len(peer.wait_for_messages(1)), 1)

    def test_required_starttls_never_falls_back_to_plaintext(self):
        # aiosmtpd without a TLS context does not offer STARTTLS.
        daemon = self.start_daemon(**self.relay_env(self.peer, SMTP_TLS="starttls", SMTP_TLS_VERIFY="false",
                                                    RETRY_MIN="60s", RETRY_MAX="60s"))
        ref = daemon.submit(mail(to=["bob@example.net"], body="secret text"))
        doc = daemon.wait_status(ref, lambda d: d["recipients"][0]["attempts"] >= 1, what="the first attempt")
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "deferred")
        self.assertIn("starttls", rcpt["smtp_reply"].lower())
        self.assertEqual(self.peer.messages(), [])
        self.assertEqual(self.peer.rcpt_events(), [], "an envelope went out in plaintext")


class FaultyRelayTest(IntegrationTestCase):
    """A relay that misbehaves: every recipient is deferred, never lost nor failed."""

    def first_attempt(self, fault, **env):
        peer = self.start_peer(fault=fault)
        base = {"RETRY_MIN": "60s", "RETRY_MAX": "60s", "SMTP_COMMAND_TIMEOUT": "1s", "SMTP_DATA_TIMEOUT": "1s"}
        base.update(env)
        daemon = self.start_daemon(**self.relay_env(peer, **base))
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = daemon.wait_status(ref, lambda d: d["recipients"][0]["attempts"] >= 1, what="the first attempt")
        return peer, daemon, ref, doc

    def test_fault_modes_defer_the_recipient(self):
        for fault, code in (("hang-greeting", 0), ("421", 421), ("garbage", 0), ("drop-data", 0),
                            ("tempfail-all", 451)):
            with self.subTest(fault=fault):
                peer, _, _, doc = self.first_attempt(fault)
                rcpt = doc["recipients"][0]
                self.assertEqual(doc["status"], "processing")
                self.assertEqual(rcpt["state"], "deferred", rcpt)
                self.assertEqual(rcpt.get("smtp_code", 0), code, rcpt)
                self.assertTrue(rcpt.get("smtp_reply"), rcpt)
                self.assertEqual(peer.messages(), [])

    def test_lost_reply_to_data_is_retried_and_flagged_possible_duplicate(self):
        hang, daemon, ref, doc = self.first_attempt("hang-data", RETRY_MIN="1s", RETRY_MAX="1s")
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "deferred", rcpt)
        self.assertTrue(rcpt.get("possible_duplicate"), rcpt)
        # The relay is replaced by a healthy one on the same port.
        port = hang.port
        hang.stop()
        peer = self.start_peer(port=port)
        doc = daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "delivered", rcpt)
        self.assertTrue(rcpt.get("possible_duplicate"), rcpt)
        self.assertEqual(len(peer.wait_for_messages(1)), 1)

    def test_lost_reply_to_data_fails_when_after_data_timeout_is_fail(self):
        peer, daemon, ref, doc = self.first_attempt("hang-data", AFTER_DATA_TIMEOUT="fail")
        self.assertEqual(doc["status"], "completed")
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "failed", rcpt)
        self.assertTrue(rcpt.get("reason"), rcpt)
        self.assertEqual(doc["failed"], ["bob@example.net"])


class SandboxDeliveryTest(IntegrationTestCase):

    def test_sandbox_writes_eml_and_marks_delivered(self):
        daemon = self.start_daemon(DELIVERY="sandbox")
        test_id = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net", "reject1@example.net"], subject="Sandboxed",
                                 body="kept on disk", test_id=test_id))
        doc = daemon.wait_completed(ref)
        self.assertEqual(doc["failed"], [])
        for rcpt in doc["recipients"]:
            self.assertEqual(rcpt["state"], "delivered")
            self.assertIn("sandbox", rcpt["smtp_reply"].lower())
        path = os.path.join(daemon.data_dir, "sandbox", ref + ".eml")
        self.assertTrue(os.path.isfile(path), os.listdir(os.path.dirname(path)))
        with open(path, "rb") as f:
            raw = f.read()
        msg = parse_message(raw.decode("utf-8", "surrogateescape"))
        self.assertEqual(msg["Subject"], "Sandboxed")
        self.assertEqual(msg["X-Test-Id"], test_id)
        self.assertEqual(msg["To"], "bob@example.net, reject1@example.net")
        self.assertIn(b"kept on disk", raw)
        self.assertIn(b"\r\n\r\n", raw)
        leftovers = [n for n in os.listdir(os.path.dirname(path)) if not n.endswith(".eml")]
        self.assertEqual(leftovers, [])


if __name__ == "__main__":
    unittest.main()
