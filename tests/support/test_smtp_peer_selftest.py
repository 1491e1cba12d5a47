"""Self-test for smtp_peer.py.

Run from tests/support with Debian's interpreter:

    /usr/bin/python3 -m unittest -v test_smtp_peer_selftest
"""

import os
import signal
import smtplib
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from smtp_peer import PeerProcess  # noqa: E402

CLIENT_TIMEOUT = 5.0


def assert_timed_out(test, exc):
    """smtplib turns a socket timeout into SMTPServerDisconnected."""
    test.assertIsInstance(exc.__context__, socket.timeout)
    test.assertIn("timed out", str(exc))


class PeerTestCase(unittest.TestCase):
    fault = None

    def setUp(self):
        self.peer = PeerProcess(fault=self.fault)
        self.addCleanup(self.peer.stop)

    def connect(self, timeout=CLIENT_TIMEOUT):
        return smtplib.SMTP(self.peer.host, self.peer.port, timeout=timeout)


class NormalModeTest(PeerTestCase):

    def test_ready_and_ehlo(self):
        self.assertIsInstance(self.peer.port, int)
        self.assertGreater(self.peer.port, 0)
        with self.connect() as client:
            code, banner = client.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertTrue(banner.startswith(b"peer.test"))
            self.assertTrue(client.has_extn("8BITMIME"))
            self.assertTrue(client.has_extn("SMTPUTF8"))
            self.assertEqual(client.esmtp_features["size"],
                             str(64 * 1024 * 1024))

    def test_rcpt_codes(self):
        with self.connect() as client:
            client.ehlo("client.test")
            self.assertEqual(client.mail("sender@example.org")[0], 250)
            self.assertEqual(client.rcpt("alice@example.org"),
                             (250, b"2.1.5 Ok"))
            self.assertEqual(
                client.rcpt("Reject-bob@example.org"),
                (550, b"5.1.1 <Reject-bob@example.org>: user unknown"))
            self.assertEqual(
                client.rcpt("DEFER.carol@example.org"),
                (451, b"4.3.0 <DEFER.carol@example.org>: try again later"))
            # defer is permanent-temporary: still 451 on the second try
            self.assertEqual(client.rcpt("DEFER.carol@example.org")[0], 451)
            # deferonce: 451 the first time this address is seen, then 250
            self.assertEqual(
                client.rcpt("deferOnce-dave@example.org"),
                (451, b"4.3.0 <deferOnce-dave@example.org>: try again later"))
            self.assertEqual(client.rcpt("deferOnce-dave@example.org"),
                             (250, b"2.1.5 Ok"))
            code, reply = client.data(b"Subject: codes\r\n\r\nbody\r\n")
            self.assertEqual(code, 250)
            self.assertEqual(reply, b"2.0.0 Ok: queued as 1")

        msgs = self.peer.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["seq"], 1)
        self.assertEqual(msgs[0]["mail_from"], "sender@example.org")
        self.assertEqual(msgs[0]["rcpt_tos"],
                         ["alice@example.org", "deferOnce-dave@example.org"])
        self.assertEqual(
            [(e["address"], e["code"]) for e in self.peer.rcpt_events()],
            [("alice@example.org", 250),
             ("Reject-bob@example.org", 550),
             ("DEFER.carol@example.org", 451),
             ("DEFER.carol@example.org", 451),
             ("deferOnce-dave@example.org", 451),
             ("deferOnce-dave@example.org", 250)])

    def test_deferonce_is_per_address_and_per_process(self):
        with self.connect() as client:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("deferonce-1@example.org")[0], 451)
            self.assertEqual(client.rcpt("deferonce-2@example.org")[0], 451)
        # a new connection still remembers the first address
        with self.connect() as client:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("deferonce-1@example.org")[0], 250)
            self.assertEqual(client.rcpt("deferonce-3@example.org")[0], 451)

    def test_only_accepted_recipients_logged_with_exact_data(self):
        body = ("From: sender@example.org\r\n"
                "To: ok@example.org\r\n"
                "Subject: =?utf-8?q?h=C3=A9?=\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n"
                "\r\n"
                "h\u00e9llo w\u00f6rld \u2713\r\n"
                ".leading dot must survive dot-stuffing\r\n"
                "..two dots\r\n"
                "last line\r\n").encode("utf-8")
        with self.connect() as client:
            refused = client.sendmail(
                "sender@example.org",
                ["ok@example.org", "reject-x@example.org",
                 "defer-y@example.org", "second@example.org"],
                body, mail_options=["BODY=8BITMIME"])
        self.assertEqual(set(refused),
                         {"reject-x@example.org", "defer-y@example.org"})
        self.assertEqual(refused["reject-x@example.org"][0], 550)
        self.assertEqual(refused["defer-y@example.org"][0], 451)

        msgs = self.peer.messages()
        self.assertEqual(len(msgs), 1)
        msg = msgs[0]
        self.assertEqual(msg["rcpt_tos"], ["ok@example.org",
                                           "second@example.org"])
        self.assertEqual(msg["data"], body.decode("utf-8"))
        self.assertEqual(msg["data"].encode("utf-8", "surrogateescape"), body)
        self.assertIsInstance(msg["time"], float)
        self.assertLessEqual(abs(msg["time"] - time.time()), 60)

    def test_non_utf8_bytes_round_trip(self):
        body = b"Subject: latin1\r\n\r\ncaf\xe9 \xff\r\n"
        with self.connect() as client:
            client.sendmail("s@example.org", ["ok@example.org"], body)
        msg = self.peer.wait_for_messages(1, timeout=5)[0]
        self.assertEqual(msg["data"].encode("utf-8", "surrogateescape"), body)

    def test_all_rejected_logs_no_message(self):
        with self.connect() as client:
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                client.sendmail("s@example.org",
                                ["reject-a@example.org",
                                 "defer-b@example.org"],
                                b"Subject: x\r\n\r\nx\r\n")
        self.assertEqual(self.peer.messages(), [])
        self.assertEqual(
            sorted((e["address"], e["code"])
                   for e in self.peer.rcpt_events()),
            [("defer-b@example.org", 451), ("reject-a@example.org", 550)])

    def test_sequence_numbers_increase(self):
        with self.connect() as client:
            for i in range(3):
                client.sendmail("s@example.org", ["ok@example.org"],
                                ("Subject: %d\r\n\r\n%d\r\n" % (i, i))
                                .encode("ascii"))
        msgs = self.peer.messages()
        self.assertEqual([m["seq"] for m in msgs], [1, 2, 3])
        self.assertEqual([m["data"] for m in msgs],
                         ["Subject: %d\r\n\r\n%d\r\n" % (i, i)
                          for i in range(3)])


