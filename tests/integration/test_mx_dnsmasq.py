"""Direct delivery (DELIVERY=mx) with dnsmasq as the DNS server (issue 8): a real, independent
DNS implementation answers websmtpd's MX and A questions, for every case dnsmasq can express:
MX preference, the next MX when the preferred is down or defers, an implicit MX (an A record
and no MX), NXDOMAIN (a name under a --local domain that dnsmasq does not know) and an
internationalised domain, looked up and sent as its A-labels. A null MX,
SERVFAIL and silence stay with tests/support/dns_server.py (test_mx.py).

dnsmasq (tests/support/dnsmasq.py) runs as the test's child on 127.0.0.1:<free port>; the SMTP
peers are aiosmtpd on 127.0.0.2 and 127.0.0.3, one port; 127.0.0.4 has nothing listening.
"""

import os
import unittest

from harness import IntegrationTestCase, mail, parse_message
from dnsmasq import DNSMASQ, Dnsmasq
from test_mx import MxPeers, by_address


@unittest.skipUnless(os.access(DNSMASQ, os.X_OK), "dnsmasq (Debian package dnsmasq-base) is not installed")
class MxDnsmasqTest(MxPeers, IntegrationTestCase):

    def dnsmasq(self, **records):
        server = Dnsmasq(local=["example.net", "test"], **records)
        self.addCleanup(server.cleanup)
        return server

    def test_preferred_mx_takes_all_recipients_of_a_domain_in_one_transaction(self):
        port, (mx1, mx2) = self.start_peers("127.0.0.2", "127.0.0.3")
        dns = self.dnsmasq(mx=[("example.net", "mx2.example.net", 20), ("example.net", "mx1.example.net", 10)],
                           hosts={"mx1.example.net": "127.0.0.2", "mx2.example.net": "127.0.0.3"})
        daemon = self.mx_daemon(dns, port)
        self.check_preferred_mx_takes_the_domain(daemon, mx1, mx2)
        # A second job: the answers (TTL 300 s) come from websmtpd's cache, not from dnsmasq.
        daemon.wait_completed(daemon.submit(mail(to=["erin@example.net"])))
        self.assertEqual(dns.queries("example.net", "MX"), 1, dns.log_text()[-2000:])
        self.assertEqual(dns.queries("mx1.example.net", "A"), 1)

    def test_next_mx_when_the_preferred_is_down_or_defers(self):
        port, (mx_defer, mx_ok) = self.start_peers(("127.0.0.2", {"fault": "421"}), "127.0.0.3")
        dns = self.dnsmasq(mx=[("down.test", "dead.down.test", 5), ("down.test", "ok.down.test", 10),
                               ("defers.test", "busy.defers.test", 5), ("defers.test", "ok.down.test", 10)],
                           hosts={"dead.down.test": "127.0.0.4", "busy.defers.test": "127.0.0.2",
                                  "ok.down.test": "127.0.0.3"})
        daemon = self.mx_daemon(dns, port)
        doc = daemon.wait_completed(daemon.submit(mail(to=["a@down.test", "b@defers.test"])))
        r = by_address(doc)
        for address in ("a@down.test", "b@defers.test"):
            self.assertEqual((r[address]["state"], r[address]["host"]), ("delivered", "ok.down.test"), r[address])
        self.assertEqual(sorted(a for m in mx_ok.messages() for a in m["rcpt_tos"]), ["a@down.test", "b@defers.test"])
        self.assertEqual(mx_defer.messages(), [])

    def test_implicit_mx_and_nxdomain(self):
        port, (peer,) = self.start_peers("127.0.0.2")
        dns = self.dnsmasq(hosts={"implicit.test": "127.0.0.2"})
        daemon = self.mx_daemon(dns, port)
        doc = self.first_attempt(daemon, daemon.submit(mail(to=["i@implicit.test", "x@nowhere.test"])))
        r = by_address(doc)
        self.assertEqual((r["i@implicit.test"]["state"], r["i@implicit.test"]["host"]),
                         ("delivered", "implicit.test"), r)
        self.assertEqual((r["x@nowhere.test"]["state"], r["x@nowhere.test"]["reason"]),
                         ("failed", "no_such_domain"), r)
        self.assertEqual(doc["failed"], ["x@nowhere.test"])
        self.assertEqual([a for m in peer.messages() for a in m["rcpt_tos"]], ["i@implicit.test"])
        self.assertGreaterEqual(dns.queries("nowhere.test", "MX"), 1, "dnsmasq was asked, and said NXDOMAIN")

    def test_smtputf8_through_dnsmasq(self):
        port, (peer,) = self.start_peers(("127.0.0.2", {"smtputf8": False}))
        dns = self.dnsmasq(mx=[("example.net", "mx.example.net", 10)], hosts={"mx.example.net": "127.0.0.2"})
        daemon = self.mx_daemon(dns, port)
        doc = daemon.wait_completed(daemon.submit(mail(to=["zoë@example.net", "zoe@example.net"])))
        r = by_address(doc)
        self.assertEqual((r["zoë@example.net"]["state"], r["zoë@example.net"]["reason"]),
                         ("failed", "smtputf8_required"))
        self.assertEqual(r["zoe@example.net"]["state"], "delivered")
        self.assertEqual([a for m in peer.messages() for a in m["rcpt_tos"]], ["zoe@example.net"])

    def test_internationalised_domain_goes_to_the_mx_of_its_a_labels(self):
        """user@bücher.example: the MX question is for xn--bcher-kva.example, RCPT TO and MAIL FROM
        carry the A-labels, the headers stay ASCII, so a peer without SMTPUTF8 takes it; the
        status shows each address as the client gave it."""
        port, (peer,) = self.start_peers(("127.0.0.2", {"smtputf8": False}))
        dns = Dnsmasq(local=["xn--bcher-kva.example", "test"],
                      mx=[("xn--bcher-kva.example", "mx.xn--bcher-kva.example", 10)],
                      hosts={"mx.xn--bcher-kva.example": "127.0.0.2"})
        self.addCleanup(dns.cleanup)
        daemon = self.mx_daemon(dns, port)
        to = ["user@bücher.example", "Carol <carol@BÜCHER.example>"]
        doc = daemon.wait_completed(daemon.submit(mail(sender="Anna <anna@bücher.example>", to=to,
                                                       reply_to="help@bücher.example")))
        r = by_address(doc)
        self.assertEqual(sorted(r), ["carol@BÜCHER.example", "user@bücher.example"], "as given")
        for rcpt in doc["recipients"]:
            self.assertEqual((rcpt["state"], rcpt["host"]), ("delivered", "mx.xn--bcher-kva.example"), rcpt)
        [m] = peer.messages()
        self.assertEqual(m["mail_from"], "anna@xn--bcher-kva.example")
        self.assertEqual(sorted(m["rcpt_tos"]), ["carol@xn--bcher-kva.example", "user@xn--bcher-kva.example"])
        self.assertNotIn("SMTPUTF8", m["mail_options"])
        raw = m["data"].encode("utf-8", "surrogateescape")
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")  # ASCII, or this raises
        msg = parse_message(m["data"])
        self.assertEqual(msg["From"], "Anna <anna@xn--bcher-kva.example>", head)
        self.assertEqual(msg["To"], "user@xn--bcher-kva.example, Carol <carol@xn--bcher-kva.example>", head)
        self.assertEqual(msg["Reply-To"], "help@xn--bcher-kva.example", head)
        # A second job, the domain spelt otherwise: the resolver's cache holds it by its A-labels.
        daemon.wait_completed(daemon.submit(mail(to=["erin@Bücher.Example"])))
        self.assertEqual([a for m in peer.messages() for a in m["rcpt_tos"]][-1], "erin@xn--bcher-kva.example")
        self.assertEqual(dns.queries("xn--bcher-kva.example", "MX"), 1, dns.log_text()[-2000:])
        self.assertEqual(dns.queries("mx.xn--bcher-kva.example", "A"), 1)


if __name__ == "__main__":
    unittest.main()
