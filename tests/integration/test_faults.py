"""Faulty SMTP peers: each fault ends in the right per-recipient state and reason, the same
daemon recovers by itself once the peer heals (smtp_peer's runtime switch), no worker is
stuck forever, one stuck transaction does not block the others, and a recipient is never
delivered twice unless its status says possible_duplicate.

Timeouts are short (1 s) so that every fault resolves quickly; every wait is a bounded poll.
"""

import signal
import socket
import time
import unittest

from harness import IntegrationTestCase, PeerProcess, mail, messages_by_test_id, new_test_id, wait_until

# Short SMTP timeouts and retry delays: a fault costs about a second.
FAST = {
    "SMTP_CONNECT_TIMEOUT": "1s",
    "SMTP_COMMAND_TIMEOUT": "1s",
    "SMTP_DATA_TIMEOUT": "1s",
    "RETRY_MIN": "1s",
    "RETRY_MAX": "2s",
}


def attempted(doc):
    return all(r["attempts"] >= 1 for r in doc["recipients"])


class FaultTestCase(IntegrationTestCase):

    pipelining = False  # the peer offers PIPELINING: the daemon sends MAIL, RCPT and DATA in one write

    def start_peer(self, fault=None, port=0):
        peer = PeerProcess(fault=fault, port=port, pipelining=self.pipelining)

        def stop():
            peer.stop()
            if peer.stderr_text():
                self._logs.append(("smtp peer :%s" % peer.port, peer.stderr_text()))
        self.addCleanup(stop)
        return peer

    def daemon_for(self, peer, **env):
        e = dict(FAST)
        e.update(env)
        return self.start_daemon(**self.relay_env(peer, **e))

    def first_attempt(self, daemon, ref, timeout=20):
        return daemon.wait_status(ref, attempted, timeout=timeout, what="a first attempt of %s" % ref)

    def copies(self, peer, test_id):
        return messages_by_test_id(peer).get(test_id, [])

    def assert_accounted(self, peer, test_id, doc):
        """Every recipient: delivered -> at least one copy, failed -> none, more than one
        copy -> flagged possible_duplicate. Returns {address: copies}."""
        msgs = self.copies(peer, test_id)
        counts = {}
        for r in doc["recipients"]:
            n = sum(1 for m in msgs if r["address"] in m["rcpt_tos"])
            counts[r["address"]] = n
            if r["state"] == "delivered":
                self.assertGreaterEqual(n, 1, "delivered but the peer has no copy: %r" % r)
            elif r["state"] == "failed":
                self.assertEqual(n, 0, "failed but the peer has a copy: %r" % r)
            if n > 1:
                self.assertIs(r.get("possible_duplicate"), True,
                              "delivered %d times without possible_duplicate: %r" % (n, r))
        return counts

    def assert_deferred(self, doc, code=0):
        self.assertEqual(doc["status"], "processing", doc)
        self.assertEqual(doc["failed"], [])
        for r in doc["recipients"]:
            self.assertEqual(r["state"], "deferred", r)
            self.assertEqual(r.get("smtp_code", 0), code, r)
            self.assertTrue(r.get("smtp_reply"), r)
            self.assertNotIn("reason", r)
            self.assertIsInstance(r.get("next_attempt"), int, r)
            self.assertGreaterEqual(r["next_attempt"], r["time"], r)


class GreetingFaultTest(FaultTestCase):

    def test_peer_that_never_greets_defers_then_same_daemon_delivers_once_it_heals(self):
        peer = self.start_peer(fault="hang-greeting")
        daemon = self.daemon_for(peer)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        self.assertNotIn("possible_duplicate", doc["recipients"][0])
        self.assertTrue(peer.fault_events(), "the daemon never connected")

        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt["smtp_code"]), ("delivered", 250), rcpt)
        self.assertGreaterEqual(rcpt["attempts"], 2)
        self.assertNotIn("possible_duplicate", rcpt)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1})

    def test_garbage_greeting_defers(self):
        peer = self.start_peer(fault="garbage")
        daemon = self.daemon_for(peer, RETRY_MIN="60s", RETRY_MAX="60s")
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        self.assertIn("greeting", doc["recipients"][0]["smtp_reply"].lower())
        self.assertEqual(peer.messages(), [])

    def test_421_greeting_defers_with_code_421_then_delivers(self):
        peer = self.start_peer(fault="421")
        daemon = self.daemon_for(peer)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net", "carol@example.org"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc, code=421)
        self.assertIn("421", doc["recipients"][0]["smtp_reply"])

        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        self.assertEqual(doc["failed"], [])
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1, "carol@example.org": 1})

    def test_reply_that_never_completes_is_cut_off_by_the_command_timeout(self):
        # The peer keeps sending one byte every 0.2 s and never ends its greeting line. The
        # command timeout bounds the wait for a reply, so the attempt must end (deferred) a
        # few seconds after SMTP_COMMAND_TIMEOUT=1s, not hold the only worker forever.
        peer = self.start_peer(fault="trickle")
        daemon = self.daemon_for(peer, THREADS=1, SHUTDOWN_GRACE="1s")
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = self.first_attempt(daemon, ref, timeout=6)
        self.assert_deferred(doc)

    def test_relay_that_never_completes_the_tcp_handshake_hits_the_connect_timeout(self):
        # A listener whose accept queue is full: further SYNs are dropped, connect() hangs.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(filler.close)
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        e = dict(FAST, DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT=listener.getsockname()[1],
                 SMTP_TLS="none", RETRY_MIN="60s", RETRY_MAX="60s")
        daemon = self.start_daemon(**e)
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = self.first_attempt(daemon, ref, timeout=15)
        self.assert_deferred(doc)
        self.assertIn("time", doc["recipients"][0]["smtp_reply"].lower())


