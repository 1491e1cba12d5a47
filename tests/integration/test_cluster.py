"""Several websmtpd nodes on one PostgreSQL database (STORE=postgres, issue 10).

A real PostgreSQL 15 (tests/support/postgres.py) and three real websmtpd nodes relaying to
one aiosmtpd peer: every job is delivered exactly once between the nodes; a node killed with
kill -9 in the middle of transactions loses nothing, its jobs are finished by the others after
LEASE_TIMEOUT and only the ones whose message was on the wire are flagged possible_duplicate;
any node answers any ref alike; a long-poll on one node wakes when another finishes the job;
every node's /admin/queue shows the whole gateway's figures and its nodes (the nodes table);
each webhook event is POSTed by one node, and a node killed while it sends one hands it to another
once its claim lapses, or sends it again at once when it restarts under its NODE_ID; one
Idempotency-Key sent to two nodes at once is one job.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

from harness import (WEBSMTPCTL, IntegrationTestCase, Response, clean_env, mail, messages_by_test_id, require_binary,
                     wait_until)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import postgres  # noqa: E402
from test_openapi import SPEC_PATH, validate  # noqa: E402
from test_webhooks import SECRET, Receiver  # noqa: E402

THREADS = 4
LEASE_TIMEOUT_S = 3
# A node's figures are its row of the nodes table, written about once a second; it counts as
# live for 3 s after its last report (service/metrics.hpp kNodeLiveWindowMs).
LIVE_WINDOW_S = 3


def payloads(count, prefix):
    return [mail(to=["rcpt%d@example.net" % (i % 5)], subject="job %s-%05d" % (prefix, i),
                 body="body %d\n" % i, test_id="%s-%05d" % (prefix, i)) for i in range(count)]


def waiting_long_polls(node):
    """websmtp_long_polls_waiting from the node's /metrics."""
    r = node.request("GET", "/metrics", admin=True)
    assert r.status == 200, r
    m = re.search(r"^websmtp_long_polls_waiting (\S+)$", r.body.decode(), re.M)
    assert m, "no websmtp_long_polls_waiting in /metrics"
    return float(m.group(1))


