"""Request validation: every bad input gets its 4xx JSON error and nothing reaches the SMTP
peer; unusual but valid input is delivered intact."""

import base64
import email.header
import email.policy
import email.utils
import json
import socket
import time
import unittest

from harness import (IntegrationTestCase, SharedDaemonTestCase, header_text, mail, new_test_id, parse_message,
                     test_id_of, wait_until)

CONTROL_RCPT = "control@example.net"
VICTIM = "victim@example.com"
INJECT = "\r\nBcc: " + VICTIM

GOOD = {"from": "Alice <alice@example.org>", "to": ["bob@example.net"], "subject": "s", "body": "b"}


def with_(**fields):
    """GOOD with some fields replaced; a value of None removes the field."""
    req = dict(GOOD)
    for k, v in fields.items():
        if v is None:
            req.pop(k, None)
        else:
            req[k] = v
    return req


class RejectedInputTest(SharedDaemonTestCase):
    """Each test sends bad requests, then one good control job, waits for the control's
    delivery and checks that the peer saw nothing but control jobs."""

    daemon_env = {"MAX_RECIPIENTS": "5", "MAX_BODY_BYTES": "64KiB", "THREADS": "1"}

    def setUp(self):
        super().setUp()
        self.controls = []  # test ids of jobs this test expects at the peer
        self.records_before = len(self.peer.records())

    def expect_control(self, test_id=None):
        test_id = test_id or new_test_id()
        self.controls.append(test_id)
        return test_id

    def tearDown(self):
        test_id = self.expect_control()
        self.daemon.submit(mail(to=[CONTROL_RCPT], test_id=test_id))
        wait_until(lambda: test_id in [test_id_of(m) for m in self.peer.messages()], 20,
                   what="the control message")
        records = self.peer.records()[self.records_before:]
        msgs = [r for r in records if "event" not in r and "seq" in r]
        self.assertEqual(sorted(str(test_id_of(m)) for m in msgs), sorted(self.controls),
                         "messages other than the controls reached the peer")
        for m in msgs:
            self.assertTrue(all(a.startswith("control") for a in m["rcpt_tos"]), m["rcpt_tos"])
            self.assertNotIn("victim", m["data"])
        stray = {e["address"] for e in records if e.get("event") == "rcpt" and not e["address"].startswith("control")}
        self.assertEqual(stray, set(), "RCPT TO for addresses of rejected requests")

    def check_rejected(self, cases):
        """cases: (label, payload dict/bytes, status, code or None, field or None)."""
        for label, payload, status, code, field in cases:
            with self.subTest(label):
                r = self.daemon.post_send(payload)
                self.assertJsonError(r, status, code, field)
                self.assertIsNone(r.header("Location"))

    def test_malformed_json_is_400_invalid_json(self):
        self.check_rejected([
            ("truncated", b'{"from": "a@example.org", "to": [', 400, "invalid_json", None),
            ("not json", b"from=a@example.org&to=b@example.net", 400, "invalid_json", None),
            ("empty body", b"", 400, "invalid_json", None),
            ("trailing garbage", json.dumps(GOOD).encode() + b"}", 400, "invalid_json", None),
            ("invalid utf-8", json.dumps(GOOD).replace('"s"', '"\xff"').encode("latin-1"), 400, "invalid_json",
             None),
        ])

    def test_non_object_json_is_400(self):
        self.check_rejected([
            ("array", b"[]", 400, "invalid_json", None),
            ("array of request", json.dumps([GOOD]).encode(), 400, "invalid_json", None),
            ("string", b'"hello"', 400, "invalid_json", None),
            ("number", b"42", 400, "invalid_json", None),
            ("null", b"null", 400, "invalid_json", None),
        ])

    def test_wrong_types_are_400_invalid_type_naming_the_field(self):
        self.check_rejected([
            ("to number", with_(to=42), 400, "invalid_type", "to"),
            ("to object", with_(to={"a": VICTIM}), 400, "invalid_type", "to"),
            ("to element number", with_(to=[VICTIM, 7]), 400, "invalid_type", "to[1]"),
            ("to element list", with_(to=[[VICTIM]]), 400, "invalid_type", "to[0]"),
            ("cc object", with_(cc={"x": VICTIM}), 400, "invalid_type", "cc"),
            ("bcc element null", with_(bcc=[None]), 400, "invalid_type", "bcc[0]"),
            ("from array", with_(**{"from": [VICTIM]}), 400, "invalid_type", "from"),
            ("subject number", with_(subject=42), 400, "invalid_type", "subject"),
            ("subject bool", with_(subject=True), 400, "invalid_type", "subject"),
            ("body number", with_(body=1), 400, "invalid_type", "body"),
            ("html array", with_(html=["x"]), 400, "invalid_type", "html"),
            ("headers array", with_(headers=[["X-A", "b"]]), 400, "invalid_type", "headers"),
            ("headers string", with_(headers="X-A: b"), 400, "invalid_type", "headers"),
            ("header value number", with_(headers={"X-A": 1}), 400, "invalid_type", "headers.X-A"),
            ("reply_to number", with_(reply_to=5), 400, "invalid_type", "reply_to"),
        ])

    def test_missing_fields_are_400_missing_field(self):
        self.check_rejected([
            ("no from", with_(**{"from": None}), 400, "missing_field", "from"),
            ("no to", with_(to=None), 400, "missing_field", "to"),
            ("null to", with_(to=None, **{}) | {"to": None}, 400, "missing_field", "to"),
            ("empty to", with_(to=[], cc=[VICTIM]), 400, None, "to"),
            ("no subject", with_(subject=None), 400, "missing_field", "subject"),
            ("no body nor html", with_(body=None), 400, "missing_field", "body"),
            ("empty object", b"{}", 400, "missing_field", None),
        ])

    def test_bad_addresses_are_400_invalid_address(self):
        bad = ["victim", "victim example.com", "vic tim@example.com", "a@b@c", "<>", "@example.com",
               "victim@", "victim@exa mple.com", "victim@.example.com", "Victim <>", "victim@example.com>",
               "<victim@example.com", ""]
        cases = []
        for addr in bad:
            cases.append(("to %r" % addr, with_(to=[addr]), 400, "invalid_address", "to[0]"))
            cases.append(("cc %r" % addr, with_(cc=["ok@example.net", addr]), 400, "invalid_address", "cc[1]"))
            cases.append(("bcc %r" % addr, with_(bcc=[addr]), 400, "invalid_address", "bcc[0]"))
            cases.append(("from %r" % addr, with_(**{"from": addr}), 400, "invalid_address", "from"))
            cases.append(("reply_to %r" % addr, with_(reply_to=addr), 400, "invalid_address", "reply_to"))
        self.check_rejected(cases)

    def test_address_literals_are_400_invalid_address(self):
        """x@[127.0.0.1] would be looked up in the DNS as a domain: refused at submit instead."""
        for field, req in (("to[0]", with_(to=["x@[127.0.0.1]"])), ("cc[0]", with_(cc=["X <x@[IPv6:::1]>"])),
                           ("from", with_(**{"from": "a@[192.0.2.1]"}))):
            with self.subTest(field=field):
                doc = self.assertJsonError(self.daemon.post_send(req), 400, "invalid_address", field)
                self.assertIn("address literals are not supported", doc["error"])

    def test_cr_lf_nul_in_any_header_is_400_header_injection(self):
        self.check_rejected([
            ("subject CRLF", with_(subject="hi" + INJECT), 400, "header_injection", "subject"),
            ("subject LF", with_(subject="hi\nBcc: " + VICTIM), 400, "header_injection", "subject"),
            ("subject CR", with_(subject="hi\rBcc: " + VICTIM), 400, "header_injection", "subject"),
            ("subject NUL", with_(subject="hi\x00there"), 400, "header_injection", "subject"),
            ("from", with_(**{"from": "alice@example.org" + INJECT}), 400, "header_injection", "from"),
            ("from display name", with_(**{"from": "Alice" + INJECT + " <alice@example.org>"}), 400,
             "header_injection", "from"),
            ("to", with_(to=["bob@example.net" + INJECT]), 400, "header_injection", "to[0]"),
            ("to display name", with_(to=["Bob\r\n <bob@example.net>"]), 400, "header_injection", "to[0]"),
            ("to string", with_(to="bob@example.net" + INJECT), 400, "header_injection", "to"),
            ("cc", with_(cc=["carol@example.net\nBcc: " + VICTIM]), 400, "header_injection", "cc[0]"),
            ("bcc", with_(bcc=["dave@example.net\r\nX: y"]), 400, "header_injection", "bcc[0]"),
            ("reply_to", with_(reply_to="help@example.org" + INJECT), 400, "header_injection", "reply_to"),
            ("reply_to display name", with_(reply_to='"Help\r\nBcc: %s" <help@example.org>' % VICTIM), 400,
             "header_injection", "reply_to"),
            ("header value", with_(headers={"X-Campaign": "welcome" + INJECT}), 400, "header_injection",
             "headers.X-Campaign"),
            ("header value LF", with_(headers={"X-Campaign": "w\nBcc: " + VICTIM}), 400, "header_injection",
             "headers.X-Campaign"),
            ("header name", with_(headers={"X-A\r\nBcc": VICTIM}), 400, "header_injection", None),
            ("header name NUL", with_(headers={"X-A\x00": "v"}), 400, "header_injection", None),
        ])

    def test_reserved_or_invalid_custom_headers_are_400(self):
        cases = []
        for name in ("From", "to", "CC", "Bcc", "bcc", "Subject", "Date", "Message-ID", "MIME-Version",
                     "Reply-To", "Sender", "Return-Path", "Content-Type", "Content-Transfer-Encoding",
                     "content-disposition"):
            cases.append((name, with_(headers={name: VICTIM}), 400, "reserved_header", "headers." + name))
        for name in ("X Bad", "X:Bad", "", "X-\u00e9"):
            cases.append(("name %r" % name, with_(headers={name: "v"}), 400, None, "headers." + name))
        self.check_rejected(cases)

    def test_nul_in_body_is_400(self):
        self.check_rejected([
            ("body NUL", with_(body="hello\x00world", to=[VICTIM]), 400, "invalid_body", "body"),
            ("html NUL", with_(html="<p>\x00</p>", to=[VICTIM]), 400, "invalid_body", "html"),
        ])

    def test_more_than_max_recipients_is_422(self):
        six = with_(to=[VICTIM, "v2@example.com"], cc=["v3@example.com", "v4@example.com"],
                    bcc=["v5@example.com", "v6@example.com"])
        six_in_to = with_(to=["v%d@example.com" % i for i in range(6)])
        self.check_rejected([
            ("6 across to/cc/bcc", six, 422, "too_many_recipients", None),
            ("6 in to", six_in_to, 422, "too_many_recipients", None),
        ])

    def test_exactly_max_recipients_is_accepted(self):
        # The boundary, sent to the control address so the tearDown checks still hold.
        test_id = self.expect_control()
        ref = self.daemon.submit(mail(to=["control%d@example.net" % i for i in range(3)], cc=["control3@example.net"],
                                      bcc=["control4@example.net"], test_id=test_id))
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(len(doc["recipients"]), 5)

    def test_body_over_max_body_bytes_is_413_and_connection_closed(self):
        # 100 KB of request body that would parse as HTTP requests (and produce 404s and
        # 400s) if the daemon read the rest of the rejected body as new requests.
        filler = (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /mail/send HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
                  b"garbage\r\n\r\n")
        body = (filler * (100_000 // len(filler) + 1))[:100_000]
        head = (b"POST /mail/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))

        for mode in ("reads the answer first", "sends everything first"):
            with self.subTest(mode):
                s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=15)
                try:
                    if mode == "reads the answer first":
                        s.sendall(head + body[:8192])
                        status, headers, rest = read_http_response(s)
                        try:
                            s.sendall(body[8192:])
                        except (BrokenPipeError, ConnectionResetError):
                            pass  # closed for good: just as acceptable
                    else:
                        s.sendall(head + body)
                        status, headers, rest = read_http_response(s)
                    self.assertEqual(status, 413)
                    self.assertTrue(headers.get("content-type", "").startswith("application/json"))
                    doc = json.loads(rest.pop(0))
                    self.assertIsInstance(doc["error"], str)
                    self.assertIsInstance(doc["code"], str)
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    trailing = read_to_eof(s, rest)
                    self.assertEqual(trailing, b"", "bytes after the 413 answer: %r" % trailing[:300])
                finally:
                    s.close()

    def test_body_of_exactly_max_body_bytes_is_accepted_one_more_is_413(self):
        def sized(n, test_id):
            req = mail(to=["control-size@example.net"], body="", test_id=test_id)
            req["body"] = "a" * (n - len(json.dumps(req).encode()))
            data = json.dumps(req).encode()
            self.assertEqual(len(data), n)
            return data
        self.assertJsonError(self.daemon.post_send(sized(64 * 1024 + 1, "never")), 413)
        test_id = self.expect_control()
        r = self.daemon.post_send(sized(64 * 1024, test_id))
        self.assertEqual(r.status, 202, r.body)
        self.daemon.wait_completed(r.json()["ref"])

    def test_hostile_request_shapes_get_4xx_and_the_daemon_survives(self):
        deep_array = b"[" * 30000 + b"]" * 30000
        deep_object = b'{"a":' * 6000 + b"1" + b"}" * 6000
        self.check_rejected([
            ("deeply nested array", deep_array, 400, "json_too_deep", None),
            ("deeply nested object", deep_object, 400, "json_too_deep", None),
            ("huge exponent", b'{"from": 1e999999}', 400, None, None),
        ])
        # Unknown fields are ignored (202) or refused (4xx); deep nesting in one must not crash.
        test_id = new_test_id()
        deep_in_field = json.dumps(mail(to=[CONTROL_RCPT], test_id=test_id))[:-1] + ', "x": ' + "[" * 20000 + \
            "]" * 20000 + "}"
        r = self.daemon.post_send(deep_in_field.encode())
        self.assertLess(r.status, 500, r.body)
        if r.status == 202:
            self.expect_control(test_id)
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=15)
        try:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70000 + b"\r\n\r\n")
            status, _, _ = read_http_response(s)
            self.assertEqual(status // 100, 4)
        finally:
            s.close()
        self.assertEqual(self.daemon.request("GET", "/status").status, 200)
        self.assertTrue(self.daemon.running())

    def test_declared_length_over_limit_is_413(self):
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=15)
        try:
            s.sendall(b"POST /mail/send HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
                      + json.dumps(with_(to=[VICTIM])).encode())
            status, _, rest = read_http_response(s)
            self.assertEqual(status, 413)
            json.loads(rest.pop(0))
        finally:
            s.close()


