"""Soak: many jobs against a peer that misbehaves per recipient, with the daemon SIGKILLed
and restarted on the same DATA_DIR several times while jobs are submitted and delivered.
At the end every job answered 202 must be found and completed, and the peer's log must
agree with every status:

- no ref answered 202 is unknown (404) or left unfinished: 0 jobs lost;
- every recipient is delivered (the peer has a copy) or failed with a reason and no copy;
- the outcome matches the recipient's rule: ok*/deferonce*/dropdata*/hangdata* are
  delivered, reject* fails "rejected" (550), defer* fails "expired" after MAX_LIFETIME;
- a recipient that the peer got more than once is flagged possible_duplicate (hangdata*
  always is: the peer keeps the first copy and never answers it);
- requests answered 503 never reach the peer.

Size and length come from the environment (defaults: a short run for `make test`):
  SOAK_JOBS (600)  SOAK_KILLS (3)  SOAK_LIFETIME (MAX_LIFETIME seconds, 20)
  SOAK_SUBMITTERS (4)  SOAK_WORKERS (daemon THREADS, 8)  SOAK_SEED (random)
  SOAK_PIPELINING (1: the peer offers PIPELINING, as Postfix does; 0: it does not)
bench/soak.sh runs it long. One summary line is printed at the end.
"""

import collections
import http.client
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

from harness import IntegrationTestCase, PeerProcess, mail

JOBS = int(os.environ.get("SOAK_JOBS", "600"))
KILLS = int(os.environ.get("SOAK_KILLS", "3"))
LIFETIME = int(os.environ.get("SOAK_LIFETIME", "20"))
SUBMITTERS = int(os.environ.get("SOAK_SUBMITTERS", "4"))
WORKERS = int(os.environ.get("SOAK_WORKERS", "8"))
SEED = int(os.environ.get("SOAK_SEED", str(random.SystemRandom().randrange(1 << 31))))
PIPELINING = os.environ.get("SOAK_PIPELINING", "1") != "0"

# Recipient rules of tests/support/smtp_peer.py and their weights.
CLASSES = (("ok", 62), ("deferonce", 14), ("reject", 10), ("dropdata", 6), ("hangdata", 3), ("defer", 2))
DELIVERED_CLASSES = {"ok", "deferonce", "dropdata", "hangdata"}
TEST_ID_RE = re.compile(r"^X-Test-Id: *(\S+)", re.MULTILINE | re.IGNORECASE)


def local_class(address):
    return address.split("-", 1)[0]