class TempfailAllTest(PeerTestCase):
    fault = "tempfail-all"

    def test_every_rcpt_gets_451(self):
        with self.connect() as client:
            client.ehlo("client.test")
            client.mail("s@example.org")
            for rcpt in ("ok@example.org", "reject@example.org",
                         "deferonce@example.org"):
                self.assertEqual(client.rcpt(rcpt)[0], 451)
            self.assertEqual(client.rcpt("deferonce@example.org")[0], 451)
        self.assertEqual(self.peer.messages(), [])


class HangGreetingTest(PeerTestCase):
    fault = "hang-greeting"

    def test_client_times_out(self):
        start = time.monotonic()
        with self.assertRaises(smtplib.SMTPServerDisconnected) as cm:
            smtplib.SMTP(self.peer.host, self.peer.port, timeout=1)
        elapsed = time.monotonic() - start
        # smtplib wraps the socket timeout while reading the greeting
        assert_timed_out(self, cm.exception)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5)
        self.assertEqual(self.peer.messages(), [])


class HangDataTest(PeerTestCase):
    fault = "hang-data"

    def test_no_reply_after_final_dot(self):
        client = smtplib.SMTP(self.peer.host, self.peer.port, timeout=1)
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 250)
            with self.assertRaises(smtplib.SMTPServerDisconnected) as cm:
                client.data(b"Subject: hang\r\n\r\nx\r\n")
            assert_timed_out(self, cm.exception)
        finally:
            client.close()
        self.assertEqual(self.peer.messages(), [])
        self.assertEqual([e["stage"] for e in self.peer.fault_events()],
                         ["data-end"])