class ClusterTest(IntegrationTestCase):

    @classmethod
    def setUpClass(cls):
        if not postgres.available():
            raise unittest.SkipTest("PostgreSQL 15 is not installed (apt-get install postgresql)")
        cls.pg = postgres.PostgresServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()

    def setUp(self):
        # A fresh schema per test: the first node creates it.
        self.pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")

    def extra_logs(self):
        return [("postgres", self.pg.log_text())]

    def start_nodes(self, peer, count=3, first=0, **env):
        nodes = []
        for i in range(first, first + count):
            e = dict(STORE="postgres", DATABASE_URL=self.pg.url, LEASE_TIMEOUT="%ds" % LEASE_TIMEOUT_S,
                     NODE_ID="node%d" % i, THREADS=THREADS)
            e.update(env)
            nodes.append(self.make_daemon(**self.relay_env(peer, **e)))
        # Started at once: the schema is created under an advisory lock by whichever comes first.
        errors = []

        def start(d):
            try:
                d.start()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=start, args=(d,)) for d in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return nodes

    def submit_round_robin(self, nodes, reqs, workers=12):
        refs = {}
        lock = threading.Lock()
        chunks = [list(range(k, len(reqs), workers)) for k in range(workers)]

        def run(indexes):
            for i in indexes:
                node = nodes[i % len(nodes)]
                r = node.post_send(reqs[i])
                self.assertEqual(r.status, 202, r)
                with lock:
                    refs[reqs[i]["headers"]["X-Test-Id"]] = r.json()["ref"]
        threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(refs), len(reqs))
        return refs

    def test_every_job_delivered_exactly_once_by_three_nodes(self):
        peer = self.start_peer()
        nodes = self.start_nodes(peer)
        reqs = payloads(1200, "once")
        refs = self.submit_round_robin(nodes, reqs)
        wait_until(lambda: len(peer.messages()) >= len(reqs), timeout=240, what="every job at the peer")
        # Everything finished: a little longer would show a second copy if any node sent one.
        docs = nodes[1].wait_all_completed(list(refs.values()), timeout=60)
        by_id = messages_by_test_id(peer)
        self.assertEqual(sorted(by_id), sorted(refs))
        copies = {k: len(v) for k, v in by_id.items() if len(v) != 1}
        self.assertEqual(copies, {}, "jobs delivered more than once")
        for doc in docs.values():
            self.assertEqual(doc["status"], "completed", doc)
            self.assertFalse(any(r.get("possible_duplicate") for r in doc["recipients"]), doc)
        # Each node delivered a share (the claims spread the work), and any node answers any ref alike.
        senders = set()
        for n in nodes:
            if "delivered" in n.log_text():
                senders.add(n.pid)
        self.assertEqual(len(senders), 3)
        for i, ref in enumerate(list(refs.values())[:60]):
            answers = [n.status(ref) for n in nodes]
            self.assertEqual(answers[0][0], 200, answers)
            self.assertEqual(answers[0], answers[1])
            self.assertEqual(answers[0], answers[2])

    def test_kill9_jobs_taken_over_after_lease_flagged_where_on_the_wire(self):
        peer = self.start_peer(fault="hold-data")
        victim = self.start_nodes(peer, count=1)[0]
        reqs = payloads(40, "kill")
        refs = {}
        for req in reqs:
            r = victim.post_send(req)
            self.assertEqual(r.status, 202, r)
            refs[req["headers"]["X-Test-Id"]] = r.json()["ref"]
        # Each of its workers holds a transaction whose final dot the peer does not answer.
        wait_until(lambda: sum(1 for e in peer.fault_events() if e.get("mode") == "hold-data") >= THREADS,
                   timeout=30, what="the victim's transactions on the wire")
        others = self.start_nodes(peer, count=2, first=1)
        victim.kill9()
        # The peer answers again, the held transactions too (a dead client's may then be recorded:
        # the copy the victim never heard of, which its taker must flag).
        peer.set_fault("none")
        peer.release(1000)
        docs = others[0].wait_all_completed(list(refs.values()), timeout=LEASE_TIMEOUT_S + 60)
        by_id = messages_by_test_id(peer)
        self.assertEqual(sorted(by_id), sorted(refs), "every job of the dead node delivered by the others")
        flagged = set()
        for test_id, ref in refs.items():
            doc = docs[ref]
            self.assertEqual(doc["status"], "completed", doc)
            self.assertEqual(doc["failed"], [], doc)
            dup = any(r.get("possible_duplicate") for r in doc["recipients"])
            if dup:
                flagged.add(test_id)
            if len(by_id[test_id]) > 1:
                self.assertTrue(dup, "a second copy not flagged: %s" % doc)
        # Exactly the transactions that were on the wire at kill -9 are flagged.
        self.assertEqual(len(flagged), THREADS, flagged)
        # Both survivors answer every ref alike.
        for ref in refs.values():
            self.assertEqual(others[0].status(ref), others[1].status(ref))

    def test_longpoll_on_one_node_wakes_when_another_finishes(self):
        peer = self.start_peer(fault="hold-data")
        a, b = self.start_nodes(peer, count=2)
        r = b.post_send(mail(test_id="longpoll"))
        self.assertEqual(r.status, 202, r)
        ref = r.json()["ref"]
        wait_until(lambda: any(e.get("mode") == "hold-data" for e in peer.fault_events()), timeout=20,
                   what="the job on the wire")
        self.assertEqual(waiting_long_polls(a), 0)
        answer = {}

        def poll():
            t0 = time.monotonic()
            answer["r"] = a.request("GET", "/mail/status/%s?wait=25&since=not%%20started" % ref)
            answer["s"] = time.monotonic() - t0
        t = threading.Thread(target=poll)
        t.start()
        self.addCleanup(t.join, 60)
        # Node A holds the long-poll before node B may finish the job: only a wake can answer it now.
        wait_until(lambda: waiting_long_polls(a) == 1, timeout=20, what="the long-poll waiting on node A")
        self.assertNotIn("r", answer)
        peer.release(1)
        t.join(60)
        self.assertFalse(t.is_alive())
        self.assertEqual(answer["r"].status, 200, answer["r"])
        self.assertEqual(answer["r"].json()["status"], "completed")
        # Answered by the wake-up, not by the end of the wait.
        self.assertLess(answer["s"], 20)
        self.assertEqual(waiting_long_polls(a), 0)
        # Node B finished it, not node A: the answer crossed nodes.
        wait_until(lambda: "job %s" % ref in b.log_text(), timeout=10, what="node B's delivery logged")
        self.assertNotIn("job %s" % ref, a.log_text())

    def start_receiver(self, on_request=None):
        r = Receiver(on_request=on_request)
        self.addCleanup(r.stop)
        return r

    @staticmethod
    def webhooks_delivered(node):
        """Event ids this node logged as delivered (one line per 2xx it got)."""
        return re.findall(r"webhook (\S+) for job \S+ delivered to ", node.log_text())

    def test_each_webhook_event_is_sent_by_one_node(self):
        peer = self.start_peer()
        # A slow receiver: every node's senders (two threads each) are busy at once.
        lock = threading.Lock()
        busy = {"now": 0, "max": 0}

        def slow(n):
            with lock:
                busy["now"] += 1
                busy["max"] = max(busy["max"], busy["now"])
            time.sleep(1)
            with lock:
                busy["now"] -= 1
        receiver = self.start_receiver(on_request=slow)
        # Claims of 20 s, so each POST may take 10 s: a busy machine does not time one out.
        nodes = self.start_nodes(peer, WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOW_PRIVATE="true", LEASE_TIMEOUT="20s")
        n = 60
        reqs = payloads(n, "hook")
        for req in reqs:
            req["callback_url"] = receiver.url()
        refs = self.submit_round_robin(nodes, reqs)
        nodes[0].wait_all_completed(list(refs.values()), timeout=120)
        receiver.wait_for(n, timeout=120)
        # Every POST that reached the receiver got a 200 and is logged by the node that sent it.
        wait_until(lambda: sum(len(self.webhooks_delivered(d)) for d in nodes) >= n, timeout=30,
                   what="every delivery logged")
        events = [json.loads(r["body"]) for r in receiver.received()]
        ids = [e["id"] for e in events]
        self.assertEqual(len(ids), n, "an event was sent more than once")
        self.assertEqual(len(set(ids)), n)
        self.assertEqual(sorted(e["data"]["id"] for e in events), sorted(refs.values()))
        self.assertEqual(sum(len(self.webhooks_delivered(d)) for d in nodes), n)
        # The senders overlapped: more POSTs at once than one node's two threads make.
        self.assertGreaterEqual(busy["max"], 3, busy)
        self.assertGreaterEqual(sum(1 for d in nodes if self.webhooks_delivered(d)), 2)

    def kill_while_sending_a_webhook(self, peer, lease_s, test_id):
        """One node (node0, claims of lease_s) killed with kill -9 while it POSTs a job's event,
        to a receiver whose first request hangs (answered, if ever, after the test). Returns
        (victim, receiver, env, ref, the first request, the event id)."""
        release = threading.Event()
        self.addCleanup(release.set)
        receiver = self.start_receiver(on_request=lambda n: n == 1 and release.wait(120))
        env = dict(WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOW_PRIVATE="true", LEASE_TIMEOUT="%ds" % lease_s)
        victim = self.start_nodes(peer, count=1, **env)[0]
        ref = victim.submit(mail(test_id=test_id, callback_url=receiver.url()))
        first = receiver.wait_for(1, timeout=30)[0]
        victim.kill9()
        event_id = json.loads(first["body"])["id"]
        # It held the event when it died: it had neither delivered nor given it up.
        self.assertNotIn("webhook %s" % event_id, victim.log_text())
        return victim, receiver, env, ref, first, event_id

    def test_a_webhook_event_held_by_a_killed_node_is_sent_by_another_after_its_claim(self):
        peer = self.start_peer()
        lease_s = 6  # the claim; each POST may take half of it
        _, receiver, env, ref, first, event_id = self.kill_while_sending_a_webhook(peer, lease_s, "hook-kill")
        others = self.start_nodes(peer, count=2, first=1, **env)
        reqs = receiver.wait_for(2, timeout=lease_s + 30)
        second = reqs[1]
        self.assertEqual(json.loads(second["body"])["id"], event_id)
        self.assertEqual(json.loads(second["body"])["data"]["id"], ref)
        # Not before the victim's claim lapsed (a lower bound: the claim was taken just before its POST).
        self.assertGreaterEqual(second["time"] - first["time"], lease_s / 2)
        wait_until(lambda: any(event_id in self.webhooks_delivered(d) for d in others), timeout=30,
                   what="another node's delivery logged")
        self.assertEqual(len(receiver.received()), 2)

    def test_a_webhook_event_held_by_a_killed_node_is_sent_as_soon_as_it_restarts_under_its_name(self):
        peer = self.start_peer()
        lease_s = 120  # the claim: the event must go out again long before it lapses
        victim, receiver, _, ref, _, event_id = self.kill_while_sending_a_webhook(peer, lease_s, "hook-restart")
        victim.start()  # the same NODE_ID: its predecessor's claims are released at start
        # Well within the claim's 120 s: without the release it would wait for the claim to lapse.
        second = receiver.wait_for(2, timeout=lease_s / 2)[1]
        self.assertEqual(json.loads(second["body"])["id"], event_id)
        self.assertEqual(json.loads(second["body"])["data"]["id"], ref)
        wait_until(lambda: event_id in self.webhooks_delivered(victim), timeout=30, what="the delivery logged")
        self.assertIn("released 1 webhook events held by a previous process of node node0", victim.log_text())
        self.assertEqual(len(receiver.received()), 2)

    def test_a_webhook_event_given_back_at_a_graceful_stop_is_sent_by_another_node_at_once(self):
        peer = self.start_peer()
        lease_s = 120
        release = threading.Event()
        self.addCleanup(release.set)
        receiver = self.start_receiver(on_request=lambda n: n == 1 and release.wait(120))
        env = dict(WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOW_PRIVATE="true", LEASE_TIMEOUT="%ds" % lease_s)
        first_node = self.start_nodes(peer, count=1, **env)[0]
        ref = first_node.submit(mail(test_id="hook-giveback", callback_url=receiver.url()))
        first = receiver.wait_for(1, timeout=30)[0]
        event_id = json.loads(first["body"])["id"]
        other = self.start_nodes(peer, count=1, first=1, **env)[0]  # sees the event claimed for 120 s
        self.assertEqual(first_node.stop(), 0)  # its POST is cut short, its claim handed back
        second = receiver.wait_for(2, timeout=lease_s / 2)[1]
        self.assertEqual(json.loads(second["body"])["id"], event_id)
        self.assertEqual(json.loads(second["body"])["data"]["id"], ref)
        wait_until(lambda: event_id in self.webhooks_delivered(other), timeout=30, what="the delivery logged")

    def test_pause_from_one_node_holds_every_node_and_figures_are_the_gateways(self):
        peer = self.start_peer()
        nodes = self.start_nodes(peer)
        r = nodes[0].request("POST", "/admin/pause", admin=True)
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: all(n.queue()["paused"] for n in nodes), timeout=20, what="every node paused")
        refs = []
        for i in range(6):
            r = nodes[i % 3].post_send(mail(test_id="paused-%d" % i))
            self.assertEqual(r.status, 202, r)
            refs.append(r.json()["ref"])
        # Any node counts the whole gateway's queue.
        wait_until(lambda: all(n.queue()["queued"] == 6 for n in nodes), timeout=20, what="6 queued on every node")
        self.assertEqual(peer.messages(), [])
        r = nodes[1].request("POST", "/admin/resume", admin=True)
        self.assertEqual(r.status, 200, r)
        nodes[2].wait_all_completed(refs, timeout=60)
        self.assertEqual(len(peer.messages()), 6)
        wait_until(lambda: all(n.queue()["completed"] == 6 and not n.queue()["paused"] for n in nodes), timeout=20,
                   what="6 completed on every node")

    def test_one_idempotency_key_sent_to_two_nodes_at_once_is_one_job(self):
        # Both nodes find the key unused and commit: the second commit leaves its job out and
        # answers the first node's ref as a replay (200), never a second job, never a 503.
        peer = self.start_peer()
        a, b = self.start_nodes(peer, count=2)
        rounds = 40
        answers = [[None, None] for _ in range(rounds)]

        def post(node, side, k, barrier):
            body = json.dumps(mail(subject="race %d" % k, test_id="race-%02d" % k))
            conn = node.connection()
            conn.connect()  # connected before the barrier: the two requests leave microseconds apart
            try:
                conn.putrequest("POST", "/mail/send")
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Idempotency-Key", "race-%02d" % k)
                conn.putheader("Content-Length", str(len(body)))
                barrier.wait(10)
                conn.endheaders(body.encode("utf-8"))
                r = conn.getresponse()
                answers[k][side] = Response(r.status, r.reason, r.headers, r.read())
            finally:
                conn.close()
        # Every request of every key at once: the commits are busy, the window between a node's
        # check of the key and its commit is wide.
        barrier = threading.Barrier(2 * rounds)
        threads = [threading.Thread(target=post, args=(n, side, k, barrier))
                   for k in range(rounds) for side, n in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        refs = []
        for k, (ra, rb) in enumerate(answers):
            self.assertEqual(sorted([ra.status, rb.status]), [200, 202], (k, ra, rb))
            self.assertEqual(ra.json()["ref"], rb.json()["ref"], (k, ra, rb))
            refs.append(ra.json()["ref"])
        a.wait_all_completed(refs, timeout=60)
        by_id = messages_by_test_id(peer)
        self.assertEqual(sorted(by_id), ["race-%02d" % k for k in range(rounds)])
        self.assertEqual({k: len(v) for k, v in by_id.items() if len(v) != 1}, {})
        for n in (a, b):
            self.assertEqual(n.queue()["completed"], rounds)
        taken = sum(n.log_text().count("taken by another node") for n in (a, b))
        sys.stderr.write("\n%d of %d races were decided at the commit (ON CONFLICT)\n" % (taken, rounds))

    def test_jobs_a_node_cannot_start_are_taken_by_an_idle_node(self):
        # Node 0's peer holds every message after DATA (its 2 workers hang); node 1 relays to a
        # healthy peer. Of 100 jobs submitted to node 0 it keeps only what its workers take next
        # (a buffer of 64 on a shared store, + 2 on the wire); the rest are given back and node 1,
        # woken by that, delivers them long before node 0's SMTP timeouts, without polling.
        stuck, healthy = self.start_peer(fault="hold-data"), self.start_peer()
        self.addCleanup(lambda: stuck.release(1000))
        a = self.start_nodes(stuck, count=1, THREADS=2)[0]
        b = self.start_nodes(healthy, count=1, first=1, THREADS=2)[0]
        jobs, held = 100, 64 + 2
        refs = []
        for i in range(jobs):
            r = a.post_send(mail(test_id="stuck-%03d" % i))
            self.assertEqual(r.status, 202, r)
            refs.append(r.json()["ref"])
        wait_until(lambda: len(healthy.messages()) >= jobs - held, timeout=60,
                   what="node 1 delivering node 0's backlog")
        self.assertLessEqual(len([e for e in stuck.fault_events() if e.get("mode") == "hold-data"]), 2)
        done = [b.status(r) for r in refs]
        self.assertGreaterEqual(sum(1 for st, doc in done if doc.get("status") == "completed"), jobs - held, done)

    def test_a_postgresql_restart_is_survived(self):
        peer = self.start_peer()
        nodes = self.start_nodes(peer, count=2)
        refs = []
        for i in range(4):
            r = nodes[i % 2].post_send(mail(test_id="before-%d" % i))
            self.assertEqual(r.status, 202, r)
            refs.append(r.json()["ref"])
        nodes[0].wait_all_completed(refs, timeout=60)
        self.pg.stop()
        # No 202 without a commit: the store is away.
        for i in range(4):
            r = nodes[i % 2].post_send(mail(test_id="during-%d" % i))
            self.assertJsonError(r, 503)
        self.pg.restart()
        accepted = {}

        def submit_ok(node, test_id):
            r = node.post_send(mail(test_id=test_id))
            if r.status == 202:
                accepted[test_id] = r.json()["ref"]
                return True
            self.assertJsonError(r, 503)
            return False
        for i, node in enumerate(nodes):
            wait_until(lambda: submit_ok(node, "after-%d-%d" % (i, len(accepted))), timeout=30,
                       what="node %d accepting again" % i)
        nodes[1].wait_all_completed(list(accepted.values()), timeout=60)
        by_id = messages_by_test_id(peer)
        for test_id in accepted:
            self.assertEqual(len(by_id.get(test_id, [])), 1, test_id)
        self.assertFalse(any(k.startswith("during-") for k in by_id))

    # -- the admin figures are the gateway's (the nodes table) --------------------------------

    def figures_agree(self, nodes, **expected):
        """Every node's /admin/queue has the `expected` values; returns the answers."""
        answers = [n.queue() for n in nodes]
        for q in answers:
            for key, value in expected.items():
                if q.get(key) != value:
                    return None
        return answers

    def assert_documented_queue(self, q):
        with open(SPEC_PATH) as f:
            spec = json.load(f)
        self.assertEqual(validate({"$ref": "#/components/schemas/Queue"}, q, spec), [], q)

    def rows_by_id(self, q):
        self.assertIn("nodes", q)
        return {row["node_id"]: row for row in q["nodes"]}

    def test_every_node_reports_the_gateways_figures_and_its_nodes(self):
        peer = self.start_peer()
        nodes = self.start_nodes(peer)
        reqs = payloads(90, "figures")
        refs = self.submit_round_robin(nodes, reqs)
        nodes[0].wait_all_completed(list(refs.values()), timeout=120)
        # Each node writes its row about once a second: the answers converge.
        answers = []
        wait_until(lambda: answers.append(self.figures_agree(nodes, submitted_total=90, delivered_total=90,
                                                             failed_total=0, queued=0, in_flight=0))
                   or answers[-1] is not None, timeout=30, what="every node reporting the gateway's totals")
        for i, q in enumerate(answers[-1]):
            self.assert_documented_queue(q)
            self.assertEqual(q["workers"], 3 * THREADS, q)
            self.assertEqual(q["completed"], 90, q)
            rows = self.rows_by_id(q)
            self.assertEqual(sorted(rows), ["node0", "node1", "node2"], q)
            self.assertTrue(all(r["live"] and not r["stopped"] for r in rows.values()), q)
            self.assertEqual([k for k, r in rows.items() if r["self"]], ["node%d" % i], q)
            self.assertEqual(sum(r["workers"] for r in rows.values()), 3 * THREADS, q)
            # Round robin: 30 submits on each node; the deliveries add up whoever made them.
            self.assertEqual([r["submitted_total"] for r in rows.values()], [30, 30, 30], q)
            self.assertEqual(sum(r["delivered_total"] for r in rows.values()), 90, q)
            self.assertLessEqual(rows["node%d" % i]["started"], rows["node%d" % i]["seen"], q)

        # kill -9: after the liveness window the node is listed, not live, its counts still in.
        nodes[2].kill9()
        wait_until(lambda: all(not self.rows_by_id(n.queue())["node2"]["live"] for n in nodes[:2]),
                   timeout=LIVE_WINDOW_S + 20, what="node2 not live on the survivors")
        for n in nodes[:2]:
            q = n.queue()
            self.assertEqual(q["workers"], 2 * THREADS, q)
            self.assertEqual((q["submitted_total"], q["delivered_total"]), (90, 90), q)
            dead = self.rows_by_id(q)["node2"]
            self.assertFalse(dead["stopped"], q)
            self.assertEqual(dead["submitted_total"], 30, q)

        # The survivors go on counting from there.
        more = self.submit_round_robin(nodes[:2], payloads(10, "after-kill"), workers=4)
        nodes[1].wait_all_completed(list(more.values()), timeout=60)
        wait_until(lambda: self.figures_agree(nodes[:2], submitted_total=100, delivered_total=100) is not None,
                   timeout=30, what="100 submitted and delivered on both survivors")

        # A clean stop is listed at once as stopped (no liveness window to wait out).
        nodes[1].stop()
        q = nodes[0].queue()
        self.assert_documented_queue(q)
        rows = self.rows_by_id(q)
        self.assertTrue(rows["node1"]["stopped"] and not rows["node1"]["live"], q)
        self.assertEqual(q["workers"], THREADS, q)
        self.assertEqual(q["submitted_total"], 100, q)

        # The same NODE_ID again: its counters go on from its row, the totals never go down.
        before = rows["node1"]
        nodes[1].start()
        wait_until(lambda: self.rows_by_id(nodes[0].queue())["node1"]["live"], timeout=20, what="node1 live again")
        for n in (nodes[0], nodes[1]):
            q = n.queue()
            self.assertEqual((q["submitted_total"], q["delivered_total"]), (100, 100), q)
            self.assertEqual(q["workers"], 2 * THREADS, q)
            again = self.rows_by_id(q)["node1"]
            self.assertEqual(again["submitted_total"], before["submitted_total"], q)
            self.assertGreaterEqual(again["started"], before["started"], q)

        # websmtpctl queue prints the nodes as a table; --json passes them through.
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        argv = [WEBSMTPCTL, "--admin", "http://127.0.0.1:%d" % nodes[0].admin_port, "queue"]
        p = subprocess.run(argv, capture_output=True, env=clean_env(), timeout=30)
        out = p.stdout.decode("utf-8")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("NODE", out)
        lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("node")}
        self.assertIn("(this)", lines["node0"], out)
        self.assertIn("live", lines["node1"], out)
        self.assertIn("silent", lines["node2"], out)
        p = subprocess.run(argv + ["--json"], capture_output=True, env=clean_env(), timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(sorted(r["node_id"] for r in doc["nodes"]), ["node0", "node1", "node2"], doc)

    def test_in_flight_is_the_gateways_and_apart_from_queued(self):
        # Every worker of two nodes holds a transaction the peer does not finish: in_flight is
        # theirs together, and those jobs are not also counted queued.
        peer = self.start_peer(fault="hold-data")
        nodes = self.start_nodes(peer, count=2)
        jobs = 2 * THREADS + 6
        self.submit_round_robin(nodes, payloads(jobs, "inflight"), workers=4)
        wait_until(lambda: sum(1 for e in peer.fault_events() if e.get("mode") == "hold-data") >= 2 * THREADS,
                   timeout=30, what="every worker of both nodes on the wire")
        expected = dict(in_flight=2 * THREADS, workers_busy=2 * THREADS, queued=jobs - 2 * THREADS,
                        submitted_total=jobs)
        wait_until(lambda: self.figures_agree(nodes, **expected) is not None, timeout=30,
                   what="both nodes reporting %s" % expected)
        peer.set_fault("none")
        peer.release(1000)


if __name__ == "__main__":
    unittest.main()