class MidReplyFaultTest(FaultTestCase):

    def test_stall_in_a_multiline_ehlo_reply_defers_and_frees_the_worker(self):
        peer = self.start_peer(fault="ehlo-stall")
        daemon = self.daemon_for(peer, THREADS=1)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        self.assertTrue(peer.wait_for_fault_event(stage="ehlo"))
        # The only worker is free again: a second job and the retry both go through.
        peer.set_fault("none")
        tid2 = new_test_id()
        ref2 = daemon.submit(mail(to=["carol@example.net"], test_id=tid2))
        docs = daemon.wait_all_completed([ref, ref2], timeout=30)
        self.assertEqual(self.assert_accounted(peer, tid, docs[ref]), {"bob@example.net": 1})
        self.assertEqual(self.assert_accounted(peer, tid2, docs[ref2]), {"carol@example.net": 1})

    def test_close_in_a_multiline_ehlo_reply_defers(self):
        peer = self.start_peer(fault="ehlo-close")
        daemon = self.daemon_for(peer, THREADS=1)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        self.assertIn("closed", doc["recipients"][0]["smtp_reply"].lower())
        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1})

    def test_421_in_the_middle_of_a_transaction_defers_every_recipient(self):
        # closeonce*: the peer answers that RCPT with 421 and closes, the first time only.
        peer = self.start_peer()
        daemon = self.daemon_for(peer, RETRY_MIN="2s", RETRY_MAX="2s")
        tid = new_test_id()
        rcpts = ["ok-a@example.net", "closeonce-1@example.net", "ok-b@example.net"]
        ref = daemon.submit(mail(to=rcpts, test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc, code=421)
        doc = daemon.wait_completed(ref, timeout=30)
        self.assertEqual(doc["failed"], [])
        for r in doc["recipients"]:
            self.assertEqual((r["state"], r["attempts"]), ("delivered", 2), r)
            self.assertNotIn("possible_duplicate", r)
        self.assertEqual(self.assert_accounted(peer, tid, doc), dict.fromkeys(rcpts, 1))

    def test_relay_that_closed_the_idle_connection_does_not_defer_the_next_job(self):
        # The daemon keeps its SMTP connection open between jobs. Relays close idle
        # connections (Postfix after 300 s); here the relay restarts on the same port.
        peer = self.start_peer()
        daemon = self.daemon_for(peer, THREADS=1, RETRY_MIN="60s", RETRY_MAX="60s")
        first = daemon.submit(mail(to=["bob@example.net"]))
        daemon.wait_completed(first)
        port = peer.port
        peer.stop()
        peer = self.start_peer(port=port)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["carol@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt["attempts"]), ("delivered", 1),
                         "a dead cached connection made a healthy relay's job wait RETRY_MIN: %r" % rcpt)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"carol@example.net": 1})