class DropDataTest(PeerTestCase):
    fault = "drop-data"

    def test_connection_dropped_during_data(self):
        client = self.connect()
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 250)
            with self.assertRaises((smtplib.SMTPServerDisconnected,
                                    ConnectionError)):
                client.data(b"Subject: drop\r\n\r\n" + b"x" * 100 + b"\r\n")
        finally:
            client.close()
        self.assertEqual(self.peer.messages(), [])
        self.assertEqual([e["stage"] for e in self.peer.fault_events()],
                         ["data"])


class GarbageTest(PeerTestCase):
    fault = "garbage"

    def test_non_smtp_greeting(self):
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            self.connect()
        # smtplib cannot parse "HTT" as a reply code
        self.assertEqual(cm.exception.smtp_code, -1)
        self.assertIn(b"400 Bad Request", cm.exception.smtp_error)


class ShutdownGreetingTest(PeerTestCase):
    fault = "421"

    def test_421_greeting(self):
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            self.connect()
        self.assertEqual(cm.exception.smtp_code, 421)
        self.assertEqual(cm.exception.smtp_error,
                         b"4.3.2 Service shutting down")


class RecipientFaultRulesTest(PeerTestCase):
    """hang*, hangdata* and dropdata* recipient rules of the normal mode."""

    def test_hang_rcpt_stalls_only_that_rcpt(self):
        client = self.connect(timeout=1)
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 250)
            with self.assertRaises(smtplib.SMTPServerDisconnected) as cm:
                client.rcpt("hang-1@example.org")
            assert_timed_out(self, cm.exception)
        finally:
            client.close()
        [event] = self.peer.wait_for_fault_event(stage="rcpt")
        self.assertEqual(event["address"], "hang-1@example.org")
        # other connections are served meanwhile
        with self.connect() as client:
            self.assertEqual(client.sendmail("s@example.org", ["ok@example.org"],
                                             b"Subject: x\r\n\r\nx\r\n"), {})

    def test_hangdata_keeps_message_and_never_answers_the_first_time(self):
        body = b"Subject: hd\r\n\r\nx\r\n"
        client = self.connect(timeout=1)
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("hangdata-1@example.org")[0], 250)
            with self.assertRaises(smtplib.SMTPServerDisconnected) as cm:
                client.data(body)
            assert_timed_out(self, cm.exception)
        finally:
            client.close()
        # the second time the same address goes through
        with self.connect() as client:
            self.assertEqual(client.sendmail("s@example.org", ["hangdata-1@example.org"], body), {})
        msgs = self.peer.messages()
        self.assertEqual([m.get("reply") for m in msgs], ["none", None])
        self.assertEqual([m["rcpt_tos"] for m in msgs], [["hangdata-1@example.org"]] * 2)
        [event] = self.peer.fault_events()
        self.assertEqual((event["mode"], event["addresses"]), ("hangdata-rcpt", ["hangdata-1@example.org"]))

    def test_dropdata_aborts_the_first_time_only(self):
        body = b"Subject: dd\r\n\r\nx\r\n"
        client = self.connect()
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 250)
            self.assertEqual(client.rcpt("dropdata-1@example.org")[0], 250)
            with self.assertRaises((smtplib.SMTPServerDisconnected, ConnectionError)):
                client.data(body)
        finally:
            client.close()
        self.assertEqual(self.peer.messages(), [])
        with self.connect() as client:
            self.assertEqual(client.sendmail("s@example.org", ["ok@example.org", "dropdata-1@example.org"], body), {})
            # a fresh dropdata address is dropped again, on a new connection
        client = self.connect()
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            client.rcpt("dropdata-2@example.org")
            with self.assertRaises((smtplib.SMTPServerDisconnected, ConnectionError)):
                client.data(body)
        finally:
            client.close()
        self.assertEqual(len(self.peer.messages()), 1)
        self.assertEqual([(e["mode"], e["stage"]) for e in self.peer.fault_events()],
                         [("dropdata-rcpt", "data")] * 2)

    def test_closeonce_answers_421_and_closes_the_first_time(self):
        client = self.connect()
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 250)
            self.assertEqual(client.rcpt("closeonce-1@example.org"),
                             (421, b"4.3.2 Service shutting down"))
            with self.assertRaises(smtplib.SMTPServerDisconnected):
                client.rcpt("ok2@example.org")
        finally:
            client.close()
        with self.connect() as client:
            self.assertEqual(client.sendmail("s@example.org", ["closeonce-1@example.org"],
                                             b"Subject: x\r\n\r\nx\r\n"), {})
        self.assertEqual([(e["address"], e["code"]) for e in self.peer.rcpt_events()],
                         [("ok@example.org", 250), ("closeonce-1@example.org", 421),
                          ("closeonce-1@example.org", 250)])