class SoakTest(IntegrationTestCase):

    def setUp(self):
        # The peer fsyncs its log per line: keep it on tmpfs when there is one.
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.peer_dir = tempfile.mkdtemp(prefix="websmtp-soak.", dir=base)
        self.addCleanup(shutil.rmtree, self.peer_dir, True)
        self.peer = PeerProcess(log_path=os.path.join(self.peer_dir, "peer.jsonl"), pipelining=PIPELINING)

        def stop_peer():
            self.peer.stop()
            if self.peer.stderr_text():
                self._logs.append(("smtp peer", self.peer.stderr_text()))
        self.addCleanup(stop_peer)

    def test_soak_with_sigkills(self):
        rng = random.Random(SEED)
        started = time.monotonic()
        budget = 60 + JOBS / 10.0 + LIFETIME  # the whole run, generous
        deadline = started + budget
        daemon = self.start_daemon(**self.relay_env(
            self.peer, THREADS=WORKERS, LOG_LEVEL="info", MAX_LIFETIME="%ds" % LIFETIME,
            RETRY_MIN="1s", RETRY_MAX="2s", SMTP_CONNECT_TIMEOUT="5s", SMTP_COMMAND_TIMEOUT="5s",
            SMTP_DATA_TIMEOUT="1s", SHUTDOWN_GRACE="2s"))

        # -- the jobs: 1 to 3 recipients each, unique addresses per job ------------------
        names, weights = zip(*CLASSES)
        plan = []
        for i in range(JOBS):
            rcpts = ["%s-%d-%d@example.net" % (rng.choices(names, weights)[0], i, k)
                     for k in range(rng.choice((1, 1, 2, 3)))]
            plan.append(("soak-%d-%d" % (SEED, i), rcpts))

        # All kills but the last one at random points of the submission, the last one while
        # the queue is being delivered (a single kill happens during submission).
        during_submission = KILLS - 1 if KILLS > 1 else KILLS
        kill_points = sorted(rng.uniform(0.15, 0.85) * JOBS for _ in range(during_submission))
        delivery_kill = KILLS > 1

        # -- submission from a few threads, kills from this one ----------------------------
        lock = threading.Lock()
        up = threading.Event()
        up.set()
        accepted = {}     # test id -> (ref, recipients)
        interrupted = set()  # the daemon died under the request (then sent again)
        replayed = set()     # ... and the retry found it stored: 200 with the first ref
        unknown = set()      # never answered at all: maybe stored, no promise made
        refused = {}      # test id -> status (must be 503)
        next_index = [0]
        problems = []

        def submitter():
            while time.monotonic() < deadline:
                with lock:
                    i = next_index[0]
                    if i >= len(plan):
                        return
                    next_index[0] += 1
                tid, rcpts = plan[i]
                payload = mail(to=rcpts, subject="soak " + tid, body="job %s\n" % tid, test_id=tid)
                # Every request has an Idempotency-Key: when the daemon dies under a request
                # the client cannot know whether it was stored, so it sends it again after the
                # restart and gets either a new job (202) or the stored one (200, same ref).
                for _ in range(10):
                    try:
                        r = daemon.post_send(payload, headers={"Idempotency-Key": tid})
                    except (OSError, http.client.HTTPException):
                        with lock:
                            interrupted.add(tid)
                        up.wait(timeout=max(0.0, deadline - time.monotonic()))
                        continue
                    with lock:
                        if r.status in (200, 202):
                            accepted[tid] = (r.json()["ref"], rcpts)
                            replayed.update([tid] if r.status == 200 else [])
                        else:
                            refused[tid] = r.status
                            if r.status != 503:
                                problems.append("submit %s answered %d: %r" % (tid, r.status, r.body[:200]))
                    break
                else:
                    with lock:
                        unknown.add(tid)

        kills = [0]
        crashes = []

        def kill_and_restart(why):
            up.clear()
            if not daemon.running():
                crashes.append("websmtpd exited by itself (%s) before kill %d" % (daemon.proc.returncode, kills[0] + 1))
            else:
                rc = daemon.kill9()
                if rc != -signal.SIGKILL:
                    crashes.append("websmtpd exit status %r at kill %d" % (rc, kills[0] + 1))
            kills[0] += 1
            daemon.start()
            up.set()

        threads = [threading.Thread(target=submitter, name="soak-submit-%d" % n, daemon=True) for n in range(SUBMITTERS)]
        for t in threads:
            t.start()
        for point in kill_points:
            while time.monotonic() < deadline:
                with lock:
                    if len(accepted) >= point or next_index[0] >= len(plan):
                        break
                time.sleep(0.01)
            kill_and_restart("during submission")
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
        self.assertFalse(any(t.is_alive() for t in threads), "submitters still running at the deadline")
        submitted_at = time.monotonic()
        if delivery_kill:
            time.sleep(rng.uniform(0.2, 1.5))  # let deliveries get under way, then pull the plug
            kill_and_restart("during delivery")

        # -- wait (bounded) until every accepted job is completed ---------------------------
        docs = {}
        pending = {tid: ref for tid, (ref, _) in accepted.items()}
        while pending:
            if not daemon.running():
                crashes.append("websmtpd exited by itself (%s) while delivering" % daemon.proc.returncode)
                daemon.start()
            q = daemon.queue()
            if q["queued"] + q["deferred"] + q["in_flight"] == 0 or time.monotonic() >= deadline:
                for tid, ref in list(pending.items()):
                    code, doc = daemon.status(ref)
                    if code != 200:
                        problems.append("LOST: ref %s (%s) answered 202, status answers %d %r" % (ref, tid, code, doc))
                        del pending[tid]
                    elif doc["status"] == "completed":
                        docs[tid] = doc
                        del pending[tid]
                if time.monotonic() >= deadline:
                    break
            time.sleep(0.3)
        for tid, ref in pending.items():
            problems.append("LOST: ref %s (%s) not completed after %.0fs: %r" % (ref, tid, budget, daemon.status(ref)))

        # -- reconcile against the peer's log ------------------------------------------------
        refs = collections.Counter(ref for ref, _ in accepted.values())
        problems.extend("ref %s was issued for %d requests" % (ref, n) for ref, n in refs.items() if n > 1)
        copies = collections.Counter()  # (test id, address) -> messages the peer took
        stray = []
        for m in self.peer.messages():
            found = TEST_ID_RE.search(m["data"].split("\r\n\r\n", 1)[0])
            tid = found.group(1) if found else None
            if tid not in accepted and tid not in unknown:
                stray.append((tid, m["rcpt_tos"], "answered %s" % refused.get(tid, "never sent")))
            for a in m["rcpt_tos"]:
                copies[(tid, a)] += 1
        for s in stray:
            problems.append("the peer got a message that was not accepted: %r" % (s,))

        counts = collections.Counter()
        for tid, doc in docs.items():
            ref, rcpts = accepted[tid]
            by_addr = {r["address"]: r for r in doc["recipients"]}
            if sorted(by_addr) != sorted(rcpts):
                problems.append("ref %s: recipients %r, submitted %r" % (ref, sorted(by_addr), sorted(rcpts)))
                continue
            for a, r in by_addr.items():
                cls = local_class(a)
                n = copies[(tid, a)]
                flagged = r.get("possible_duplicate") is True
                counts["recipients"] += 1
                counts[r["state"]] += 1
                counts["flagged"] += flagged
                counts["duplicated"] += n > 1
                where = "ref %s %s (%d copies): %r" % (ref, a, n, r)
                if r["state"] == "delivered":
                    if n < 1:
                        problems.append("LOST: delivered but the peer has no copy: " + where)
                elif r["state"] == "failed":
                    counts["failed_" + str(r.get("reason"))] += 1
                    if not r.get("reason"):
                        problems.append("failed without a reason: " + where)
                    if n:
                        problems.append("failed but the peer has a copy: " + where)
                else:
                    problems.append("job completed with a recipient %s: %s" % (r["state"], where))
                if n > 1 and not flagged:
                    problems.append("DUPLICATE NOT FLAGGED: " + where)
                if cls in DELIVERED_CLASSES and r["state"] != "delivered":
                    problems.append("%s recipient not delivered: %s" % (cls, where))
                if cls == "hangdata" and (n < 2 or not flagged):
                    problems.append("hangdata recipient: the peer kept the first copy, expected a flagged "
                                    "second one: " + where)
                if cls == "reject" and (r["state"], r.get("reason"), r.get("smtp_code")) != ("failed", "rejected", 550):
                    problems.append("reject recipient: " + where)
                if cls == "defer":
                    if (r["state"], r.get("reason")) != ("failed", "expired"):
                        problems.append("defer recipient: " + where)
                    elif r.get("smtp_code") != 451 and not (r.get("smtp_code", 0) == 0 and r.get("smtp_reply")):
                        # 451 from the peer, or a connection-level failure (code 0, with its text)
                        # if that was the last attempt before MAX_LIFETIME
                        problems.append("expired defer recipient without its last reply: " + where)

        elapsed = time.monotonic() - started
        summary = ("soak: jobs=%d accepted=%d (interrupted and resent=%d, of which already stored=%d) unknown=%d "
                   "refused=%d recipients=%d delivered=%d failed=%d (rejected=%d expired=%d) duplicates=%d "
                   "flagged=%d kills=%d lost=%d seed=%d pipelining=%d submit=%.1fs total=%.1fs"
                   % (JOBS, len(accepted), len(interrupted), len(replayed), len(unknown), len(refused),
                      counts["recipients"], counts["delivered"],
                      counts["failed"], counts["failed_rejected"], counts["failed_expired"], counts["duplicated"],
                      counts["flagged"], kills[0], sum(1 for p in problems if p.startswith("LOST")), SEED, PIPELINING,
                      submitted_at - started, elapsed))
        sys.stderr.write("\n" + summary + "\n")
        sys.stderr.flush()

        problems = crashes + problems
        self.assertEqual(problems, [], "%s\n%d problems (SOAK_SEED=%d reproduces the plan), first ones:\n%s"
                         % (summary, len(problems), SEED, "\n".join(problems[:25])))
        self.assertGreaterEqual(len(accepted), JOBS * 0.95, "too few jobs accepted: " + summary)
        self.assertEqual(kills[0], KILLS)


if __name__ == "__main__":
    unittest.main()
