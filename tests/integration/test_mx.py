"""Direct delivery (DELIVERY=mx) against a real DNS server and real SMTP peers.

The DNS server is tests/support/dns_server.py (in this process, 127.0.0.1:<ephemeral>), given
to websmtpd as DNS_SERVER; its MX records point at aiosmtpd peers on 127.0.0.2 and 127.0.0.3
(loopback too), all on one port, which is SMTP_PORT. 127.0.0.4 has nothing listening on it:
an MX host that is down.
"""

import os
import subprocess
import unittest

from harness import IntegrationTestCase, PeerProcess, mail, new_test_id, test_id_of, wait_until
from dns_server import DnsServer

HERE = os.path.dirname(os.path.abspath(__file__))
TLS_PEER = os.path.join(HERE, "..", "support", "tls_auth_peer.py")


def by_address(doc):
    return {r["address"]: r for r in doc["recipients"]}


class MxPeers:
    """Peers on several loopback addresses sharing one port, and a websmtpd that sends to them
    (a mixin for IntegrationTestCase; test_mx_dnsmasq.py uses it too)."""

    def start_peers(self, *hosts):
        """aiosmtpd peers on `hosts`, all on one port (the first one's ephemeral port). A host may
        be given as (host, {PeerProcess options}), e.g. ("127.0.0.3", {"smtputf8": False})."""
        specs = [h if isinstance(h, tuple) else (h, {}) for h in hosts]
        for _ in range(5):
            peers = []
            try:
                for host, options in specs:
                    peers.append(PeerProcess(host=host, port=peers[0].port if peers else 0, **options))
            except Exception:  # the port was taken on another address: pick another
                for p in peers:
                    p.stop()
                continue
            for p in peers:
                self.addCleanup(p.stop)
            return peers[0].port, peers
        raise AssertionError("no common port for the peers")

    def mx_daemon(self, dns, port, **env):
        e = {"DELIVERY": "mx", "DNS_SERVER": dns.address, "SMTP_PORT": port, "MX_TLS": "none",
             "RETRY_MIN": "60s", "RETRY_MAX": "60s"}
        e.update(env)
        return self.start_daemon(**e)

    def check_preferred_mx_takes_the_domain(self, daemon, mx1, mx2):
        """example.net has MX 10 mx1.example.net (peer mx1) and MX 20 mx2.example.net (mx2): its
        three recipients go to mx1 in one transaction."""
        test_id = new_test_id()
        ref = daemon.submit(mail(to=["bob@example.net", "carol@EXAMPLE.net"], cc=["dave@example.net"],
                                 test_id=test_id))
        doc = daemon.wait_completed(ref)
        for r in doc["recipients"]:
            self.assertEqual((r["state"], r["smtp_code"], r["host"], r["tls"]),
                             ("delivered", 250, "mx1.example.net", False), r)
        [m] = [m for m in mx1.wait_for_messages(1) if test_id_of(m) == test_id]
        self.assertEqual(sorted(m["rcpt_tos"]), ["bob@example.net", "carol@example.net", "dave@example.net"])
        self.assertEqual(mx2.messages(), [])

    def first_attempt(self, daemon, ref):
        return daemon.wait_status(ref, lambda d: all(r["attempts"] >= 1 for r in d["recipients"]),
                                  what="a first attempt for everyone")


