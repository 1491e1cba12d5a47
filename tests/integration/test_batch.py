"""POST /mail/batch (api.md): up to 100 jobs, all or nothing, one commit, refs in order."""

import json
import unittest

from harness import IntegrationTestCase, mail, messages_by_test_id, new_test_id


class BatchTest(IntegrationTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(self.peer, THREADS="4"))

    def post_batch(self, jobs, headers=None, raw=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        body = raw if raw is not None else json.dumps({"jobs": jobs}).encode()
        return self.daemon.request("POST", "/mail/batch", body=body, headers=h)

    def test_accepts_jobs_in_order_and_delivers_each(self):
        ids = [new_test_id() for _ in range(25)]
        jobs = [mail(to=["rcpt%d@example.net" % i], test_id=t) for i, t in enumerate(ids)]
        r = self.post_batch(jobs)
        self.assertEqual(r.status, 202, r.body)
        refs = r.json()["refs"]
        self.assertEqual(len(refs), 25)
        self.assertEqual(len(set(refs)), 25)
        docs = self.daemon.wait_all_completed(refs)
        for i, ref in enumerate(refs):
            rcpt = docs[ref]["recipients"]
            self.assertEqual([x["address"] for x in rcpt], ["rcpt%d@example.net" % i])
            self.assertEqual(rcpt[0]["state"], "delivered")
        by_id = messages_by_test_id(self.peer)
        for t in ids:
            self.assertEqual(len(by_id.get(t, [])), 1, t)

    def test_one_invalid_job_refuses_the_whole_batch_naming_it(self):
        before = self.daemon.queue()["submitted_total"]
        jobs = [mail() for _ in range(5)]
        jobs[3]["to"] = ["not an address"]
        r = self.post_batch(jobs)
        self.assertJsonError(r, 400, code="invalid_address", field="jobs[3].to[0]")
        jobs[3] = mail()
        jobs[4]["subject"] = "Hi\r\nBcc: evil@example.com"
        self.assertJsonError(self.post_batch(jobs), 400, code="header_injection", field="jobs[4].subject")
        jobs[4] = "not an object"
        self.assertJsonError(self.post_batch(jobs), 400, field="jobs[4]")
        self.assertEqual(self.daemon.queue()["submitted_total"], before, "a refused batch stored nothing")

    def test_batch_size_limits(self):
        self.assertJsonError(self.post_batch([]), 422, code="invalid_batch_size", field="jobs")
        self.assertJsonError(self.post_batch([mail()] * 101), 422, code="invalid_batch_size", field="jobs")
        r = self.post_batch([mail(to=["x%d@example.net" % i]) for i in range(100)])
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(len(r.json()["refs"]), 100)

    def test_malformed_batches(self):
        self.assertJsonError(self.post_batch(None, raw=b"{nope"), 400, code="invalid_json")
        self.assertJsonError(self.post_batch(None, raw=b"[]"), 400, code="invalid_json")
        self.assertJsonError(self.post_batch(None, raw=b"{}"), 400, code="missing_field", field="jobs")
        self.assertJsonError(self.post_batch(None, raw=b'{"jobs": {}}'), 400, code="invalid_type", field="jobs")
        self.assertJsonError(self.post_batch(None, raw=json.dumps({"jobs": [mail()], "extra": 1}).encode()), 400,
                             field="extra")

    def test_idempotency_key_covers_the_whole_batch(self):
        jobs = [mail(to=["i%d@example.net" % i]) for i in range(3)]
        first = self.post_batch(jobs, headers={"Idempotency-Key": "batch-1"})
        self.assertEqual(first.status, 202, first.body)
        again = self.post_batch(jobs, headers={"Idempotency-Key": "batch-1"})
        self.assertEqual(again.status, 200, again.body)
        self.assertEqual(again.json()["refs"], first.json()["refs"])
        other = self.post_batch(jobs[:2], headers={"Idempotency-Key": "batch-1"})
        self.assertJsonError(other, 409, code="idempotency_conflict")
        # The same key on /mail/send names a different request.
        self.assertJsonError(self.daemon.post_send(mail(), headers={"Idempotency-Key": "batch-1"}), 409)

    def test_wrong_method_and_cors_preflight(self):
        r = self.daemon.request("GET", "/mail/batch")
        self.assertJsonError(r, 405)
        self.assertIn("POST", r.header("Allow"))


if __name__ == "__main__":
    unittest.main()
