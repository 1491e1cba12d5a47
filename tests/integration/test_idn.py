"""Internationalised domains (issue 8) in relay mode, against the real websmtpd and aiosmtpd
peers: a domain in U-labels is accepted at submit when it is valid IDNA2008, and goes out as
its A-labels in MAIL FROM, RCPT TO and the From/To/Cc/Reply-To headers, so that a relay without
SMTPUTF8 takes it; an address with a UTF-8 local part still needs SMTPUTF8 and keeps its domain
as given in the header (an RFC 6532 header). The status shows each address as the client gave
it. DKIM signs as the A-label domain, over the bytes sent. An invalid IDN gets 400
invalid_address naming the field. Direct delivery (MX lookup of the A-label) is in
test_mx_dnsmasq.py.
"""

import json
import shutil
import tempfile
import unittest

from harness import IntegrationTestCase, PeerProcess, mail, new_test_id, parse_message
from test_dkim import NO_DKIM, Dns, keygen
from test_mx import by_address

import dkim  # Debian's python3-dkim (dkimpy)

ALABEL = "xn--bcher-kva.example"  # bücher.example


class IdnRelayTest(IntegrationTestCase):

    def relay(self, smtputf8=True, **env):
        peer = PeerProcess(smtputf8=smtputf8)
        self.addCleanup(peer.stop)
        e = dict(NO_DKIM)
        e.update(env)
        return peer, self.start_daemon(**self.relay_env(peer, **e))

    def head_of(self, record):
        """The header section as sent, bytes."""
        return record["data"].encode("utf-8", "surrogateescape").split(b"\r\n\r\n", 1)[0]

    def test_u_label_domains_go_out_as_a_labels_to_a_relay_without_smtputf8(self):
        peer, daemon = self.relay(smtputf8=False)
        doc = daemon.wait_completed(daemon.submit(mail(
            sender="Anna Müller <anna@bücher.example>", to=["user@bücher.example", "bob@example.net"],
            cc=["Carol <carol@Straße.de>"], bcc=["hidden@BÜCHER.example"], reply_to="help@bücher.example")))
        r = by_address(doc)
        self.assertEqual(sorted(r), ["bob@example.net", "carol@Straße.de", "hidden@BÜCHER.example",
                                     "user@bücher.example"], "the status shows the addresses as given")
        for rcpt in doc["recipients"]:
            self.assertEqual(rcpt["state"], "delivered", rcpt)
        [m] = peer.messages()
        self.assertEqual(m["mail_from"], "anna@" + ALABEL)
        self.assertEqual(sorted(m["rcpt_tos"]), ["bob@example.net", "carol@xn--strae-oqa.de",
                                                 "hidden@" + ALABEL, "user@" + ALABEL])
        self.assertNotIn("SMTPUTF8", m["mail_options"])
        head = self.head_of(m).decode("ascii")  # an ASCII header, or this raises
        msg = parse_message(m["data"])
        self.assertEqual(msg["To"], "user@%s, bob@example.net" % ALABEL, head)
        self.assertEqual(msg["Cc"], "Carol <carol@xn--strae-oqa.de>", head)
        self.assertEqual(msg["Reply-To"], "help@" + ALABEL, head)
        self.assertTrue(msg["From"].endswith(" <anna@%s>" % ALABEL), head)
        self.assertTrue(msg["Message-ID"].endswith("@%s>" % ALABEL), head)
        self.assertNotIn("hidden", head)

    def test_utf8_local_part_with_a_u_label_domain_needs_smtputf8_and_keeps_its_header_form(self):
        peer, daemon = self.relay(smtputf8=True)
        doc = daemon.wait_completed(daemon.submit(mail(to=["jürgen@bücher.example", "user@bücher.example"])))
        for rcpt in doc["recipients"]:
            self.assertEqual(rcpt["state"], "delivered", rcpt)
        self.assertEqual(sorted(by_address(doc)), ["jürgen@bücher.example", "user@bücher.example"])
        [m] = peer.messages()
        self.assertIn("SMTPUTF8", m["mail_options"])  # for the local part: the domain is an A-label
        self.assertEqual(sorted(m["rcpt_tos"]), ["jürgen@" + ALABEL, "user@" + ALABEL])
        self.assertIn("To: jürgen@bücher.example, user@%s\r\n" % ALABEL, self.head_of(m).decode("utf-8"))

        # Without SMTPUTF8 at the relay only the UTF-8 local part fails; the U-label domain alone goes.
        peer, daemon = self.relay(smtputf8=False)
        doc = daemon.wait_completed(daemon.submit(mail(to=["jürgen@bücher.example", "user@bücher.example"])))
        r = by_address(doc)
        self.assertEqual((r["jürgen@bücher.example"]["state"], r["jürgen@bücher.example"]["reason"]),
                         ("failed", "smtputf8_required"), r)
        self.assertEqual(r["user@bücher.example"]["state"], "delivered", r)
        self.assertEqual([a for m in peer.messages() for a in m["rcpt_tos"]], ["user@" + ALABEL])

    def test_invalid_internationalised_domains_are_refused_naming_the_field(self):
        peer, daemon = self.relay()
        bad = ["u@\u2603.example",              # U+2603 is DISALLOWED in IDNA2008
               "u@" + "ü" * 60 + ".example",     # a label over 63 octets once encoded
               "u@-bücher.example",              # a leading hyphen
               "u@a_b.bücher.example"]           # the A-label form is no host name
        for address in bad:
            for payload, field in ((mail(to=["ok@example.net", address]), "to[1]"),
                                   (mail(cc=[address]), "cc[0]"),
                                   (mail(bcc=["ok@example.net", address]), "bcc[1]"),
                                   (mail(sender="Anna <%s>" % address), "from"),
                                   (mail(reply_to=address), "reply_to")):
                with self.subTest(address=address, field=field):
                    doc = self.assertJsonError(daemon.post_send(payload), 400, "invalid_address", field)
                    self.assertIn("IDNA2008" if "a_b" not in address else "A-label", doc["error"])
        r = daemon.request("POST", "/mail/batch", json.dumps({"jobs": [mail(), mail(to=["u@\u2603.example"])]}).encode(),
                           {"Content-Type": "application/json"})
        self.assertJsonError(r, 400, "invalid_address", "jobs[1].to[0]")
        self.assertEqual(daemon.queue()["submitted_total"], 0)
        self.assertEqual(peer.messages(), [])

    def test_dkim_signs_as_the_a_label_domain_over_the_bytes_sent(self):
        keys = tempfile.mkdtemp(prefix="websmtp-dkim.")
        self.addCleanup(shutil.rmtree, keys, ignore_errors=True)
        r = keygen("--domain", ALABEL, "--selector", "s1", "--dir", keys, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        key = json.loads(r.stdout)
        dns = Dns()
        dns.add(key["name"], "".join(key["strings"]))
        peer, daemon = self.relay(smtputf8=False, DKIM_KEYS_DIR=keys)
        test_id = new_test_id()
        daemon.wait_completed(daemon.submit(mail(sender="Anna <anna@BÜCHER.example>", to=["user@bücher.example"],
                                                 test_id=test_id)))
        [m] = peer.messages()
        raw = m["data"].encode("utf-8", "surrogateescape")
        msg = parse_message(m["data"])
        self.assertEqual(msg["From"], "Anna <anna@%s>" % ALABEL)
        tags = dict(t.strip().split("=", 1) for t in "".join(msg["DKIM-Signature"].split()).split(";") if t)
        self.assertEqual((tags["d"], tags["s"]), (ALABEL, "s1"))
        self.assertTrue(dkim.DKIM(raw).verify(dnsfunc=dns), "dkimpy verifies the message as received")
        self.assertEqual([n.rstrip(".") for n in dns.asked], ["s1._domainkey." + ALABEL])


if __name__ == "__main__":
    unittest.main()
