"""Delivery to Postfix's smtp-sink: a second, independent SMTP implementation, and the one
that advertises PIPELINING (aiosmtpd does not), so MAIL, RCPT and DATA go out in one write."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import IntegrationTestCase, mail, new_test_id, submit_concurrently, wait_until

SMTP_SINK = "/usr/sbin/smtp-sink"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(os.path.exists(SMTP_SINK), "smtp-sink (Debian package postfix) is not installed")
class SmtpSinkTest(IntegrationTestCase):

    def start_sink(self, *options):
        """Starts smtp-sink on a free port, dumping each transaction into a file; returns (port, dump dir)."""
        dump_dir = tempfile.mkdtemp(prefix="websmtp-sink-")
        os.chmod(dump_dir, 0o777)  # smtp-sink drops to user nobody
        self.addCleanup(shutil.rmtree, dump_dir, True)
        for _ in range(5):  # the port is free when chosen; another process could take it first
            port = free_port()
            args = [SMTP_SINK, "-d", os.path.join(dump_dir, "%H%M%S."), *options, "127.0.0.1:%d" % port, "100"]
            if os.geteuid() == 0:
                args[1:1] = ["-u", "nobody"]
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.addCleanup(self._stop, proc)
            try:
                wait_until(lambda: self._listening(port) or proc.poll() is not None, 10, what="smtp-sink to listen")
            except AssertionError:
                continue
            if proc.poll() is None:
                return port, dump_dir
        self.fail("smtp-sink did not start")

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    @staticmethod
    def _stop(proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @staticmethod
    def dumped(dump_dir):
        out = []
        for path in glob.glob(os.path.join(dump_dir, "*")):
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    def test_pipelined_delivery_of_many_jobs(self):
        port, dump_dir = self.start_sink()
        daemon = self.start_daemon(DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT=port, SMTP_TLS="none", THREADS=4)
        ids = [new_test_id() for _ in range(60)]
        payloads = [mail(to=["a%d@example.net" % i, "Second <b%d@example.com>" % i], test_id=t,
                         subject="sink %d" % i) for i, t in enumerate(ids)]
        results = submit_concurrently(daemon, payloads, workers=8)
        self.assertTrue(all(getattr(r, "status", None) == 202 for r in results), results)
        refs = [r.json()["ref"] for r in results]
        for ref in refs:
            doc = daemon.wait_completed(ref, timeout=60)
            self.assertEqual(doc["failed"], [])
            self.assertEqual([r["state"] for r in doc["recipients"]], ["delivered", "delivered"])
            self.assertTrue(all(r["smtp_code"] == 250 and r["attempts"] == 1 for r in doc["recipients"]))
        wait_until(lambda: sum(1 for d in self.dumped(dump_dir) if b"X-Test-Id" in d) >= len(ids), 20,
                   what="every message dumped")
        dumps = self.dumped(dump_dir)
        for t in ids:
            self.assertEqual(sum(1 for d in dumps if t.encode() in d), 1, "message %s dumped once" % t)

    def test_soft_rejected_recipients_are_deferred_and_nothing_is_sent(self):
        # "-r rcpt": every RCPT gets 450 (and smtp-sink stops offering PIPELINING).
        port, dump_dir = self.start_sink("-r", "rcpt")
        daemon = self.start_daemon(DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT=port, SMTP_TLS="none",
                                   RETRY_MIN="60s", RETRY_MAX="60s")
        ref = daemon.submit(mail(to=["x@example.net"]))
        doc = daemon.wait_status(ref, lambda d: d["recipients"][0]["attempts"] >= 1, what="a first attempt")
        r = doc["recipients"][0]
        self.assertEqual((r["state"], r["smtp_code"]), ("deferred", 450))
        self.assertEqual(doc["status"], "processing")
        # The session is still usable: a second job gets its own answer, not a 503.
        ref2 = daemon.submit(mail(to=["y@example.net"]))
        doc2 = daemon.wait_status(ref2, lambda d: d["recipients"][0]["attempts"] >= 1, what="a first attempt")
        self.assertEqual(doc2["recipients"][0]["smtp_code"], 450)
        # smtp-sink opens a dump file per transaction; no message content may be in any.
        self.assertFalse(any(b"Subject:" in d for d in self.dumped(dump_dir)))


if __name__ == "__main__":
    unittest.main()