def read_http_response(sock, timeout=15):
    """Read one HTTP/1.1 response with a Content-Length.

    Returns (status, {lower-case header: value}, [body, leftover bytes])."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a complete response: %r" % buf[:300])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed inside the response body")
        rest += chunk
    return status, headers, [rest[:length], rest[length:]]


def read_to_eof(sock, rest, timeout=15):
    """Everything the server still sends until it closes; a reset counts as closed."""
    data = rest[-1] if rest else b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the server kept the connection open after the 413")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            raise AssertionError("the server kept the connection open after the 413")
        if not chunk:
            return data
        data += chunk


class AcceptedInputTest(IntegrationTestCase):
    """Unusual but valid requests, each on its own peer and daemon."""

    def setUp(self):
        self.peer = self.start_peer()

    def test_non_ascii_subject_and_names_are_rfc2047_encoded(self):
        daemon = self.start_daemon(**self.relay_env(self.peer))
        subject = "Grüße aus Köln ✓ — naïve café, 日本語のテキストも少し長めに書いておきます"
        sender_name = "Jörg Müller"
        to_name = "Zoë Ångström"
        ref = daemon.submit(mail(to=["%s <zoe@example.net>" % to_name], subject=subject,
                                 sender="%s <joerg@example.org>" % sender_name,
                                 body="Grüße — body in UTF-8 ✓\n"))
        doc = daemon.wait_completed(ref)
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        [m] = self.peer.wait_for_messages(1)
        raw = m["data"].encode("utf-8", "surrogateescape")
        head = raw.partition(b"\r\n\r\n")[0]
        self.assertTrue(all(b < 0x80 for b in head), "8-bit bytes in the header block:\n%r" % head)
        for line in head.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        msg = parse_message(m["data"])
        self.assertIn("=?UTF-8?", msg["Subject"].upper())
        self.assertEqual(header_text(msg["Subject"]), subject)
        self.assertIn("=?", msg["From"])
        name, addr = email.utils.parseaddr(header_text(msg["From"]))
        self.assertEqual((name, addr), (sender_name, "joerg@example.org"))
        name, addr = email.utils.parseaddr(header_text(msg["To"]))
        self.assertEqual((name, addr), (to_name, "zoe@example.net"))
        self.assertEqual(msg.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n"),
                         "Grüße — body in UTF-8 ✓\n")

    def test_tricky_header_values_round_trip(self):
        daemon = self.start_daemon(**self.relay_env(self.peer))
        cases = {
            "looks encoded": "=?UTF-8?B?SGVsbG8=?= is literal text",
            "long word": "x" * 1990,
            "long words": " ".join(["word%d" % i for i in range(200)]),
            "utf8 long": "é" * 900,
            "spaces": "double  inner   spaces",
            "empty": "",
        }
        refs = {}
        for label, subject in cases.items():
            refs[label] = daemon.submit(mail(subject=subject, test_id=label.replace(" ", "-"),
                                             sender='"Doe, Jane \\\\ \\"Q\\"" <jane@example.org>',
                                             to=["bob@example.net"], reply_to="Héllo Wörld <help@example.org>",
                                             headers={"X-Note": "naïve ✓ " + label}))
        for label, ref in refs.items():
            self.assertEqual(daemon.wait_completed(ref)["failed"], [])
        got = {test_id_of(m): m for m in self.peer.wait_for_messages(len(cases))}
        for label, subject in cases.items():
            with self.subTest(label):
                m = got[label.replace(" ", "-")]
                raw = m["data"].encode("utf-8", "surrogateescape")
                head = raw.partition(b"\r\n\r\n")[0]
                self.assertTrue(all(b < 0x80 for b in head), head[:500])
                self.assertLess(max(len(line) for line in raw.split(b"\r\n")), 998)
                msg = parse_message(m["data"])
                self.assertEqual(header_text(msg["Subject"] or ""), subject)
                self.assertEqual(email.utils.parseaddr(header_text(msg["From"])),
                                 ('Doe, Jane \\ "Q"', "jane@example.org"))
                self.assertEqual(email.utils.parseaddr(header_text(msg["Reply-To"])),
                                 ("Héllo Wörld", "help@example.org"))
                self.assertEqual(header_text(msg["X-Note"]), "naïve ✓ " + label)

    def test_html_and_attachments_make_a_valid_multipart(self):
        daemon = self.start_daemon(**self.relay_env(self.peer))
        pdf = bytes(range(256)) * 40
        ref = daemon.submit(mail(body="plain ✓\n", html="<p>html ✓</p>\n", attachments=[
            {"filename": "report ü.pdf", "content_type": "application/pdf",
             "content": base64.b64encode(pdf).decode()},
            {"filename": "notes.txt", "content": base64.b64encode(b"line\r\n.\r\nend").decode()},
        ]))
        self.assertEqual(daemon.wait_completed(ref)["failed"], [])
        [m] = self.peer.wait_for_messages(1)
        msg = email.message_from_bytes(m["data"].encode("utf-8", "surrogateescape"), policy=email.policy.default)
        self.assertTrue(msg.is_multipart())
        self.assertEqual(msg.defects, [])
        body = msg.get_body(preferencelist=("plain",))
        self.assertEqual(body.get_content().replace("\r\n", "\n"), "plain ✓\n")
        html = msg.get_body(preferencelist=("html",))
        self.assertEqual(html.get_content().replace("\r\n", "\n"), "<p>html ✓</p>\n")
        atts = list(msg.iter_attachments())
        self.assertEqual([a.get_filename() for a in atts], ["report ü.pdf", "notes.txt"])
        self.assertEqual(atts[0].get_content_type(), "application/pdf")
        self.assertEqual(atts[0].get_payload(decode=True), pdf)
        self.assertEqual(atts[1].get_payload(decode=True), b"line\r\n.\r\nend")
        for part in msg.walk():
            self.assertEqual(part.defects, [], part.get_content_type())

    def test_thousand_recipients_are_accepted_and_all_delivered(self):
        daemon = self.start_daemon(**self.relay_env(self.peer, MAX_RECIPIENTS="2000"))
        to = ["to%03d@example.net" % i for i in range(400)]
        cc = ["cc%03d@example.net" % i for i in range(300)]
        bcc = ["bcc%03d@example.net" % i for i in range(300)]
        ref = daemon.submit(mail(to=to, cc=cc, bcc=bcc))
        doc = daemon.wait_completed(ref, timeout=60)
        self.assertEqual(len(doc["recipients"]), 1000)
        self.assertEqual(doc["failed"], [])
        self.assertTrue(all(r["state"] == "delivered" for r in doc["recipients"]))
        got = []
        for m in self.peer.messages():
            got.extend(m["rcpt_tos"])
        self.assertEqual(sorted(got), sorted(to + cc + bcc), "each recipient exactly once")
        for m in self.peer.messages():
            msg = parse_message(m["data"])
            self.assertIsNone(msg["Bcc"])
            self.assertNotIn("bcc000@example.net", m["data"])
            for line in m["data"].split("\r\n"):
                self.assertLess(len(line.encode("utf-8", "surrogateescape")), 998)

    def test_bcc_recipients_get_the_mail_without_a_bcc_header(self):
        daemon = self.start_daemon(**self.relay_env(self.peer))
        ref = daemon.submit(mail(to=["to@example.net"], cc=["Carol <cc@example.net>"],
                                 bcc=["hidden@example.net", "Secret Name <hidden2@example.net>"]))
        doc = daemon.wait_completed(ref)
        self.assertEqual({r["address"]: r["state"] for r in doc["recipients"]},
                         {"to@example.net": "delivered", "cc@example.net": "delivered",
                          "hidden@example.net": "delivered", "hidden2@example.net": "delivered"})
        msgs = self.peer.messages()
        got = sorted(a for m in msgs for a in m["rcpt_tos"])
        self.assertEqual(got, ["cc@example.net", "hidden2@example.net", "hidden@example.net", "to@example.net"])
        for m in msgs:
            msg = parse_message(m["data"])
            self.assertIsNone(msg["Bcc"])
            self.assertNotIn("hidden", m["data"].lower())
            self.assertNotIn("Secret Name", m["data"])
            self.assertEqual(msg["To"], "to@example.net")
            self.assertEqual(msg["Cc"], "Carol <cc@example.net>")

    def test_five_megabyte_body_is_delivered_with_short_lines(self):
        daemon = self.start_daemon(**self.relay_env(self.peer))
        pieces = []
        size = 0
        i = 0
        while size < 5_000_000:
            kind = i % 6
            if kind == 0:
                line = "x" * 20000  # one very long line
            elif kind == 1:
                line = ".starts with a dot, and a lone dot follows"
            elif kind == 2:
                line = "."
            elif kind == 3:
                line = "From the start of a line, %d" % i
            elif kind == 4:
                line = "ünïcödé ✓ " * 150  # long and 8-bit
            else:
                line = "trailing spaces   "
            pieces.append(line)
            size += len(line.encode()) + 1
            i += 1
        body = "\n".join(pieces) + "\n"
        self.assertLess(len(json.dumps(mail(body=body)).encode()), 10 * 1024 * 1024)
        ref = daemon.submit(mail(body=body))
        doc = daemon.wait_completed(ref, timeout=60)
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        [m] = self.peer.wait_for_messages(1)
        raw = m["data"].encode("utf-8", "surrogateescape")
        lines = raw.split(b"\r\n")
        longest = max(len(line) for line in lines)
        self.assertLess(longest, 998)
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""), "bare LF in the message")
        msg = parse_message(m["data"])
        text = msg.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n")
        self.assertEqual(text, body)


if __name__ == "__main__":
    unittest.main()