class PipeliningTest(unittest.TestCase):

    def test_offered_only_when_asked_and_replies_come_in_order(self):
        with PeerProcess() as plain, smtplib.SMTP(plain.host, plain.port, timeout=CLIENT_TIMEOUT) as client:
            client.ehlo("client.test")
            self.assertFalse(client.has_extn("PIPELINING"))
        with PeerProcess(pipelining=True) as peer:
            sock = socket.create_connection((peer.host, peer.port), timeout=CLIENT_TIMEOUT)
            self.addCleanup(sock.close)
            f = sock.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            sock.sendall(b"EHLO client.test\r\n")
            ehlo = []
            while not ehlo or ehlo[-1][3:4] == b"-":
                ehlo.append(f.readline())
            self.assertIn(b"250-PIPELINING\r\n", ehlo)
            self.assertEqual(ehlo[-1], b"250 HELP\r\n")
            sock.sendall(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<ok@example.org>\r\n"
                         b"RCPT TO:<reject-1@example.org>\r\nDATA\r\n")
            self.assertEqual([f.readline()[:3] for _ in range(4)], [b"250", b"250", b"550", b"354"])
            sock.sendall(b"Subject: p\r\n\r\nx\r\n.\r\nQUIT\r\n")
            self.assertEqual([f.readline()[:3] for _ in range(2)], [b"250", b"221"])
            self.assertEqual(peer.wait_for_messages(1)[0]["rcpt_tos"], ["ok@example.org"])


class EhloStallTest(PeerTestCase):
    fault = "ehlo-stall"

    def test_first_line_of_ehlo_then_silence(self):
        sock = socket.create_connection((self.peer.host, self.peer.port), timeout=5)
        self.addCleanup(sock.close)
        f = sock.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220 "))
        sock.sendall(b"EHLO client.test\r\n")
        self.assertEqual(f.readline(), b"250-peer.test\r\n")
        sock.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            f.readline()


class EhloCloseTest(PeerTestCase):
    fault = "ehlo-close"

    def test_first_line_of_ehlo_then_close(self):
        sock = socket.create_connection((self.peer.host, self.peer.port), timeout=5)
        self.addCleanup(sock.close)
        f = sock.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220 "))
        sock.sendall(b"EHLO client.test\r\n")
        self.assertEqual(f.readline(), b"250-peer.test\r\n")
        self.assertEqual(f.readline(), b"")  # EOF


class TrickleTest(PeerTestCase):
    fault = "trickle"

    def test_bytes_keep_coming_without_a_line_end(self):
        sock = socket.create_connection((self.peer.host, self.peer.port), timeout=2)
        self.addCleanup(sock.close)
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 8 and time.monotonic() < deadline:
            got += sock.recv(100)
        self.assertTrue(got.startswith(b"220 x"), got)
        self.assertNotIn(b"\n", got)


class CloseAfterDataTest(PeerTestCase):
    fault = "close-after-data"

    def test_message_kept_connection_closed_without_reply(self):
        client = self.connect()
        try:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 250)
            with self.assertRaises(smtplib.SMTPServerDisconnected) as cm:
                client.data(b"Subject: c\r\n\r\nx\r\n")
            self.assertNotIsInstance(cm.exception.__context__, socket.timeout)
        finally:
            client.close()
        [m] = self.peer.messages()
        self.assertEqual((m["rcpt_tos"], m["reply"]), (["ok@example.org"], "none"))