class MxDeliveryTest(MxPeers, IntegrationTestCase):

    def dns(self, zone, ttl=300):
        server = DnsServer(zone, ttl=ttl)
        self.addCleanup(server.stop)
        return server

    def test_preferred_mx_takes_all_recipients_of_a_domain_in_one_transaction(self):
        port, (mx1, mx2) = self.start_peers("127.0.0.2", "127.0.0.3")
        dns = self.dns({
            "example.net": {"MX": [(20, "mx2.example.net"), (10, "mx1.example.net")]},
            "mx1.example.net": {"A": ["127.0.0.2"]},
            "mx2.example.net": {"A": ["127.0.0.3"]},
        })
        self.check_preferred_mx_takes_the_domain(self.mx_daemon(dns, port), mx1, mx2)

    def test_next_mx_when_the_preferred_is_down_or_defers(self):
        port, (mx_defer, mx_ok) = self.start_peers("127.0.0.2", "127.0.0.3")
        mx_defer.set_fault("421")
        dns = self.dns({
            "down.example": {"MX": [(5, "dead.down.example"), (10, "ok.down.example")]},
            "defers.example": {"MX": [(5, "busy.defers.example"), (10, "ok.down.example")]},
            "dead.down.example": {"A": ["127.0.0.4"]},
            "busy.defers.example": {"A": ["127.0.0.2"]},
            "ok.down.example": {"A": ["127.0.0.3"]},
        })
        daemon = self.mx_daemon(dns, port)
        ref = daemon.submit(mail(to=["a@down.example", "b@defers.example"]))
        doc = daemon.wait_completed(ref)
        r = by_address(doc)
        self.assertEqual((r["a@down.example"]["state"], r["a@down.example"]["host"]), ("delivered", "ok.down.example"))
        self.assertEqual((r["b@defers.example"]["state"], r["b@defers.example"]["host"]),
                         ("delivered", "ok.down.example"))
        self.assertEqual(sorted(a for m in mx_ok.messages() for a in m["rcpt_tos"]),
                         ["a@down.example", "b@defers.example"])

    def test_implicit_mx_null_mx_nxdomain_and_servfail(self):
        port, (peer,) = self.start_peers("127.0.0.2")
        dns = self.dns({
            "implicit.example": {"A": ["127.0.0.2"]},
            "nullmx.example": {"MX": [(0, "")]},
            "broken.example": {"SERVFAIL": True},
        })
        daemon = self.mx_daemon(dns, port)
        ref = daemon.submit(mail(to=["i@implicit.example", "n@nullmx.example", "x@nowhere.example",
                                     "s@broken.example"]))
        doc = self.first_attempt(daemon, ref)
        r = by_address(doc)
        self.assertEqual((r["i@implicit.example"]["state"], r["i@implicit.example"]["host"]),
                         ("delivered", "implicit.example"))
        self.assertEqual((r["n@nullmx.example"]["state"], r["n@nullmx.example"]["reason"]), ("failed", "null_mx"))
        self.assertEqual((r["x@nowhere.example"]["state"], r["x@nowhere.example"]["reason"]),
                         ("failed", "no_such_domain"))
        self.assertEqual(r["s@broken.example"]["state"], "deferred")
        self.assertNotIn("reason", r["s@broken.example"])
        self.assertEqual(sorted(doc["failed"]), ["n@nullmx.example", "x@nowhere.example"])
        self.assertEqual([a for m in peer.messages() for a in m["rcpt_tos"]], ["i@implicit.example"])

    def test_sessions_are_reused_across_jobs_and_answers_cached(self):
        port, (peer,) = self.start_peers("127.0.0.2")
        dns = self.dns({"example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.2"]}})
        daemon = self.mx_daemon(dns, port)
        for _ in range(3):
            daemon.wait_completed(daemon.submit(mail(to=["bob@example.net"])))
        self.assertEqual(len(peer.messages()), 3)
        daemon.stop()  # the log is complete once the daemon has exited
        log = daemon.log_text()
        self.assertEqual(log.count("over a new session"), 1, log[-3000:])
        self.assertEqual(log.count("over a kept session"), 2)
        self.assertEqual(dns.count("example.net", "MX"), 1, dns.queries)  # TTL 300 s: cached
        self.assertEqual(dns.count("mx.example.net", "A"), 1, dns.queries)

    def test_require_tls_defers_a_host_without_starttls(self):
        port, (peer,) = self.start_peers("127.0.0.2")
        dns = self.dns({"example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.2"]}})
        daemon = self.mx_daemon(dns, port, MX_TLS="require")
        ref = daemon.submit(mail(to=["bob@example.net"]))
        doc = self.first_attempt(daemon, ref)
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "deferred")
        self.assertIn("MX_TLS=require", rcpt["smtp_reply"])
        self.assertEqual(peer.messages(), [])

    def test_utf8_local_part_only_to_a_peer_that_offers_smtputf8(self):
        port, (utf8_peer, ascii_peer) = self.start_peers("127.0.0.2", ("127.0.0.3", {"smtputf8": False}))
        dns = self.dns({
            "utf8.example": {"MX": [(10, "mx.utf8.example")]},
            "mx.utf8.example": {"A": ["127.0.0.2"]},
            "ascii.example": {"MX": [(10, "mx.ascii.example")]},
            "mx.ascii.example": {"A": ["127.0.0.3"]},
        })
        daemon = self.mx_daemon(dns, port)
        # The UTF-8 addresses in Bcc: in no header, so the per-recipient rule holds.
        ref = daemon.submit(mail(to=["bob@ascii.example"], bcc=["jürgen@utf8.example", "jürgen@ascii.example"]))
        doc = daemon.wait_completed(ref)
        r = by_address(doc)
        self.assertEqual((r["jürgen@utf8.example"]["state"], r["jürgen@utf8.example"]["host"]),
                         ("delivered", "mx.utf8.example"), r)
        unsent = r["jürgen@ascii.example"]
        self.assertEqual((unsent["state"], unsent["reason"], unsent["host"]),
                         ("failed", "smtputf8_required", "mx.ascii.example"), unsent)
        self.assertIn("SMTPUTF8", unsent["smtp_reply"])
        self.assertEqual(r["bob@ascii.example"]["state"], "delivered", r)
        self.assertEqual(doc["failed"], ["jürgen@ascii.example"])
        [m] = utf8_peer.messages()
        self.assertEqual(m["rcpt_tos"], ["jürgen@utf8.example"])
        self.assertIn("SMTPUTF8", m["mail_options"])
        [m] = ascii_peer.messages()
        self.assertEqual(m["rcpt_tos"], ["bob@ascii.example"], "the ASCII recipient of the same job still goes")
        self.assertNotIn("SMTPUTF8", m["mail_options"])
        self.assertNotIn("jürgen@ascii.example", [e["address"] for e in ascii_peer.rcpt_events()])

    def test_utf8_address_in_a_header_fails_every_recipient_of_a_peer_without_smtputf8(self):
        """jürgen@ in To puts raw UTF-8 in the signed header section: a peer without SMTPUTF8
        gets no transaction at all (as Postfix does); ascii@ fails with it."""
        port, (utf8_peer, ascii_peer) = self.start_peers("127.0.0.2", ("127.0.0.3", {"smtputf8": False}))
        dns = self.dns({"utf8.example": {"MX": [(10, "mx.utf8.example")]}, "mx.utf8.example": {"A": ["127.0.0.2"]},
                        "plain.example": {"MX": [(10, "mx.plain.example")]}, "mx.plain.example": {"A": ["127.0.0.3"]}})
        daemon = self.mx_daemon(dns, port)
        doc = daemon.wait_completed(daemon.submit(mail(to=["jürgen@plain.example", "ascii@plain.example"],
                                                       cc=["carol@utf8.example"])))
        r = by_address(doc)
        for address in ("jürgen@plain.example", "ascii@plain.example"):
            self.assertEqual((r[address]["state"], r[address]["reason"], r[address]["host"]),
                             ("failed", "smtputf8_required", "mx.plain.example"), r)
        self.assertIn("headers", r["ascii@plain.example"]["smtp_reply"])
        self.assertEqual(r["carol@utf8.example"]["state"], "delivered", r)
        self.assertEqual(ascii_peer.messages(), [])
        self.assertEqual(ascii_peer.rcpt_events(), [], "no MAIL FROM, no RCPT TO")
        [m] = utf8_peer.messages()
        self.assertIn("SMTPUTF8", m["mail_options"])

    def test_smtp_server_with_delivery_mx_is_ignored_with_a_warning(self):
        port, (peer,) = self.start_peers("127.0.0.2")
        dns = self.dns({"example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.2"]}})
        daemon = self.mx_daemon(dns, port, SMTP_SERVER="127.0.0.9")
        doc = daemon.wait_completed(daemon.submit(mail(to=["bob@example.net"])))
        self.assertEqual((doc["recipients"][0]["state"], doc["recipients"][0]["host"]), ("delivered", "mx.example.net"))
        daemon.stop()
        self.assertRegex(daemon.log_text(), r"warn.*DELIVERY=mx: SMTP_SERVER=127\.0\.0\.9 is ignored")

    def test_utf8_sender_fails_every_recipient_of_a_peer_without_smtputf8(self):
        port, (utf8_peer, ascii_peer) = self.start_peers("127.0.0.2", ("127.0.0.3", {"smtputf8": False}))
        dns = self.dns({"utf8.example": {"A": ["127.0.0.2"]}, "ascii.example": {"A": ["127.0.0.3"]}})
        daemon = self.mx_daemon(dns, port)
        ref = daemon.submit(mail(sender="Élise <élise@example.org>", to=["a@utf8.example", "b@ascii.example"]))
        doc = daemon.wait_completed(ref)
        r = by_address(doc)
        self.assertEqual(r["a@utf8.example"]["state"], "delivered", r)
        self.assertEqual((r["b@ascii.example"]["state"], r["b@ascii.example"]["reason"]),
                         ("failed", "smtputf8_required"), r)
        [m] = utf8_peer.messages()
        self.assertEqual(m["mail_from"], "élise@example.org")
        self.assertIn("SMTPUTF8", m["mail_options"])  # with BODY=8BITMIME: the From header holds UTF-8
        self.assertEqual(ascii_peer.messages(), [])

    def starttls_faults(self, mx_tls):
        """refuses.example answers STARTTLS 454, breaks.example breaks the handshake; one job to
        a@refuses.example and b@breaks.example under MX_TLS=mx_tls: (daemon, ref, refuses, breaks)."""
        port, (refuses, breaks) = self.start_peers(("127.0.0.2", {"fault": "starttls-454"}),
                                                   ("127.0.0.3", {"fault": "starttls-broken"}))
        dns = self.dns({"refuses.example": {"A": ["127.0.0.2"]}, "breaks.example": {"A": ["127.0.0.3"]}})
        daemon = self.mx_daemon(dns, port, MX_TLS=mx_tls)
        return daemon, daemon.submit(mail(to=["a@refuses.example", "b@breaks.example"])), refuses, breaks

    def test_opportunistic_starttls_that_fails_is_retried_in_plaintext(self):
        daemon, ref, refuses, breaks = self.starttls_faults("opportunistic")
        doc = daemon.wait_completed(ref)
        r = by_address(doc)
        for address, peer in (("a@refuses.example", refuses), ("b@breaks.example", breaks)):
            self.assertEqual((r[address]["state"], r[address]["tls"]), ("delivered", False), r[address])
            self.assertEqual([a for m in peer.messages() for a in m["rcpt_tos"]], [address])
            self.assertEqual(len(peer.fault_events()), 1, "STARTTLS was tried once, then plaintext")
        daemon.stop()
        self.assertEqual(daemon.log_text().count("retrying in plaintext"), 2)

    def test_require_tls_never_falls_back_to_plaintext(self):
        daemon, ref, refuses, breaks = self.starttls_faults("require")
        doc = self.first_attempt(daemon, ref)
        for rcpt in doc["recipients"]:
            self.assertEqual(rcpt["state"], "deferred", rcpt)
        self.assertIn("454", by_address(doc)["a@refuses.example"]["smtp_reply"])
        self.assertEqual(refuses.messages() + breaks.messages(), [])
        self.assertEqual(len(refuses.fault_events()) + len(breaks.fault_events()), 2)