class DataFaultTest(FaultTestCase):

    def test_drop_mid_data_defers_then_delivers_exactly_once_unflagged(self):
        # 16 MB cannot all be in the socket buffers (loopback send buffers grow to 4 MB,
        # net.ipv4.tcp_wmem) when the peer aborts on the first DATA bytes: the send fails, so
        # the daemon knows that the message did not go out in full.
        peer = self.start_peer(fault="drop-data")
        daemon = self.daemon_for(peer, SMTP_DATA_TIMEOUT="10s", SMTP_COMMAND_TIMEOUT="10s", MAX_BODY_BYTES="64MiB")
        tid = new_test_id()
        big = ("%s\n" % ("a" * 70)) * (16 * 1024 * 1024 // 71)
        ref = daemon.submit(mail(to=["bob@example.net"], body=big, test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        self.assertNotIn("possible_duplicate", doc["recipients"][0])
        self.assertTrue(peer.wait_for_fault_event(stage="data"))

        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "delivered", rcpt)
        self.assertNotIn("possible_duplicate", rcpt, "the data never completed: not a possible duplicate")
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1})

    def test_drop_after_a_small_message_went_out_delivers_once(self):
        # A small message is all in the socket buffers before the abort arrives: from the
        # daemon's side the final dot went out, so a possible_duplicate flag is allowed here,
        # but the peer has exactly one copy in the end.
        peer = self.start_peer(fault="drop-data")
        daemon = self.daemon_for(peer)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1})

    def test_hang_after_final_dot_defers_flagged_then_delivers_still_flagged(self):
        peer = self.start_peer(fault="hang-data")
        daemon = self.daemon_for(peer)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net", "carol@example.org"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        for r in doc["recipients"]:
            self.assertIs(r.get("possible_duplicate"), True, r)

        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        for r in doc["recipients"]:
            self.assertEqual((r["state"], r["smtp_code"]), ("delivered", 250), r)
            self.assertIs(r.get("possible_duplicate"), True, "the flag must survive delivery: %r" % r)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1, "carol@example.org": 1})

    def test_hang_after_final_dot_fails_unknown_after_data_when_configured(self):
        peer = self.start_peer(fault="hang-data")
        daemon = self.daemon_for(peer, AFTER_DATA_TIMEOUT="fail")
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = daemon.wait_completed(ref, timeout=20)
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt.get("reason"), rcpt["attempts"]), ("failed", "unknown_after_data", 1), rcpt)
        self.assertEqual(doc["failed"], ["bob@example.net"])
        self.assertGreater(doc["time_completed"], 0)
        self.assertTrue(rcpt.get("smtp_reply"), rcpt)
        self.assertEqual(peer.messages(), [])

    def test_connection_closed_after_final_dot_is_a_lost_reply(self):
        # The peer takes the whole message and closes the connection without answering:
        # exactly the "lost reply to DATA" case, only without a timeout. The peer has the
        # message, so the retry is a real duplicate and must be flagged.
        peer = self.start_peer(fault="close-after-data")
        daemon = self.daemon_for(peer)
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        self.assert_deferred(doc)
        peer.set_fault("none")
        doc = daemon.wait_completed(ref, timeout=30)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 2})

    def test_connection_closed_after_final_dot_fails_when_after_data_timeout_is_fail(self):
        peer = self.start_peer(fault="close-after-data")
        daemon = self.daemon_for(peer, AFTER_DATA_TIMEOUT="fail")
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        doc = self.first_attempt(daemon, ref)
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt.get("reason")), ("failed", "unknown_after_data"), rcpt)
        self.assertEqual(len(self.copies(peer, tid)), 1, "sent again although AFTER_DATA_TIMEOUT=fail")


class ExpiryTest(FaultTestCase):

    def test_tempfail_until_max_lifetime_fails_expired_with_the_last_reply(self):
        peer = self.start_peer(fault="tempfail-all")
        daemon = self.daemon_for(peer, MAX_LIFETIME="3s", RETRY_MIN="1s", RETRY_MAX="1s")
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt.get("reason"), rcpt["smtp_code"]), ("failed", "expired", 451), rcpt)
        self.assertIn("try again later", rcpt["smtp_reply"])
        self.assertGreaterEqual(rcpt["attempts"], 2, rcpt)
        self.assertGreaterEqual(rcpt["time"], doc["time_submitted"] + 3, "failed before MAX_LIFETIME: %r" % doc)
        self.assertEqual(doc["failed"], ["bob@example.net"])
        attempts = rcpt["attempts"]
        self.assertEqual(len(peer.rcpt_events()), attempts, "one RCPT per attempt")
        self.assertEqual(peer.messages(), [])