class RuntimeSwitchTest(unittest.TestCase):

    def test_set_fault_switches_new_connections(self):
        peer = PeerProcess(fault="hang-greeting")
        self.addCleanup(peer.stop)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            smtplib.SMTP(peer.host, peer.port, timeout=0.5)
        peer.set_fault("none")
        with smtplib.SMTP(peer.host, peer.port, timeout=CLIENT_TIMEOUT) as client:
            self.assertEqual(client.sendmail("s@example.org", ["ok@example.org"], b"Subject: x\r\n\r\nx\r\n"), {})
        peer.set_fault("421")
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP(peer.host, peer.port, timeout=CLIENT_TIMEOUT)
        self.assertEqual(cm.exception.smtp_code, 421)
        peer.set_fault("tempfail-all")
        with smtplib.SMTP(peer.host, peer.port, timeout=CLIENT_TIMEOUT) as client:
            client.ehlo("client.test")
            client.mail("s@example.org")
            self.assertEqual(client.rcpt("ok@example.org")[0], 451)
        self.assertEqual([r["mode"] for r in peer.records() if r.get("event") == "mode"],
                         ["none", "421", "tempfail-all"])
        self.assertEqual(len(peer.messages()), 1)

    def test_set_fault_rejects_unknown_mode(self):
        peer = PeerProcess()
        self.addCleanup(peer.stop)
        with self.assertRaises(ValueError):
            peer.set_fault("no-such-mode")

    def test_switch_to_hold_data_releases_with_stdin(self):
        peer = PeerProcess()
        self.addCleanup(peer.stop)
        peer.set_fault("hold-data")
        client = self.enterContext_client(peer)
        client.ehlo("client.test")
        client.mail("s@example.org")
        client.rcpt("ok@example.org")
        client.putcmd("data")
        self.assertEqual(client.getreply()[0], 354)
        client.send(b"Subject: h\r\n\r\nx\r\n.\r\n")
        peer.wait_for_fault_event(stage="data-end")
        self.assertEqual(peer.messages(), [])
        peer.release()
        self.assertEqual(client.getreply()[0], 250)
        self.assertEqual(len(peer.messages()), 1)

    def enterContext_client(self, peer):
        client = smtplib.SMTP(peer.host, peer.port, timeout=CLIENT_TIMEOUT)
        self.addCleanup(client.close)
        return client


class LifecycleTest(unittest.TestCase):

    def test_sigterm_exits_zero_and_prints_only_ready(self):
        peer = PeerProcess()
        self.addCleanup(peer.stop)
        pid = peer.pid
        self.assertTrue(peer.running())
        self.assertEqual(peer.stop(), 0)
        self.assertEqual(peer.stdout_tail, b"")
        self.assertFalse(peer.running())
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        self.assertEqual(peer.stop(), 0)  # idempotent

    def test_sigint_exits_zero(self):
        peer = PeerProcess()
        self.addCleanup(peer.stop)
        self.assertEqual(peer.stop(signum=signal.SIGINT), 0)

    def test_sigterm_with_hanging_connection(self):
        peer = PeerProcess(fault="hang-greeting")
        self.addCleanup(peer.stop)
        sock = socket.create_connection((peer.host, peer.port), timeout=5)
        self.addCleanup(sock.close)
        self.assertEqual(peer.stop(), 0)

    def test_explicit_log_path_is_appended_and_kept(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "peer.jsonl")
            for i in range(2):
                with PeerProcess(log_path=log) as peer:
                    with smtplib.SMTP(peer.host, peer.port,
                                      timeout=CLIENT_TIMEOUT) as client:
                        client.sendmail("s@example.org", ["ok@example.org"],
                                        b"Subject: %d\r\n\r\nx\r\n" % i)
                self.assertTrue(os.path.exists(log))
                self.assertEqual(len(peer.messages()), i + 1)

    def test_context_manager_stops_process(self):
        with PeerProcess() as peer:
            proc = peer.proc
            self.assertIsNone(proc.poll())
        self.assertEqual(proc.returncode, 0)

    def test_two_peers_get_distinct_ports(self):
        with PeerProcess() as a, PeerProcess() as b:
            self.assertNotEqual(a.port, b.port)

    def test_bad_arguments_fail_fast(self):
        with self.assertRaises(RuntimeError):
            PeerProcess(fault="no-such-mode", startup_timeout=10)


if __name__ == "__main__":
    unittest.main()