class RelaySmtputf8Test(IntegrationTestCase):

    def test_relay_sends_a_utf8_recipient_only_when_offered(self):
        for smtputf8 in (True, False):
            with self.subTest(smtputf8=smtputf8):
                peer = PeerProcess(smtputf8=smtputf8)
                self.addCleanup(peer.stop)
                daemon = self.start_daemon(**self.relay_env(peer))
                doc = daemon.wait_completed(daemon.submit(mail(to=["bob@example.net"], bcc=["jürgen@example.de"])))
                r = by_address(doc)
                self.assertEqual(r["bob@example.net"]["state"], "delivered", r)
                [m] = peer.messages()
                if smtputf8:
                    self.assertEqual(r["jürgen@example.de"]["state"], "delivered", r)
                    self.assertEqual(sorted(m["rcpt_tos"]), ["bob@example.net", "jürgen@example.de"])
                    self.assertIn("SMTPUTF8", m["mail_options"])
                else:
                    self.assertEqual((r["jürgen@example.de"]["state"], r["jürgen@example.de"]["reason"],
                                      r["jürgen@example.de"]["host"]), ("failed", "smtputf8_required", "127.0.0.1"))
                    self.assertEqual(m["rcpt_tos"], ["bob@example.net"])
                daemon.stop()