class HeadOfLineTest(FaultTestCase):

    def test_a_stuck_transaction_does_not_hold_up_later_jobs(self):
        peer = self.start_peer()
        # A long command timeout: the stuck transaction stays stuck for the whole test.
        daemon = self.daemon_for(peer, THREADS=2, SMTP_COMMAND_TIMEOUT="60s", SHUTDOWN_GRACE="1s")
        stuck_tid = new_test_id()
        stuck = daemon.submit(mail(to=["hang-1@example.net"], test_id=stuck_tid))
        peer.wait_for_fault_event(stage="rcpt", address="hang-1@example.net")
        wait_until(lambda: daemon.queue()["workers_busy"] >= 1, 10, what="a worker to be busy")

        tids = [new_test_id() for _ in range(12)]
        refs = [daemon.submit(mail(to=["ok%d@example.net" % i], test_id=t)) for i, t in enumerate(tids)]
        docs = daemon.wait_all_completed(refs, timeout=30)
        code, doc = daemon.status(stuck)
        self.assertEqual(code, 200)
        self.assertEqual(doc["status"], "not started", "the stuck job should still be on the wire: %r" % doc)
        self.assertEqual(doc["recipients"][0]["attempts"], 0)
        for ref, t in zip(refs, tids):
            self.assertEqual(docs[ref]["failed"], [])
            self.assertEqual(sum(self.assert_accounted(peer, t, docs[ref]).values()), 1)

        # The peer goes away: the stuck transaction ends at once (deferred), well before
        # its 60 s command timeout.
        peer.stop()
        doc = self.first_attempt(daemon, stuck, timeout=15)
        self.assert_deferred(doc)
        self.assertEqual(self.copies(peer, stuck_tid), [])


class CrashAndSignalTest(FaultTestCase):

    def test_sigkill_while_waiting_for_the_reply_to_data_flags_the_retry(self):
        # hangdata*: the peer keeps the message but never answers the first time. The daemon
        # dies while it waits; after the restart the retry is a real duplicate, flagged.
        peer = self.start_peer()
        daemon = self.daemon_for(peer, SMTP_DATA_TIMEOUT="60s")
        tid = new_test_id()
        ref = daemon.submit(mail(to=["hangdata-1@example.net", "bob@example.net"], test_id=tid))
        peer.wait_for_fault_event(stage="data-end")
        self.assertEqual(daemon.kill9(), -signal.SIGKILL)
        daemon.start()
        doc = daemon.wait_completed(ref, timeout=30)
        for r in doc["recipients"]:
            self.assertEqual(r["state"], "delivered", r)
            self.assertIs(r.get("possible_duplicate"), True, r)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"hangdata-1@example.net": 2, "bob@example.net": 2})

    def test_second_sigterm_exits_at_once_and_the_retry_is_flagged(self):
        peer = self.start_peer(fault="hang-data")
        daemon = self.daemon_for(peer, SMTP_DATA_TIMEOUT="120s", SHUTDOWN_GRACE="60s")
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        peer.wait_for_fault_event(stage="data-end")
        daemon.send_signal(signal.SIGTERM)
        # Two signals sent back to back merge into one pending signal: the second one must
        # come after the daemon took the first.
        wait_until(lambda: "draining" in daemon.log_text(), 10, what="the daemon to start draining")
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        self.assertEqual(daemon.wait_exit(timeout=15), 0)
        self.assertLess(time.monotonic() - started, 15)

        peer.set_fault("none")
        daemon.start()
        doc = daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "delivered", rcpt)
        self.assertIs(rcpt.get("possible_duplicate"), True, rcpt)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1})

    def test_sigterm_drains_a_slow_transaction_within_the_grace(self):
        # The peer holds the reply to DATA; SIGTERM waits for it (grace 30 s), the outcome
        # is committed, the process exits 0 and nothing is sent again after a restart.
        peer = self.start_peer(fault="hold-data")
        daemon = self.daemon_for(peer, SMTP_DATA_TIMEOUT="60s", SHUTDOWN_GRACE="30s")
        tid = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net"], test_id=tid))
        peer.wait_for_fault_event(stage="data-end")
        daemon.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in daemon.log_text(), 10, what="the daemon to start draining")
        peer.release()
        self.assertEqual(daemon.wait_exit(timeout=20), 0)
        daemon.start()
        doc = daemon.wait_completed(ref, timeout=10)
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt["attempts"]), ("delivered", 1), rcpt)
        self.assertNotIn("possible_duplicate", rcpt)
        self.assertEqual(self.assert_accounted(peer, tid, doc), {"bob@example.net": 1})


class PipelinedDataFaultTest(DataFaultTest):
    """The same DATA faults when the relay offers PIPELINING (DATA goes out with RCPT)."""
    pipelining = True

    def test_drop_mid_data_defers_then_delivers_exactly_once_unflagged(self):
        self.skipTest("the message is sent the same way with or without PIPELINING; 16 MB costs seconds")


class PipelinedMidTransactionTest(FaultTestCase):
    pipelining = True
    test_421_in_the_middle_of_a_transaction_defers_every_recipient = \
        MidReplyFaultTest.test_421_in_the_middle_of_a_transaction_defers_every_recipient
    test_a_stuck_transaction_does_not_hold_up_later_jobs = \
        HeadOfLineTest.test_a_stuck_transaction_does_not_hold_up_later_jobs


if __name__ == "__main__":
    unittest.main()
