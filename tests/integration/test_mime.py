"""Rich messages (issue 8, item 4): text + html + inline parts (content_id) + attachments go
through websmtpd to the aiosmtpd peer, and Python's email package (policy=default, the way a
modern mail client reads MIME) finds the structure, the cid: references, every byte and every
file name as they were sent."""

import base64
import email
import email.policy
import re

from harness import SharedDaemonTestCase, mail, messages_by_test_id, new_test_id, wait_until

EVERY_BYTE = bytes(range(256))

# 1x1 PNG (what an inline logo is), then every byte value so base64 has to carry them all.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

LONG_NAME = "Quartalsübersicht für die Geschäftsführung – Zusammenfassung aller Änderungen 2025 (endgültig) " \
    "日本語のファイル名.xlsx"
ASCII_LONG_NAME = "a-very-long-but-plain-ascii-file-name-that-does-not-fit-on-one-header-line-" * 3 + "end.txt"


def b64(data):
    return base64.b64encode(data).decode("ascii")


def attachment(filename, content, content_type="application/octet-stream", content_id=None):
    a = {"filename": filename, "content_type": content_type, "content": b64(content)}
    if content_id is not None:
        a["content_id"] = content_id
    return a


def lf(text):
    return text.replace("\r\n", "\n")


class RichMessageTest(SharedDaemonTestCase):

    def deliver(self, **fields):
        """Submits a job, waits for it at the peer; returns (raw bytes, EmailMessage)."""
        test_id = new_test_id()
        ref = self.daemon.submit(mail(test_id=test_id, **fields))
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(doc["failed"], [], doc)
        record = wait_until(lambda: (messages_by_test_id(self.peer).get(test_id) or [None])[0], 20,
                            what="the message at the peer")
        raw = record["data"].encode("utf-8", "surrogateescape")
        return raw, email.message_from_bytes(raw, policy=email.policy.default)

    def assertSevenBit(self, raw):
        # build_message() writes 7-bit only: any relay takes it, with or without 8BITMIME.
        self.assertTrue(all(b < 0x80 for b in raw), "8-bit byte in the message")
        self.assertTrue(all(len(line) <= 998 for line in raw.split(b"\r\n")))

    def test_text_html_inline_parts_and_attachments(self):
        subject = "Grüße aus Köln – Bericht 🎉 " + "ü" * 40
        text = "Hallo,\nder Bericht hängt an.\n"
        html = ('<p>Hallo, <img src="cid:logo" alt="logo"> und '
                '<img src="cid:chart.2025@example.org" alt="chart"></p>\n')
        inline_logo = PNG + EVERY_BYTE
        inline_chart = EVERY_BYTE[::-1] * 3
        sent = [
            attachment("report.pdf", b"%PDF-1.4\n" + EVERY_BYTE * 4, "application/pdf"),
            attachment("logo.png", inline_logo, "image/png", content_id="logo"),
            attachment("données été.bin", EVERY_BYTE),
            attachment("chart ä.png", inline_chart, "image/png", content_id="chart.2025@example.org"),
            attachment(LONG_NAME, EVERY_BYTE * 2, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            attachment(ASCII_LONG_NAME, b"plain\r\ntext\n", "text/plain"),
            attachment("empty.bin", b""),
        ]
        raw, msg = self.deliver(subject=subject, body=text, html=html, attachments=sent)
        self.assertSevenBit(raw)
        self.assertEqual(msg["Subject"], subject)

        # mixed( alternative( plain, related( html, logo, chart ) ), the regular attachments in order )
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        top = list(msg.iter_parts())
        self.assertEqual(len(top), 1 + 5)
        alternative = top[0]
        self.assertEqual(alternative.get_content_type(), "multipart/alternative")
        plain, related = list(alternative.iter_parts())
        self.assertEqual(plain.get_content_type(), "text/plain")
        self.assertEqual(lf(plain.get_content()), text)
        self.assertEqual(related.get_content_type(), "multipart/related")
        self.assertEqual(related.get_param("type"), "text/html")
        html_part, *inline = list(related.iter_parts())
        self.assertEqual(html_part.get_content_type(), "text/html")
        self.assertEqual(lf(html_part.get_content()), html)
        self.assertEqual(len(inline), 2)

        # Each cid: in the html names exactly one inline part's Content-ID.
        cids = re.findall(r'src="cid:([^"]+)"', html_part.get_content())
        by_cid = {p["Content-ID"].strip()[1:-1]: p for p in inline}
        self.assertEqual(sorted(cids), sorted(by_cid))
        for part, expected in ((by_cid["logo"], sent[1]), (by_cid["chart.2025@example.org"], sent[3])):
            self.assertEqual(part.get_content_disposition(), "inline")
            self.assertEqual(part.get_content_type(), expected["content_type"])
            self.assertEqual(part.get_filename(), expected["filename"])
            self.assertEqual(part.get_payload(decode=True), base64.b64decode(expected["content"]))

        # A client's view: the html body is the one inside multipart/related, and the
        # attachments are the regular ones, not the inline parts.
        self.assertIs(msg.get_body(preferencelist=("related",)), related)
        self.assertEqual(lf(msg.get_body(preferencelist=("html",)).get_content()), html)
        self.assertEqual(lf(msg.get_body(preferencelist=("plain",)).get_content()), text)
        regular = [a for a in sent if "content_id" not in a]
        got = list(msg.iter_attachments())
        self.assertEqual([p.get_filename() for p in got], [a["filename"] for a in regular])
        for part, expected in zip(got, regular):
            self.assertEqual(part.get_content_disposition(), "attachment")
            self.assertEqual(part.get_content_type(), expected["content_type"])
            self.assertIsNone(part["Content-ID"])
            self.assertEqual(part.get_payload(decode=True), base64.b64decode(expected["content"]),
                             expected["filename"])

        # The encodings themselves: RFC 2231 filename* (with continuations for the long name)
        # for new clients, an RFC 2047 name= for old ones.
        raw_text = raw.decode("ascii")
        self.assertIn("filename*=UTF-8''donn%C3%A9es%20%C3%A9t%C3%A9.bin", raw_text)
        self.assertRegex(raw_text, r"filename\*0\*=UTF-8''Quartals%C3%BCbersicht")
        self.assertRegex(raw_text, r"filename\*1\*=")
        self.assertRegex(raw_text, r'name="=\?UTF-8\?B\?')
        for p in got:
            self.assertEqual(p.get_param("name", header="content-type"), p.get_filename())

    def test_html_with_inline_parts_only_is_multipart_related(self):
        html = '<p><img src="cid:logo"></p>'
        raw, msg = self.deliver(body=None, html=html,
                                attachments=[attachment("Лого.png", PNG, "image/png", content_id="logo")])
        self.assertSevenBit(raw)
        self.assertEqual(msg.get_content_type(), "multipart/related")
        html_part, logo = list(msg.iter_parts())
        self.assertEqual(lf(html_part.get_content()), html)
        self.assertEqual(logo["Content-ID"], "<logo>")
        self.assertEqual(logo.get_content_disposition(), "inline")
        self.assertEqual(logo.get_filename(), "Лого.png")
        self.assertEqual(logo.get_payload(decode=True), PNG)
        self.assertIs(msg.get_body(preferencelist=("html",)), html_part)

    def test_text_and_html_with_inline_parts_need_no_mixed(self):
        raw, msg = self.deliver(body="see the logo", html='<img src="cid:logo">',
                                attachments=[attachment("logo.png", PNG, "image/png", content_id="logo")])
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        plain, related = list(msg.iter_parts())
        self.assertEqual(related.get_content_type(), "multipart/related")
        self.assertEqual([p.get_content_type() for p in related.iter_parts()], ["text/html", "image/png"])

    def test_text_with_attachment_with_non_ascii_name(self):
        raw, msg = self.deliver(attachments=[attachment("résumé – 履歴書.pdf", EVERY_BYTE, "application/pdf")])
        self.assertSevenBit(raw)
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        [part] = list(msg.iter_attachments())
        self.assertEqual(part.get_filename(), "résumé – 履歴書.pdf")
        self.assertEqual(part.get_payload(decode=True), EVERY_BYTE)

    def test_message_rfc822_attachment_is_never_base64(self):
        """RFC 2046 5.2.1: a forwarded message goes 7bit (8bit when it holds UTF-8), its line ends
        made CRLF, and the reader finds it as an attached message."""
        inner = b"From: x@example.com\nSubject: inner\n\nforwarded body\n"
        raw, msg = self.deliver(attachments=[attachment("fwd.eml", inner, "message/rfc822")])
        self.assertSevenBit(raw)
        [part] = list(msg.iter_attachments())
        self.assertEqual(part.get_content_type(), "message/rfc822")
        self.assertEqual(part["Content-Transfer-Encoding"], "7bit")
        self.assertIn(inner.replace(b"\n", b"\r\n"), raw, "sent as it is, with CRLF line ends")
        self.assertEqual(part.get_content()["Subject"], "inner")
        utf8 = "Subject: Grüße\r\n\r\nKöln\r\n".encode("utf-8")
        raw, msg = self.deliver(attachments=[attachment("utf8.eml", utf8, "message/rfc822")])
        [part] = list(msg.iter_attachments())
        self.assertEqual(part["Content-Transfer-Encoding"], "8bit")
        self.assertIn(utf8, raw)

    def test_content_type_parameters_are_accepted_and_the_filename_names_the_part(self):
        raw, msg = self.deliver(attachments=[attachment("a.txt", b"hello", "Text/Plain; charset=utf-8; name=evil.exe")])
        [part] = list(msg.iter_attachments())
        self.assertEqual((part.get_content_type(), part.get_param("charset"), part.get_filename()),
                         ("text/plain", "utf-8", "a.txt"))
        self.assertNotIn(b"evil", raw)
        self.assertEqual(part.get_payload(decode=True), b"hello")

    def test_attachment_content_types_that_cannot_be_sent_are_refused_naming_the_field(self):
        field = "attachments[0].content_type"
        for content_type, content in (("multipart/mixed", b"x"), ("garbage", b"x"), ("text/plain; charset", b"x"),
                                      ("text/plain\r\nX-Evil: 1", b"x"), ("message/rfc822", b"a\0b"),
                                      ("message/rfc822", b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n")):
            with self.subTest(content_type=content_type, size=len(content)):
                doc = self.assertJsonError(
                    self.daemon.post_send(mail(attachments=[attachment("m.eml", content, content_type)])),
                    400, "invalid_attachment", field)
                self.assertIn("content_type" if "rfc822" not in content_type else "message/rfc822", doc["error"])

    def test_content_id_errors_name_the_field(self):
        html = '<img src="cid:logo">'
        cases = [
            # (attachments, html, field)
            ([attachment("a.png", PNG, content_id="logo")], None, "attachments[0].content_id"),
            ([attachment("a.png", PNG, content_id="logo"), attachment("b.png", PNG, content_id="LOGO")], html,
             "attachments[1].content_id"),
            ([attachment("a.png", PNG, content_id="<logo>")], html, "attachments[0].content_id"),
            ([attachment("a.png", PNG), attachment("b.png", PNG, content_id="")], html, "attachments[1].content_id"),
            ([attachment("a.png", PNG, content_id="a b")], html, "attachments[0].content_id"),
            ([attachment("a.png", PNG, content_id="x" * 129)], html, "attachments[0].content_id"),
        ]
        for attachments, job_html, field in cases:
            with self.subTest(field=field, attachments=[a.get("content_id") for a in attachments]):
                req = mail(attachments=attachments)
                if job_html is not None:
                    req["html"] = job_html
                doc = self.assertJsonError(self.daemon.post_send(req), 400, "invalid_attachment", field)
                self.assertIn("content_id", doc["error"])
        injected = mail(html=html, attachments=[attachment("a.png", PNG, content_id="logo>\r\nBcc: x@example.com")])
        self.assertJsonError(self.daemon.post_send(injected), 400, "header_injection", "attachments[0].content_id")
