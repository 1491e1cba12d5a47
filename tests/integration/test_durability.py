"""202 means durably stored: a SIGKILL or a SIGTERM drain loses no accepted job."""

import signal
import threading
import unittest

from harness import IntegrationTestCase, mail, messages_by_test_id, submit_concurrently, wait_until


def payloads(count, prefix):
    out = []
    for i in range(count):
        test_id = "%s-%04d" % (prefix, i)
        out.append(mail(to=["rcpt%d@example.net" % (i % 7), "other%d@example.org" % i], subject="job " + test_id,
                        body="body of %s\n" % test_id, test_id=test_id))
    return out


class DurabilityTest(IntegrationTestCase):

    def accepted_refs(self, reqs, results):
        """{test_id: ref} of every request answered 202; other answers must be clean refusals."""
        refs = {}
        for req, r in zip(reqs, results):
            if isinstance(r, Exception):
                continue  # the daemon went away mid-request: no promise was made
            if r.status == 202:
                refs[req["headers"]["X-Test-Id"]] = r.json()["ref"]
            else:
                self.assertJsonError(r, 503)
        return refs

    def check_all_delivered(self, daemon, peer, refs):
        # Polled while the resumed jobs are delivered, as a client would: this is how the
        # stale status cache (test_api.StatusCacheRaceTest) first showed up here.
        docs = daemon.wait_all_completed(refs.values(), timeout=90)
        self.assertEqual(daemon.wait_idle(timeout=10)["queued"], 0)
        for ref, doc in docs.items():
            self.assertEqual(doc["failed"], [], doc)
            self.assertTrue(all(r["state"] == "delivered" for r in doc["recipients"]), doc)
        got = messages_by_test_id(peer)
        missing = [t for t in refs if t not in got]
        self.assertEqual(missing, [], "accepted jobs whose message never arrived")
        return got

    def test_sigkill_with_hundreds_of_queued_jobs_loses_none(self):
        # Everything is deferred by a relay that answers 451 to every RCPT.
        tempfail = self.start_peer(fault="tempfail-all")
        daemon = self.start_daemon(**self.relay_env(tempfail, THREADS=2, RETRY_MIN="1s", RETRY_MAX="2s"))
        reqs = payloads(300, "kill")
        killed = threading.Event()

        def on_accepted(count):
            # SIGKILL while the last requests are still in flight.
            if count == 250 and not killed.is_set():
                killed.set()
                daemon.send_signal(signal.SIGKILL)

        results = submit_concurrently(daemon, reqs, workers=16, on_accepted=on_accepted)
        self.assertTrue(killed.is_set(), "fewer than 250 jobs were accepted: %r"
                        % [r for r in results if not getattr(r, "status", 0) == 202][:3])
        self.assertEqual(daemon.wait_exit(), -signal.SIGKILL)
        refs = self.accepted_refs(reqs, results)
        self.assertGreaterEqual(len(refs), 250)
        self.assertEqual(len(set(refs.values())), len(refs), "a ref was issued twice")
        self.assertEqual(tempfail.messages(), [])

        healthy = self.start_peer()
        daemon.start(SMTP_PORT=healthy.port, THREADS=4)
        got = self.check_all_delivered(daemon, healthy, refs)
        duplicated = [t for t in refs if len(got[t]) != 1]
        self.assertEqual(duplicated, [], "messages delivered more than once")
        for test_id in refs:
            self.assertEqual(sorted(got[test_id][0]["rcpt_tos"]),
                             sorted(reqs[int(test_id.split("-")[1])]["to"]))

    def test_sigterm_drains_and_keeps_every_accepted_job(self):
        peer = self.start_peer()
        daemon = self.start_daemon(**self.relay_env(peer, THREADS=2))
        reqs = payloads(150, "term")
        signalled = threading.Event()

        def on_accepted(count):
            if count == 60 and not signalled.is_set():
                signalled.set()
                daemon.send_signal(signal.SIGTERM)

        results = submit_concurrently(daemon, reqs, workers=16, on_accepted=on_accepted)
        self.assertTrue(signalled.is_set())
        self.assertEqual(daemon.wait_exit(), 0, "websmtpd did not exit 0 after SIGTERM")
        refs = self.accepted_refs(reqs, results)
        self.assertGreaterEqual(len(refs), 60)

        daemon.start()
        got = self.check_all_delivered(daemon, peer, refs)
        duplicated = [t for t in refs if len(got[t]) != 1]
        self.assertEqual(duplicated, [], "messages delivered more than once")

    def test_sigterm_with_a_stuck_smtp_transaction_exits_after_grace_and_retries(self):
        stuck = self.start_peer(fault="hang-greeting")
        daemon = self.start_daemon(**self.relay_env(stuck, THREADS=1, SMTP_COMMAND_TIMEOUT="300s",
                                                    SHUTDOWN_GRACE="1s"))
        first = daemon.submit(mail(test_id="first"))
        second = daemon.submit(mail(test_id="second"))
        wait_until(lambda: daemon.queue()["workers_busy"] == 1, 10, what="the worker to get stuck")
        # Well inside the 300 s command timeout: only the shutdown grace can end it.
        self.assertEqual(daemon.stop(signal.SIGTERM, timeout=30), 0)
        self.assertEqual(stuck.messages(), [])

        healthy = self.start_peer()
        daemon.start(SMTP_PORT=healthy.port, SMTP_COMMAND_TIMEOUT="10s")
        got = self.check_all_delivered(daemon, healthy, {"first": first, "second": second})
        self.assertEqual(sorted(len(v) for v in got.values()), [1, 1])

    def test_restart_resumes_jobs_without_redelivering_finished_ones(self):
        peer = self.start_peer()
        daemon = self.start_daemon(**self.relay_env(peer, RETRY_MIN="1s", RETRY_MAX="1s"))
        done = daemon.submit(mail(to=["ok@example.net"], test_id="done"))
        daemon.wait_completed(done)
        self.assertEqual(daemon.stop(), 0)
        daemon.start()
        code, doc = daemon.status(done)
        self.assertEqual(code, 200)
        self.assertEqual(doc["status"], "completed")
        more = daemon.submit(mail(to=["ok@example.net"], test_id="more"))
        daemon.wait_completed(more)
        got = messages_by_test_id(peer)
        self.assertEqual(len(got["done"]), 1)
        self.assertEqual(len(got["more"]), 1)


if __name__ == "__main__":
    unittest.main()


class OneProcessPerStoreTest(IntegrationTestCase):

    def test_a_second_daemon_on_the_same_data_dir_refuses_to_start(self):
        first = self.start_daemon(DELIVERY="sandbox")
        ref = first.submit(mail())
        second = self.make_daemon(DELIVERY="sandbox", DATA_DIR=first.data_dir)
        with self.assertRaises(RuntimeError) as caught:
            second.start()
        self.assertIn("in use by another websmtpd", str(caught.exception))
        self.assertNotEqual(second.proc.returncode, 0)
        # The first one is untouched and still serves its store.
        self.assertEqual(first.status(ref)[0], 200)
        first.stop()
        second.start()  # once the first is gone, the store is free
        self.assertEqual(second.status(ref)[0], 200)