class MxTlsTest(IntegrationTestCase):

    def test_opportunistic_starttls_with_a_self_signed_certificate(self):
        d = self.make_tmp()
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=mx.example.net"], check=True, capture_output=True)
        log = os.path.join(d, "peer.log")
        proc = subprocess.Popen(["/usr/bin/python3", TLS_PEER, "--log", log, "--cert", cert, "--key", key],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(10), proc.stdout.close(), proc.stderr.close()))
        line = proc.stdout.readline()
        self.assertTrue(line.startswith("READY "), line)
        port = int(line.split()[1])
        dns = DnsServer({"example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.1"]}})
        self.addCleanup(dns.stop)
        daemon = self.start_daemon(DELIVERY="mx", DNS_SERVER=dns.address, SMTP_PORT=port)
        doc = daemon.wait_completed(daemon.submit(mail(to=["bob@example.net"])))
        rcpt = doc["recipients"][0]
        self.assertEqual((rcpt["state"], rcpt["host"], rcpt["tls"]), ("delivered", "mx.example.net", True))

    def make_tmp(self):
        import shutil
        import tempfile
        d = tempfile.mkdtemp(prefix="websmtp-mx.")
        self.addCleanup(shutil.rmtree, d, True)
        return d


class MxSchedulingTest(MxPeers, IntegrationTestCase):
    """How direct delivery shares hosts, workers and sessions: a slow host, MX hosts that
    answer 4xx, a peer that takes few recipients per transaction, idle sessions."""

    dns = MxDeliveryTest.dns  # a DnsServer serving the zone, stopped at cleanup

    def test_a_host_at_its_session_limit_does_not_hold_the_workers_of_other_domains(self):
        # slow.example's MX accepts TCP and never greets (for 30 s, the command timeout): its
        # two sessions (MX_MAX_PER_HOST) hang; its other jobs must not hold the other two
        # workers waiting for a session while example.net's jobs wait behind them.
        port, (ok, slow) = self.start_peers("127.0.0.2", ("127.0.0.3", {"fault": "hang-greeting"}))
        dns = self.dns({
            "example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.2"]},
            "slow.example": {"MX": [(10, "mx.slow.example")]}, "mx.slow.example": {"A": ["127.0.0.3"]},
        })
        daemon = self.mx_daemon(dns, port, THREADS=4, MX_MAX_PER_HOST=2, SMTP_COMMAND_TIMEOUT="30s",
                                SMTP_CONNECT_TIMEOUT="30s")
        slow_refs = [daemon.submit(mail(to=["s%d@slow.example" % i])) for i in range(8)]
        slow.wait_for_fault_event(2)  # both sessions to the slow host hang now
        fast_refs = [daemon.submit(mail(to=["f%d@example.net" % i])) for i in range(3)]
        for ref in fast_refs:
            doc = daemon.wait_completed(ref, timeout=15)
            self.assertEqual([(r["state"], r["host"]) for r in doc["recipients"]],
                             [("delivered", "mx.example.net")])
        # Still within the slow host's timeout: no slow job has had an attempt counted, and
        # none is anything but waiting.
        for ref in slow_refs:
            _, doc = daemon.status(ref)
            self.assertIn(doc["status"], ("not started", "processing"), doc)
            self.assertEqual([r["attempts"] for r in doc["recipients"]], [0], doc)
        self.assertEqual(len(slow.fault_events()), 2)  # never more sessions than MX_MAX_PER_HOST
        daemon.stop()
        # The slow host's jobs came back about once a second each, not in a busy loop.
        self.assertLess(daemon.log_text().count("has every session in use"), 300)

    def test_4xx_to_rcpt_or_data_sends_the_recipients_to_the_next_mx(self):
        port, (rcpt451, data451, good) = self.start_peers(("127.0.0.2", {"fault": "tempfail-all"}),
                                                          ("127.0.0.3", {"fault": "tempfail-data"}), "127.0.0.5")
        dns = self.dns({
            "rcpt.example": {"MX": [(10, "a.rcpt.example"), (20, "good.example")]},
            "data.example": {"MX": [(10, "b.data.example"), (20, "good.example")]},
            "both.example": {"MX": [(10, "a.rcpt.example"), (20, "b.data.example")]},
            "a.rcpt.example": {"A": ["127.0.0.2"]},
            "b.data.example": {"A": ["127.0.0.3"]},
            "good.example": {"A": ["127.0.0.5"]},
        })
        daemon = self.mx_daemon(dns, port)
        ref = daemon.submit(mail(to=["x@rcpt.example", "y@rcpt.example", "z@data.example"]))
        doc = daemon.wait_completed(ref)
        for r in doc["recipients"]:
            self.assertEqual((r["state"], r["attempts"], r["host"]), ("delivered", 1, "good.example"), r)
        self.assertEqual(sorted(sorted(m["rcpt_tos"]) for m in good.messages()),
                         [["x@rcpt.example", "y@rcpt.example"], ["z@data.example"]])
        self.assertEqual([e["code"] for e in rcpt451.rcpt_events()], [451, 451])
        self.assertEqual(len(data451.wait_for_fault_event(1, stage="data-end")), 1)
        # Every MX answers 4xx: deferred once, with the last host's word.
        ref = daemon.submit(mail(to=["w@both.example"]))
        [r] = self.first_attempt(daemon, ref)["recipients"]
        self.assertEqual((r["state"], r["attempts"], r["host"], r["smtp_code"]),
                         ("deferred", 1, "b.data.example", 451), r)
        self.assertEqual(len(good.messages()), 2)


    def check_too_many_recipients_go_in_turns(self, daemon, peer, to):
        """`peer` takes 2 recipients per transaction (452 past them): the job's five go in
        three transactions in its first attempt, none deferred."""
        ref = daemon.submit(mail(to=to))
        doc = daemon.wait_completed(ref)
        for r in doc["recipients"]:
            self.assertEqual((r["state"], r["attempts"], r["smtp_code"]), ("delivered", 1, 250), r)
        self.assertEqual([len(m["rcpt_tos"]) for m in peer.messages()], [2, 2, 1])
        self.assertEqual(sorted(a for m in peer.messages() for a in m["rcpt_tos"]), sorted(to))

    def test_452_too_many_recipients_sends_the_rest_in_the_next_transaction(self):
        port, (peer,) = self.start_peers(("127.0.0.2", {"fault": "rcpt-limit-2"}))
        dns = self.dns({"example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.2"]}})
        daemon = self.mx_daemon(dns, port)
        self.check_too_many_recipients_go_in_turns(daemon, peer, ["u%d@example.net" % i for i in range(5)])

    def test_452_too_many_recipients_through_the_relay(self):
        peer = self.start_peer(fault="rcpt-limit-2")
        daemon = self.start_daemon(**self.relay_env(peer, RETRY_MIN="60s", RETRY_MAX="60s"))
        self.check_too_many_recipients_go_in_turns(daemon, peer, ["u%d@example.net" % i for i in range(5)])


    def test_idle_sessions_are_closed_when_their_idle_time_is_up_without_a_next_job(self):
        port, (peer,) = self.start_peers("127.0.0.2")
        dns = self.dns({"example.net": {"MX": [(10, "mx.example.net")]}, "mx.example.net": {"A": ["127.0.0.2"]}})
        daemon = self.mx_daemon(dns, port, MX_IDLE_TIMEOUT="1s")
        daemon.wait_completed(daemon.submit(mail(to=["bob@example.net"])))
        # No job follows: only the pool's own timer can end the kept session.
        wait_until(lambda: peer.quit_events(), timeout=10, what="QUIT of the idle session")
        self.assertEqual(len(peer.quit_events()), 1)
        self.assertTrue(daemon.running())


if __name__ == "__main__":
    unittest.main()
