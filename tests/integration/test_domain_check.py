"""`websmtpctl domain check` against the real websmtpd and a real DNS server.

The DNS server is the tests' own (tests/support/dns_server.py, in this process, on 127.0.0.1 or
::1 with an ephemeral port), given to websmtpd as DNS_SERVER. DKIM keys are made with
`websmtpctl dkim keygen` into websmtpd's DKIM_KEYS_DIR, and their TXT records are served as the
several strings keygen prints. OUTBOUND_IP is the address SPF is evaluated for.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import WEBSMTPCTL, IntegrationTestCase, clean_env, closed_port_socket, mail, require_binary
from dns_server import DnsServer

CLI_TIMEOUT = 90
OUTBOUND_IP = "192.0.2.10"
GOOD_SPF = "v=spf1 ip4:192.0.2.0/28 -all"
DMARC = "v=DMARC1; p=reject; rua=mailto:dmarc@%s"


def ctl(*args, env=None):
    p = subprocess.run([WEBSMTPCTL] + list(args), capture_output=True, env=clean_env(env), timeout=CLI_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def keygen(domain, selector, directory):
    rc, out, err = ctl("dkim", "keygen", "--domain", domain, "--selector", selector, "--dir", directory, "--json")
    if rc != 0:
        raise AssertionError("keygen failed: %s" % err)
    return json.loads(out)


def good_zone(domain, key):
    """SPF covering OUTBOUND_IP, the key's TXT (as keygen's strings), DMARC p=reject, an MX."""
    return {
        domain: {"TXT": ["some-verification=abc", GOOD_SPF], "MX": [(10, "mx." + domain)]},
        "mx." + domain: {"A": ["192.0.2.25"]},
        key["name"]: {"TXT": [key["strings"]]},
        "_dmarc." + domain: {"TXT": [DMARC % domain]},
    }


class DomainCheckTest(IntegrationTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        cls.keys = tempfile.mkdtemp(prefix="websmtp-domain.")
        cls.addClassCleanup(shutil.rmtree, cls.keys, ignore_errors=True)
        other = tempfile.mkdtemp(prefix="websmtp-domain-other.")
        cls.addClassCleanup(shutil.rmtree, other, ignore_errors=True)
        # A key websmtpd holds for each domain but nokey.example; "other" is a key it does not hold.
        cls.key = {}
        for d in ("good.example", "spf-miss.example", "spf-two.example", "spf-loop.example", "dkim-other.example",
                  "no-dmarc.example", "bad-dmarc.example", "null-mx.example", "gone.example"):
            cls.key[d] = keygen(d, "s1", cls.keys)
        cls.other_key = keygen("dkim-other.example", "s1", other)

    def setUp(self):
        zone = {}
        for d in ("good.example", "spf-miss.example", "spf-two.example", "spf-loop.example", "dkim-other.example",
                  "no-dmarc.example", "bad-dmarc.example", "null-mx.example"):
            zone.update(good_zone(d, self.key[d]))
        zone.update(good_zone("nokey.example", {"name": "unused._domainkey.nokey.example", "strings": ["x"]}))
        # One fault each.
        zone["spf-miss.example"]["TXT"] = ["v=spf1 ip4:198.51.100.0/24 ~all"]
        zone["spf-two.example"]["TXT"] = [GOOD_SPF, "v=spf1 mx -all"]
        zone["spf-loop.example"]["TXT"] = ["v=spf1 include:loop.spf-loop.example -all"]
        zone["loop.spf-loop.example"] = {"TXT": ["v=spf1 include:loop.spf-loop.example " + "ip4:192.0.2.0/28 -all"]}
        zone[self.other_key["name"]] = {"TXT": [self.other_key["strings"]]}
        del zone["_dmarc.no-dmarc.example"]
        zone["_dmarc.bad-dmarc.example"]["TXT"] = ["v=DMARC1; p=maybe"]
        zone["null-mx.example"]["MX"] = [(0, "")]
        self.zone = zone
        self.dns = DnsServer(zone)
        self.addCleanup(self.dns.stop)

    def daemon_for(self, dns, **env):
        e = {"DELIVERY": "sandbox", "DNS_SERVER": dns.address, "OUTBOUND_IP": OUTBOUND_IP,
             "DKIM_KEYS_DIR": self.keys, "DKIM_DOMAIN": "", "DKIM_SELECTOR": "", "DKIM_KEY_FILE": ""}
        e.update(env)
        return self.start_daemon(**e)

    def check(self, daemon, domain, *extra):
        rc, out, err = ctl("--admin", "http://127.0.0.1:%d" % daemon.admin_port, "domain", "check", domain, *extra)
        self._logs.append(("websmtpctl domain check %s %s" % (domain, " ".join(extra)),
                           "rc=%d\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)))
        return rc, out, err

    def check_json(self, daemon, domain):
        rc, out, err = self.check(daemon, domain, "--json")
        doc = json.loads(out)
        self.assertEqual(rc, 0 if doc["ok"] else 1, doc)
        return rc, doc

    def assertOnlyFlagged(self, doc, flagged):
        """Exactly the records in `flagged` are named in `problems`."""
        named = sorted({p.split(":")[0] for p in doc["problems"]})
        self.assertEqual(named, sorted(flagged), doc["problems"])

    def test_a_good_domain_passes_and_the_table_says_so(self):
        daemon = self.daemon_for(self.dns)
        rc, doc = self.check_json(daemon, "good.example")
        self.assertEqual(rc, 0)
        self.assertTrue(doc["ok"])
        self.assertEqual((doc["outbound_ip"], doc["outbound_ip_source"]), (OUTBOUND_IP, "OUTBOUND_IP"))
        spf = doc["spf"]
        self.assertEqual((spf["found"], spf["valid"], spf["result"], spf["value"]), (True, True, "pass", GOOD_SPF))
        [s1] = doc["dkim"]["selectors"]
        self.assertEqual((s1["selector"], s1["found"], s1["valid"], s1["matches"]), ("s1", True, True, True))
        # The key's record came as several TXT strings and was read as one.
        self.assertGreater(len(self.key["good.example"]["strings"]), 1)
        self.assertEqual(s1["value"], self.key["good.example"]["record"])
        self.assertEqual((doc["dmarc"]["valid"], doc["dmarc"]["policy"], doc["dmarc"]["result"]),
                         (True, "reject", "pass"))
        self.assertEqual(doc["mx"]["hosts"], [{"preference": 10, "exchange": "mx.good.example"}])
        self.assertEqual(doc["problems"], [])
        for record in ("spf", "dkim", "dmarc", "mx"):
            self.assertIsNone(doc[record]["publish"], record)

        rc, out, err = self.check(daemon, "Good.Example")
        self.assertEqual(rc, 0, err)
        self.assertIn("good.example: OK", out)
        self.assertRegex(out, r"SPF\s+yes\s+yes\s+pass")
        self.assertRegex(out, r"DKIM s1\s+yes\s+yes\s+key matches")

    def test_spf_not_covering_the_outbound_address_fails_and_says_what_to_publish(self):
        daemon = self.daemon_for(self.dns)
        rc, doc = self.check_json(daemon, "spf-miss.example")
        self.assertEqual(rc, 1)
        self.assertEqual((doc["spf"]["found"], doc["spf"]["valid"], doc["spf"]["result"]), (True, True, "softfail"))
        self.assertEqual(doc["spf"]["publish"],
                         'spf-miss.example. TXT "v=spf1 ip4:%s ip4:198.51.100.0/24 ~all"' % OUTBOUND_IP)
        self.assertOnlyFlagged(doc, ["spf"])
        rc, out, _ = self.check(daemon, "spf-miss.example")
        self.assertEqual(rc, 1)
        self.assertIn("FAIL", out)
        self.assertIn("SPF: spf-miss.example. TXT", out)

    def test_two_spf_records_and_an_include_loop_are_permerrors(self):
        daemon = self.daemon_for(self.dns)
        _, two = self.check_json(daemon, "spf-two.example")
        self.assertEqual((two["spf"]["found"], two["spf"]["valid"], two["spf"]["result"]), (True, False, "permerror"))
        self.assertEqual(len(two["spf"]["value"]), 2)
        self.assertIn("one record only", two["spf"]["publish"])
        self.assertOnlyFlagged(two, ["spf"])

        _, loop = self.check_json(daemon, "spf-loop.example")
        self.assertEqual((loop["spf"]["valid"], loop["spf"]["result"]), (False, "permerror"))
        self.assertEqual(loop["spf"]["lookups"], 11)
        self.assertIn("more than 10 DNS lookups", loop["spf"]["details"])
        self.assertIn("at most 10 DNS lookups", loop["spf"]["publish"])
        self.assertOnlyFlagged(loop, ["spf"])
        # Bounded: the loop was followed 10 times, not forever.
        self.assertLessEqual(self.dns.count("loop.spf-loop.example", "TXT"), 10)

    def test_a_dkim_record_of_another_key_fails(self):
        daemon = self.daemon_for(self.dns)
        rc, doc = self.check_json(daemon, "dkim-other.example")
        self.assertEqual(rc, 1)
        [s1] = doc["dkim"]["selectors"]
        self.assertEqual((s1["found"], s1["valid"], s1["matches"]), (True, True, False))
        self.assertEqual(s1["value"], self.other_key["record"])
        # Over 255 bytes: several quoted strings, as keygen prints them.
        self.assertEqual(s1["publish"], "s1._domainkey.dkim-other.example. TXT " +
                         " ".join('"%s"' % piece for piece in self.key["dkim-other.example"]["strings"]))
        self.assertOnlyFlagged(doc, ["dkim"])
        _, out, _ = self.check(daemon, "dkim-other.example")
        self.assertRegex(out, r"DKIM s1\s+yes\s+yes\s+KEY DIFFERS")

    def test_a_missing_dkim_record_is_missing_and_only_the_failing_selector_is_a_problem(self):
        """Two selectors held for good.example: s1 (RSA) published and passing, s2 (Ed25519: one key
        per algorithm) not published at all."""
        rc, out, err = ctl("dkim", "keygen", "--domain", "good.example", "--selector", "s2", "--algorithm", "ed25519",
                           "--dir", self.keys, "--json")
        self.assertEqual(rc, 0, err)
        s2 = json.loads(out)
        self.addCleanup(os.unlink, s2["file"])
        daemon = self.daemon_for(self.dns)
        rc, doc = self.check_json(daemon, "good.example")
        self.assertEqual(rc, 1)
        s = {x["selector"]: x for x in doc["dkim"]["selectors"]}
        self.assertEqual((s["s1"]["found"], s["s1"]["matches"]), (True, True))
        self.assertEqual((s["s2"]["found"], s["s2"]["valid"]), (False, False))
        dkim_problems = [p for p in doc["problems"] if p.startswith("dkim")]
        self.assertEqual(len(dkim_problems), 1, doc["problems"])
        self.assertTrue(dkim_problems[0].startswith("dkim: s2: no TXT record"), dkim_problems)
        self.assertOnlyFlagged(doc, ["dkim"])
        _, out, _ = self.check(daemon, "good.example")
        self.assertRegex(out, r"DKIM s2\s+NO\s+NO\s+missing")
        self.assertRegex(out, r"DKIM s1\s+yes\s+yes\s+key matches")
        self.assertNotIn("KEY DIFFERS", out)
        problems = out.split("Problems:")[1].split("Publish:")[0]
        self.assertNotIn("s1", problems)
        self.assertIn('s2._domainkey.good.example. TXT "%s"' % s2["record"], out)

    def test_a_private_outbound_ip_is_noted_only_when_it_came_from_the_route(self):
        self.zone["good.example"]["TXT"] = ["v=spf1 ip4:10.1.2.3 -all"]
        daemon = self.daemon_for(self.dns, OUTBOUND_IP="10.1.2.3")
        rc, doc = self.check_json(daemon, "good.example")
        self.assertEqual((rc, doc["spf"]["result"]), (0, "pass"))
        self.assertNotIn("private", doc["spf"]["details"], "OUTBOUND_IP is what the operator says receivers see")

    def test_a_missing_or_invalid_dmarc_record_fails(self):
        daemon = self.daemon_for(self.dns)
        _, missing = self.check_json(daemon, "no-dmarc.example")
        self.assertEqual((missing["dmarc"]["found"], missing["dmarc"]["valid"]), (False, False))
        self.assertEqual(missing["dmarc"]["publish"],
                         '_dmarc.no-dmarc.example. TXT "v=DMARC1; p=none; rua=mailto:postmaster@no-dmarc.example"')
        self.assertOnlyFlagged(missing, ["dmarc"])
        _, invalid = self.check_json(daemon, "bad-dmarc.example")
        self.assertEqual((invalid["dmarc"]["found"], invalid["dmarc"]["valid"]), (True, False))
        self.assertIn("p=maybe", invalid["dmarc"]["details"])
        self.assertOnlyFlagged(invalid, ["dmarc"])

    def test_null_mx_and_nxdomain_fail_and_a_domain_without_key_is_reported_unsigned(self):
        daemon = self.daemon_for(self.dns)
        _, null = self.check_json(daemon, "null-mx.example")
        self.assertEqual((null["mx"]["found"], null["mx"]["valid"]), (True, False))
        self.assertIn("null MX", null["mx"]["details"])
        self.assertOnlyFlagged(null, ["mx"])

        _, gone = self.check_json(daemon, "gone.example")  # NXDOMAIN: nothing is published at all
        self.assertFalse(gone["ok"])
        self.assertIn("NXDOMAIN", gone["mx"]["details"])
        self.assertEqual(gone["spf"]["result"], "none")
        self.assertEqual(gone["spf"]["publish"], 'gone.example. TXT "v=spf1 ip4:%s -all"' % OUTBOUND_IP)
        self.assertOnlyFlagged(gone, ["spf", "dkim", "dmarc", "mx"])

        rc, nokey = self.check_json(daemon, "nokey.example")
        self.assertEqual(rc, 0)
        self.assertFalse(nokey["dkim"]["configured"])
        self.assertIn("unsigned", nokey["dkim"]["details"])
        self.assertIn("websmtpctl dkim keygen --domain nokey.example", nokey["dkim"]["publish"])

    def test_the_admin_route_refuses_a_malformed_domain(self):
        daemon = self.daemon_for(self.dns)
        for bad in ("not_a_domain", "localhost", "a..b", "-x.example", "x" * 300 + ".example", "%FF%0A.example",
                    "a%00b.example", "%"):
            r = daemon.request("GET", "/admin/domains/%s/check" % bad, admin=True)
            self.assertJsonError(r, 400, "invalid_domain", "domain")
        self.assertEqual(daemon.request("GET", "/admin/domains/good.example/other", admin=True).status, 404)
        rc, _, err = self.check(daemon, "a..b")
        self.assertEqual(rc, 1, err)
        self.assertIn("domain", err)
        # An internationalised domain is checked as its A-label.
        rc, out, _ = self.check(daemon, "bücher.example", "--json")
        self.assertEqual((rc, json.loads(out)["domain"]), (1, "xn--bcher-kva.example"))

    def test_usage_and_unreachable_exit_codes(self):
        self.assertEqual(ctl("domain", "check")[0], 2)
        self.assertEqual(ctl("domain")[0], 2)
        closed = closed_port_socket()
        self.addCleanup(closed.close)
        rc, _, err = ctl("--admin", "http://127.0.0.1:%d" % closed.getsockname()[1], "domain", "check",
                         "good.example")
        self.assertEqual(rc, 3, err)

    def test_an_ipv6_dns_server(self):
        try:
            dns6 = DnsServer(self.zone, host="::1")
        except OSError as e:
            self.skipTest("no IPv6 loopback: %s" % e)
        self.addCleanup(dns6.stop)
        daemon = self.daemon_for(dns6)
        rc, doc = self.check_json(daemon, "good.example")
        self.assertEqual(rc, 0, doc)
        self.assertGreater(dns6.count("good.example", "TXT"), 0)
        self.assertEqual(self.dns.count("good.example", "TXT"), 0)

    def test_an_ipv6_dns_server_routes_mx_delivery_too(self):
        try:
            dns6 = DnsServer({"example.net": {"MX": [(10, "mx.example.net")]},
                              "mx.example.net": {"A": ["127.0.0.1"]}}, host="::1")
        except OSError as e:
            self.skipTest("no IPv6 loopback: %s" % e)
        self.addCleanup(dns6.stop)
        peer = self.start_peer()
        daemon = self.daemon_for(dns6, DELIVERY="mx", SMTP_PORT=peer.port, MX_TLS="none")
        doc = daemon.wait_completed(daemon.submit(mail(to=["bob@example.net"])))
        [r] = doc["recipients"]
        self.assertEqual((r["state"], r["host"]), ("delivered", "mx.example.net"), r)
        self.assertEqual(dns6.count("example.net", "MX"), 1)

    def test_without_outbound_ip_the_route_to_the_relay_decides(self):
        relay = closed_port_socket()  # never connected to: only the route is looked at
        self.addCleanup(relay.close)
        self.zone["good.example"]["TXT"] = ["v=spf1 ip4:127.0.0.0/8 -all"]
        daemon = self.daemon_for(self.dns, OUTBOUND_IP="", DELIVERY="relay", SMTP_SERVER="127.0.0.1",
                                 SMTP_PORT=relay.getsockname()[1])
        rc, doc = self.check_json(daemon, "good.example")
        self.assertEqual((doc["outbound_ip"], doc["outbound_ip_source"]), ("127.0.0.1", "route"))
        self.assertEqual(doc["spf"]["result"], "pass")
        self.assertIn("private address", doc["spf"]["details"], "from the route: behind NAT it may not be the one seen")
        self.assertEqual(rc, 0)

    def test_an_invalid_outbound_ip_stops_the_start(self):
        for bad in ("192.0.2.300", "gw.example.org"):
            d = self.make_daemon(DELIVERY="sandbox", OUTBOUND_IP=bad)
            with self.assertRaises(RuntimeError) as caught:
                d.start()
            self.assertNotEqual(d.proc.returncode, 0)
            self.assertIn("OUTBOUND_IP", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
