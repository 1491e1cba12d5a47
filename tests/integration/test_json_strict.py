"""Request JSON the API refuses beyond syntax (nesting past 32 levels, a key given twice), and
recipients listed more than once (one RCPT, one status entry), through the real daemon."""

import json
import unittest

from harness import IntegrationTestCase, mail, messages_by_test_id, new_test_id


class StrictJsonTest(IntegrationTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(self.peer))

    def post_batch(self, raw):
        return self.daemon.request("POST", "/mail/batch", body=raw, headers={"Content-Type": "application/json"})

    def test_nesting_past_32_levels_is_400_json_too_deep(self):
        body = json.dumps(mail())[:-1]
        ok = (body + ', "x": ' + "[" * 31 + "]" * 31 + "}").encode()  # 32 levels with the request object
        r = self.daemon.post_send(ok)
        self.assertEqual(r.status, 202, r.body)
        deep = (body + ', "x": ' + "[" * 32 + "]" * 32 + "}").encode()
        self.assertJsonError(self.daemon.post_send(deep), 400, code="json_too_deep")
        self.assertJsonError(self.post_batch(b'{"jobs": [' + deep + b"]}"), 400, code="json_too_deep")

    def test_a_key_given_twice_is_400_duplicate_key_naming_it(self):
        before = self.daemon.queue()["submitted_total"]
        body = json.dumps(mail(to=["bob@example.net"]))[:-1]
        self.assertJsonError(self.daemon.post_send((body + ', "to": ["evil@example.com"]}').encode()), 400,
                             code="duplicate_key", field="to")
        twice = (body + ', "headers": {"X-A": "1", "X-A": "2"}}').encode()
        self.assertJsonError(self.daemon.post_send(twice), 400, code="duplicate_key", field="headers.X-A")
        batch = b'{"jobs": [' + json.dumps(mail()).encode() + b", " + \
            json.dumps(mail())[:-1].encode() + b', "from": "other@example.org"}]}'
        self.assertJsonError(self.post_batch(batch), 400, code="duplicate_key", field="jobs[1].from")
        self.assertEqual(self.daemon.queue()["submitted_total"], before, "a refused request stored nothing")

    def test_a_recipient_listed_twice_gets_one_rcpt_and_one_status_entry(self):
        test_id = new_test_id()
        ref = self.daemon.submit(mail(to=["bob@example.net", "carol@example.com"], cc=["Bob <bob@EXAMPLE.net>"],
                                      bcc=["carol@example.com", "dave@example.org"], test_id=test_id))
        doc = self.daemon.wait_completed(ref)
        self.assertEqual([(x["address"], x["kind"]) for x in doc["recipients"]],
                         [("bob@example.net", "to"), ("carol@example.com", "to"), ("dave@example.org", "bcc")])
        got = messages_by_test_id(self.peer)[test_id]
        rcpts = [r for m in got for r in m["rcpt_tos"]]
        self.assertEqual(sorted(rcpts), ["bob@example.net", "carol@example.com", "dave@example.org"])
        # The headers still show what the client wrote.
        self.assertIn("Cc: Bob <bob@EXAMPLE.net>", got[0]["data"])


if __name__ == "__main__":
    unittest.main()
