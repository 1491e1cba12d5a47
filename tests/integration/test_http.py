"""websmtpd's HTTP/1.1 framing on the wire (RFC 9112): what a strict server refuses, HEAD,
slow clients, and answers that stay in order."""

import json
import re
import time
import unittest

from harness import IntegrationTestCase, exchange, mail


class HttpFramingTest(IntegrationTestCase):

    def setUp(self):
        self.daemon = self.start_daemon(DELIVERY="sandbox", HTTP_HEADER_TIMEOUT="1s", HTTP_BODY_TIMEOUT="1s")

    def status_line(self, data):
        return exchange(self.daemon.port, data).split(b"\r\n", 1)[0]

    def test_head_answers_without_a_body(self):
        raw = exchange(self.daemon.port, b"HEAD /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), raw)
        self.assertIn(b"Content-Length: 4", head)
        self.assertEqual(body, b"")

    def test_whitespace_before_a_header_colon_is_refused(self):
        body = json.dumps(mail()).encode()
        line = self.status_line(b"POST /mail/send HTTP/1.1\r\nHost: x\r\nContent-Length : %d\r\n\r\n%s"
                                % (len(body), body))
        self.assertTrue(line.startswith(b"HTTP/1.1 400 "), line)

    def test_obs_fold_and_garbage_are_refused(self):
        self.assertTrue(self.status_line(b"GET /status HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n").startswith(
            b"HTTP/1.1 400 "))
        self.assertTrue(self.status_line(b"GET /status\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(self.status_line(b"GET /status HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 "))

    def test_conflicting_content_lengths_and_chunked_are_refused(self):
        self.assertTrue(self.status_line(
            b"POST /mail/send HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}").startswith(
            b"HTTP/1.1 400 "))
        self.assertTrue(self.status_line(
            b"POST /mail/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").startswith(b"HTTP/1.1 411 "))

    def test_a_repeated_idempotency_key_header_is_refused(self):
        r = self.daemon.post_send(mail(), headers={"Idempotency-Key": "a"})
        self.assertEqual(r.status, 202)
        body = json.dumps(mail()).encode()
        raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\n"
                       b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:200])
        self.assertIn(b"invalid_idempotency_key", raw)

    def test_a_request_that_never_completes_gets_408_and_is_closed(self):
        started = time.monotonic()
        raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nHost: x\r\n", timeout=10)
        self.assertTrue(raw.startswith(b"HTTP/1.1 408 "), raw[:200])
        self.assertIn(b"header_timeout", raw)
        raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nContent-Length: 100\r\n\r\n{", timeout=10)
        self.assertTrue(raw.startswith(b"HTTP/1.1 408 "), raw[:200])
        self.assertIn(b"body_timeout", raw)
        self.assertLess(time.monotonic() - started, 9, "the slow requests were not cut off")
        # The daemon still serves.
        self.assertEqual(self.daemon.request("GET", "/status").status, 200)

    def test_a_short_body_is_validated_not_garbled(self):
        # Bodies of 15 bytes or less are held inside the string object: they must reach
        # validation intact (the error names the real fault, not "invalid JSON").
        for body, code, field in ((b'{"from":1}', "invalid_type", "from"), (b"{}", "missing_field", "from")):
            raw = exchange(self.daemon.port, b"POST /mail/send HTTP/1.1\r\nConnection: close\r\nContent-Length: %d"
                           b"\r\n\r\n%s" % (len(body), body))
            self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:200])
            doc = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            self.assertEqual((doc["code"], doc.get("field")), (code, field), doc)

    def test_a_request_behind_a_long_poll_in_the_same_write_is_not_held_back(self):
        ref = self.daemon.submit(mail(to=["x@example.net"]))
        self.daemon.wait_completed(ref)
        # A job that never completes: a long-poll on it would wait out its 30 s.
        other = self.start_daemon(DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT="9", SMTP_TLS="none",
                                  SMTP_CONNECT_TIMEOUT="1s", RETRY_MIN="1h", RETRY_MAX="1h")
        pending = other.submit(mail())
        other.wait_status(pending, lambda d: d["status"] == "processing")
        started = time.monotonic()
        raw = exchange(other.port, b"GET /mail/status/%s?wait=30 HTTP/1.1\r\n\r\n"
                       b"GET /status HTTP/1.1\r\nConnection: close\r\n\r\n" % pending.encode(), timeout=40)
        self.assertEqual(re.findall(rb"HTTP/1\.1 (\d{3}) ", raw), [b"200", b"200"], raw[-300:])
        self.assertLess(time.monotonic() - started, 20, "the second request waited for the long-poll's timeout")

    def test_many_pipelined_submits_are_answered_in_order(self):
        body = json.dumps(mail()).encode()
        one = b"POST /mail/send HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        data = one * 50 + b"GET /status HTTP/1.1\r\nConnection: close\r\n\r\n"
        raw = exchange(self.daemon.port, data, timeout=10)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)
        self.assertEqual(statuses, [b"202"] * 50 + [b"200"], raw[-500:])


if __name__ == "__main__":
    unittest.main()
