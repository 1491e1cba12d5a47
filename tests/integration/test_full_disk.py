"""A full disk under DATA_DIR: submits answer 503 store_unavailable (never a 202 that was not
committed), jobs already stored keep being delivered, the daemon recovers by itself once
space is freed, and after a restart every ref that was answered 202 is found and completed.

DATA_DIR lives on a real size-limited filesystem: a small tmpfs mounted for the test (needs
root / CAP_SYS_ADMIN). Where mounting is not allowed, the test falls back to a file size
limit (RLIMIT_FSIZE, set on the running daemon with prlimit; the daemon ignores SIGXFSZ, so
writes past the limit fail with EFBIG instead). WEBSMTP_FULL_DISK=fsize forces the fallback.
"""

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import IntegrationTestCase, mail, messages_by_test_id, new_test_id, wait_until

TMPFS_SIZE = "8m"
PRLIMIT = shutil.which("prlimit")


class TmpfsDisk:
    """DATA_DIR on a tmpfs of TMPFS_SIZE; full() writes a filler file until ENOSPC."""

    kind = "tmpfs"

    def __init__(self, mountpoint):
        self.mountpoint = mountpoint
        self.filler = os.path.join(mountpoint, "filler")
        self.data_dir = os.path.join(mountpoint, "data")
        self.mounted = False

    def setup(self):
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SIZE, "tmpfs", self.mountpoint],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        if r.returncode != 0:
            raise PermissionError(r.stdout.decode(errors="replace").strip() or "mount failed")
        self.mounted = True

    def cleanup(self):
        if self.mounted:
            r = subprocess.run(["umount", self.mountpoint], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.mountpoint], timeout=20)
            self.mounted = False

    def free_bytes(self):
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self, daemon):
        """Write the filler until the filesystem refuses even one more byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        written = 0
        try:
            for size in (1 << 20, 64 << 10, 4096, 512, 1):
                buf = b"\0" * size
                while written < (1 << 30):  # bounded: far above the filesystem size
                    try:
                        n = os.write(fd, buf)
                    except OSError as e:
                        if e.errno in (errno.ENOSPC, errno.EFBIG):
                            break
                        raise
                    written += n
        finally:
            os.close(fd)
        return written

    def release(self, daemon):
        os.unlink(self.filler)


class FsizeLimit:
    """Fallback: the running daemon's RLIMIT_FSIZE (soft) is lowered to the size of its
    largest file in DATA_DIR, so no file there can grow; release() lifts it again."""

    kind = "fsize"

    def __init__(self, base):
        self.data_dir = os.path.join(base, "data")

    def setup(self):
        if not PRLIMIT:
            raise unittest.SkipTest("no tmpfs mount allowed and no prlimit")

    def cleanup(self):
        pass

    def free_bytes(self):
        return None

    def fill(self, daemon):
        sizes = [os.path.getsize(os.path.join(self.data_dir, n)) for n in os.listdir(self.data_dir)]
        limit = max(sizes + [4096])
        subprocess.run([PRLIMIT, "--pid", str(daemon.pid), "--fsize=%d:" % limit], check=True, timeout=20)
        return limit

    def release(self, daemon):
        if not daemon.running():
            return  # the limit went with the process
        subprocess.run([PRLIMIT, "--pid", str(daemon.pid), "--fsize=unlimited:"], check=True, timeout=20)


class FullDiskTest(IntegrationTestCase):

    def setUp(self):
        base = tempfile.mkdtemp(prefix="websmtp-disk.")
        self.addCleanup(shutil.rmtree, base, True)
        disk = None
        if os.environ.get("WEBSMTP_FULL_DISK") != "fsize":
            disk = TmpfsDisk(base)
            try:
                disk.setup()
            except (PermissionError, OSError) as e:
                # EPERM: not root, or no CAP_SYS_ADMIN in this container.
                disk = None
                sys.stderr.write("(no tmpfs: %s; using RLIMIT_FSIZE instead) " % e)
        if disk is None:
            disk = FsizeLimit(base)
            disk.setup()
        self.addCleanup(disk.cleanup)  # runs after the daemon's cleanup (LIFO)
        self.disk = disk
        self.peer = self.start_peer(fault="hold-data")
        # One worker: while the peer holds the first DATA, the other jobs wait, stored and
        # not yet attempted, for the disk to fill up.
        self.daemon = self.start_daemon(**self.relay_env(
            self.peer, THREADS=1, DATA_DIR=disk.data_dir, SMTP_DATA_TIMEOUT="60s", SMTP_COMMAND_TIMEOUT="10s",
            RETRY_MIN="1s", RETRY_MAX="1s"))

    def submit_early_jobs(self, count):
        """Jobs stored before the disk fills; the first one is held by the peer at DATA."""
        jobs = {}
        for i in range(count):
            tid = new_test_id()
            jobs[tid] = self.daemon.submit(mail(to=["early%d@example.net" % i], test_id=tid))
        self.peer.wait_for_fault_event(stage="data-end")
        return jobs

    def submit_while_full(self, accepted, refused, min_refusals=3, timeout=30):
        """Submits (16 KB bodies) until `min_refusals` in a row are refused. Every answer is
        202 (recorded in `accepted`: it must be delivered) or 503 store_unavailable."""
        deadline = time.monotonic() + timeout
        in_a_row = 0
        body = "full disk " * 1600
        while in_a_row < min_refusals:
            self.assertLess(time.monotonic(), deadline, "submits kept being accepted on a full disk "
                            "(%d accepted, %d refused)" % (len(accepted), len(refused)))
            tid = new_test_id()
            r = self.daemon.post_send(mail(to=["full@example.net"], body=body, test_id=tid))
            if r.status == 202:
                accepted[tid] = r.json()["ref"]
                in_a_row = 0
            else:
                self.assertJsonError(r, 503, code="store_unavailable")
                refused.append(tid)
                in_a_row += 1

    def submit_until_accepted(self, accepted, timeout=30):
        """After space is freed: the daemon recovers by itself (no restart)."""
        def one():
            tid = new_test_id()
            r = self.daemon.post_send(mail(to=["after@example.net"], test_id=tid))
            if r.status == 202:
                accepted[tid] = r.json()["ref"]
                return True
            self.assertJsonError(r, 503, code="store_unavailable")
            return False
        wait_until(one, timeout, interval=0.2, what="submits to be accepted again after space was freed")

    def check_everything_delivered(self, refs, refused):
        docs = self.daemon.wait_all_completed(refs.values(), timeout=60)
        got = messages_by_test_id(self.peer)
        for tid, ref in refs.items():
            doc = docs[ref]
            self.assertEqual(doc["failed"], [], doc)
            copies = got.get(tid, [])
            self.assertGreaterEqual(len(copies), 1, "job %s answered 202 but never delivered" % ref)
            for r in doc["recipients"]:
                self.assertEqual(r["state"], "delivered", r)
                if len(copies) > 1:
                    self.assertIs(r.get("possible_duplicate"), True,
                                  "delivered %d times, not flagged: %r" % (len(copies), doc))
        leaked = [t for t in refused if t in got]
        self.assertEqual(leaked, [], "requests answered 503 were delivered anyway")
        return got

    def check_after_restart(self, refs, before):
        self.assertEqual(self.daemon.kill9(), -signal.SIGKILL)
        self.daemon.start()
        for tid, ref in refs.items():
            code, doc = self.daemon.status(ref)
            self.assertEqual(code, 200, "ref %s answered 202 and is gone after a restart: %r" % (ref, doc))
            self.assertEqual(doc["status"], "completed", doc)
        self.daemon.wait_idle(timeout=20)
        after = messages_by_test_id(self.peer)
        self.assertEqual({t: len(v) for t, v in after.items()}, {t: len(v) for t, v in before.items()},
                         "a completed job was sent again after the restart")

    def test_full_store_refuses_submits_keeps_delivering_and_recovers(self):
        refs = self.submit_early_jobs(8)
        self.disk.fill(self.daemon)
        if self.disk.free_bytes() is not None:
            self.assertLess(self.disk.free_bytes(), 64 * 1024)

        refused = []
        self.submit_while_full(refs, refused)
        for ref in refs.values():  # reads still work
            self.assertEqual(self.daemon.status(ref)[0], 200)

        # Stored jobs are still sent while the disk is full (their outcomes wait to commit).
        self.peer.set_fault("none")
        self.peer.release()
        self.peer.wait_for_messages(len(refs), timeout=30)
        got = messages_by_test_id(self.peer)
        self.assertEqual([t for t in refs if t not in got], [], "stored jobs not delivered while the disk is full")
        r = self.daemon.post_send(mail(to=["full@example.net"], body="still full " * 1600, test_id="still-full"))
        if r.status == 202:
            refs["still-full"] = r.json()["ref"]
        else:
            self.assertJsonError(r, 503, code="store_unavailable")
            refused.append("still-full")

        self.disk.release(self.daemon)
        self.submit_until_accepted(refs)
        for _ in range(5):
            tid = new_test_id()
            refs[tid] = self.daemon.submit(mail(to=["later@example.net"], test_id=tid))
        got = self.check_everything_delivered(refs, refused)
        self.check_after_restart(refs, got)
        print("\nfull disk (%s): %d accepted and delivered, %d refused with 503"
              % (self.disk.kind, len(refs), len(refused)))

    def test_sigkill_on_a_full_disk_loses_nothing(self):
        refs = self.submit_early_jobs(6)
        self.disk.fill(self.daemon)
        refused = []
        self.submit_while_full(refs, refused, min_refusals=2)
        # The peer takes the stored jobs; their outcomes cannot be committed on the full disk.
        self.peer.set_fault("none")
        self.peer.release()
        self.peer.wait_for_messages(len(refs), timeout=30)
        self.assertEqual(self.daemon.kill9(), -signal.SIGKILL)
        self.disk.release(self.daemon)
        self.daemon.start()
        # Resent after the restart: each copy beyond the first must be flagged.
        got = self.check_everything_delivered(refs, refused)
        self.check_after_restart(refs, got)
        resent = sum(1 for t in refs if len(got.get(t, [])) > 1)
        print("\nfull disk (%s) + SIGKILL: %d accepted and delivered, %d resent after the restart (flagged), "
              "%d refused with 503" % (self.disk.kind, len(refs), resent, len(refused)))


    def test_a_deferral_that_cannot_be_committed_is_retried_on_time(self):
        """A deferral whose commit fails on the full disk is attempted again at its retry time
        (RETRY_MIN=1s) while the disk stays full, not when space returns; once it does, the
        final outcome is what gets committed, and nothing is lost or counted twice."""
        refs = self.submit_early_jobs(1)  # holds the only worker at DATA
        deferred = {}
        for i in range(3):
            tid = new_test_id()
            deferred[tid] = "deferonce-%d-%s@example.net" % (i, tid[:8])
            refs[tid] = self.daemon.submit(mail(to=[deferred[tid]], test_id=tid))
        self.disk.fill(self.daemon)
        refused = []
        self.submit_while_full(refs, refused, min_refusals=2)  # the store is refusing commits now
        self.peer.set_fault("none")
        self.peer.release()
        # First attempt: 451 at RCPT, a deferral the store cannot take. The disk stays full
        # until every one of them has been attempted again and delivered.
        def seen(address):
            return [e["code"] for e in self.peer.rcpt_events() if e["address"] == address]
        try:
            wait_until(lambda: all(seen(a) == [451, 250] for a in deferred.values()), 30,
                       what="each deferral to be attempted again while the disk is still full")
        except AssertionError as e:
            raise AssertionError("%s; RCPT codes seen: %r" % (e, {a: seen(a) for a in deferred.values()}))
        # RCPT's 250 comes before the message itself has arrived: wait for the messages too.
        wait_until(lambda: all(t in messages_by_test_id(self.peer) for t in deferred), 30,
                   what="each deferred message to arrive while the disk is still full")
        for tid in deferred:  # the premise: none of these outcomes could be committed yet
            code, doc = self.daemon.status(refs[tid])
            self.assertEqual((code, doc["status"]), (200, "not started"),
                             "an outcome was committed on the full disk: the test proves nothing")

        self.disk.release(self.daemon)
        self.submit_until_accepted(refs)
        docs = self.daemon.wait_all_completed(refs.values(), timeout=60)
        for tid in deferred:
            rcpt = docs[refs[tid]]["recipients"][0]
            self.assertEqual((rcpt["state"], rcpt["attempts"]), ("delivered", 2), rcpt)
            self.assertNotIn("possible_duplicate", rcpt)  # the 451 came before any DATA
        q = self.daemon.wait_idle(timeout=20)
        self.assertEqual((q["queued"], q["deferred"], q["completed"], q["failed"]), (0, 0, len(refs), 0), q)
        self.assertEqual(q["delivered_total"], len(refs), q)
        got = self.check_everything_delivered(refs, refused)
        self.assertEqual({t: len(got[t]) for t in refs}, {t: 1 for t in refs}, "a job was sent twice")
        self.check_after_restart(refs, got)

    def test_failed_start_on_a_full_disk_keeps_the_possible_duplicate_flag(self):
        if self.disk.kind != "tmpfs":
            raise unittest.SkipTest("needs a filesystem that stays full across a restart")
        self.peer.set_fault("none")
        tid = new_test_id()
        # hangdata*: the peer keeps the message and never answers; the daemon dies meanwhile.
        ref = self.daemon.submit(mail(to=["hangdata-1@example.net"], test_id=tid))
        self.peer.wait_for_fault_event(stage="data-end")
        self.assertEqual(self.daemon.kill9(), -signal.SIGKILL)
        self.disk.fill(self.daemon)
        try:
            self.daemon.start()  # refusing to start on a full disk is fine; losing the flag is not
            self.daemon.kill9()
        except RuntimeError:
            pass
        self.disk.release(self.daemon)
        self.daemon.start()
        doc = self.daemon.wait_completed(ref, timeout=30)
        rcpt = doc["recipients"][0]
        self.assertEqual(rcpt["state"], "delivered", rcpt)
        self.assertEqual(len(messages_by_test_id(self.peer)[tid]), 2)
        self.assertIs(rcpt.get("possible_duplicate"), True, "resent without possible_duplicate: %r" % rcpt)


if __name__ == "__main__":
    unittest.main()
