"""The admin API's queue control against the real websmtpd and a real SMTP peer: jobs and
their paging, a job's history and body, retry, cancel (also of a job out with a worker),
pause and resume (which survives a restart), suppressions (manual, and after a 550 5.1.1),
each through the HTTP API and through websmtpctl."""

import json
import socket
import subprocess
import threading
import time
import uuid

from harness import WEBSMTPCTL, IntegrationTestCase, clean_env, mail, require_binary, wait_until

CLI_TIMEOUT = 60
# Deferred recipients wait an hour: anything retried within a test was retried by the operator.
NO_AUTO_RETRY = {"RETRY_MIN": "1h", "RETRY_MAX": "2h", "THREADS": "2"}


def quiet_for(check, seconds):
    """Asserts that `check()` stays true while polling for `seconds` (a bounded watch for
    something that must not happen: no readiness is waited for)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(0.05)
    return check()


class AdminTestCase(IntegrationTestCase):

    def setUp(self):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")

    def admin(self, method, path):
        body = b"" if method in ("POST", "PUT") else None
        return self.daemon.request(method, path, body=body, admin=True)

    def admin_json(self, method, path, status=200):
        r = self.admin(method, path)
        self.assertEqual(r.status, status, r.body[:500])
        return r.json()

    def ctl(self, *args):
        argv = [WEBSMTPCTL, "--server", "http://127.0.0.1:%d" % self.daemon.port,
                "--admin", "http://127.0.0.1:%d" % self.daemon.admin_port] + list(args)
        p = subprocess.run(argv, capture_output=True, env=clean_env(), timeout=CLI_TIMEOUT)
        out, err = p.stdout.decode("utf-8"), p.stderr.decode("utf-8")
        self._logs.append(("websmtpctl %s" % " ".join(args[:3]), "rc=%d\nstdout:\n%s\nstderr:\n%s"
                           % (p.returncode, out, err)))
        return p.returncode, out, err

    def ctl_json(self, *args):
        rc, out, err = self.ctl(*args, "--json")
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def start(self, fault=None, **env):
        self.peer = self.start_peer(fault=fault)
        e = dict(NO_AUTO_RETRY)
        e.update(env)
        self.daemon = self.start_daemon(**self.relay_env(self.peer, **e))

    def rcpts_to(self, address):
        return [e for e in self.peer.rcpt_events() if e["address"] == address]

    def recipient(self, doc, address):
        return next(r for r in doc["recipients"] if r["address"] == address)

    def wait_deferred(self, ref):
        return self.daemon.wait_status(ref, lambda d: any(r["state"] == "deferred" for r in d["recipients"]),
                                       what="%s to be deferred" % ref)


class PauseTest(AdminTestCase):

    def test_pause_then_submit_then_resume_delivers_and_the_pause_survives_a_restart(self):
        self.start()
        self.assertEqual(self.admin_json("POST", "/admin/pause"), {"paused": True})
        self.assertTrue(self.daemon.queue()["paused"])
        ref = self.daemon.submit(mail(to=["held@example.net"]))  # submits are still accepted
        jobs = self.admin_json("GET", "/admin/jobs?state=queued")["jobs"]
        self.assertEqual([j["ref"] for j in jobs], [ref])
        self.assertTrue(quiet_for(lambda: not self.peer.messages(), 1.0), "delivered while paused")
        self.assertEqual(self.daemon.status(ref)[1]["status"], "not started")

        # An operator who paused during an outage does not want a restart to resume.
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()
        self.assertTrue(self.daemon.queue()["paused"])
        rc, out, err = self.ctl("queue")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"paused\s+true")
        self.assertTrue(quiet_for(lambda: not self.peer.messages(), 0.5), "delivered while paused")

        rc, out, err = self.ctl("resume")
        self.assertEqual(rc, 0, err)
        self.assertIn("resumed", out)
        self.assertFalse(self.daemon.queue()["paused"])
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        self.assertEqual(self.ctl_json("pause"), {"paused": True})
        self.assertEqual(self.ctl_json("resume"), {"paused": False})


class RetryTest(AdminTestCase):

    def test_retry_delivers_a_deferred_job_before_its_retry_time(self):
        self.start()
        ref = self.daemon.submit(mail(to=["deferonce-r1@example.net"], subject="Retry me"))
        doc = self.wait_deferred(ref)
        self.assertGreater(doc["recipients"][0]["next_attempt"], time.time() + 1800)
        listed = self.admin_json("GET", "/admin/jobs?state=deferred")
        self.assertEqual([j["ref"] for j in listed["jobs"]], [ref])
        self.assertGreater(listed["jobs"][0]["next_attempt"], time.time() + 1800)
        self.assertIsNone(listed["next"])

        # The body while it is stored, and the first attempt in the history.
        shown = self.ctl_json("show", ref, "--body")
        self.assertIn("Subject: Retry me", shown["message"])
        self.assertEqual(shown["from"], "alice@example.org")
        self.assertEqual(shown["envelope"], {"mail_from": "alice@example.org", "rcpt_to": ["deferonce-r1@example.net"]})
        self.assertEqual([a["smtp_code"] for a in shown["recipients"][0]["history"]], [451])

        rc, out, err = self.ctl("retry", ref)
        self.assertEqual(rc, 0, err)
        self.assertIn("retrying", out)
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        shown = self.admin_json("GET", "/admin/jobs/%s" % ref)
        history = shown["recipients"][0]["history"]
        self.assertEqual([a["smtp_code"] for a in history], [451, 250])
        self.assertEqual(history[1]["host"], "127.0.0.1")
        self.assertTrue(all(isinstance(a["time"], int) and a["smtp_reply"] for a in history))
        r = self.admin("POST", "/admin/jobs/%s/retry" % ref)
        self.assertJsonError(r, 409, "already_completed")
        rc, out, err = self.ctl("show", ref)
        self.assertEqual(rc, 0, err)
        self.assertIn("attempts for deferonce-r1@example.net", out)
        self.assertRegex(out, r"451 4\.3\.0 .*\n.*250 ")
        rc, out, err = self.ctl("jobs", "--state", "completed")
        self.assertEqual(rc, 0, err)
        self.assertIn(ref, out)
        self.assertIn("deferonce-r1@example.net (delivered)", out)

    def test_retry_all_makes_every_deferred_job_due(self):
        self.start()
        refs = [self.daemon.submit(mail(to=["deferonce-all%d@example.net" % i])) for i in range(3)]
        for ref in refs:
            self.wait_deferred(ref)
        self.assertEqual(self.daemon.queue()["deferred"], 3)
        self.assertEqual(self.ctl_json("retry", "--all"), {"retried": 3})
        for ref in refs:
            self.assertEqual(self.daemon.wait_completed(ref)["recipients"][0]["state"], "delivered")
        self.assertEqual(self.admin_json("POST", "/admin/retry"), {"retried": 0})
        self.assertEqual(self.daemon.queue()["deferred"], 0)


class ShowTest(AdminTestCase):

    def test_show_prints_a_dash_for_an_attempt_without_reply_or_host(self):
        with socket.socket() as probe:  # a loopback port nobody listens on: the connect is refused
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        env = dict(NO_AUTO_RETRY, DELIVERY="relay", SMTP_SERVER="127.0.0.1", SMTP_PORT=str(closed), SMTP_TLS="none")
        self.daemon = self.start_daemon(**env)
        ref = self.daemon.submit(mail(to=["nobody-h1@example.net"]))
        self.wait_deferred(ref)
        attempt = self.recipient(self.admin_json("GET", "/admin/jobs/%s" % ref), "nobody-h1@example.net")["history"][0]
        self.assertEqual((attempt["smtp_code"], attempt["host"]), (0, None))
        rc, out, err = self.ctl("show", ref)
        self.assertEqual(rc, 0, err)
        row = out.split("attempts for nobody-h1@example.net:\n", 1)[1].splitlines()[0]
        self.assertRegex(row, r"^    \S.*  - .*  \(-\)$")


class CancelTest(AdminTestCase):

    def test_cancel_of_a_deferred_job_fails_what_is_not_delivered(self):
        self.start()
        ref = self.daemon.submit(mail(to=["ok-c1@example.net", "defer-c1@example.net"]))
        self.wait_deferred(ref)
        rc, out, err = self.ctl("cancel", ref)
        self.assertEqual(rc, 0, err)
        self.assertIn("cancelled", out)
        code, doc = self.daemon.status(ref)
        self.assertEqual(doc["status"], "completed")
        self.assertEqual(self.recipient(doc, "ok-c1@example.net")["state"], "delivered")
        cancelled = self.recipient(doc, "defer-c1@example.net")
        self.assertEqual((cancelled["state"], cancelled["reason"]), ("failed", "cancelled"))
        self.assertEqual(doc["failed"], ["defer-c1@example.net"])
        q = self.daemon.queue()
        self.assertEqual((q["deferred"], q["failed"]), (0, 1))
        self.assertEqual([j["ref"] for j in self.admin_json("GET", "/admin/jobs?state=failed")["jobs"]], [ref])
        # Once completed: 409, and the CLI exits 1 with the server's words.
        self.assertJsonError(self.admin("POST", "/admin/jobs/%s/cancel" % ref), 409, "already_completed")
        rc, out, err = self.ctl("cancel", ref)
        self.assertEqual(rc, 1)
        self.assertIn("already_completed", err)
        self.assertEqual(self.admin_json("POST", "/admin/retry"), {"retried": 0})  # nothing comes back
        # The cancelled recipient is counted as failed, as a suppressed one is (no SMTP attempt).
        self.assertEqual(q["failed_total"], 1)
        metrics = self.admin("GET", "/metrics").body.decode()
        self.assertIn('websmtp_deliveries_total{outcome="failed",class="none"} 1\n', metrics)

    def test_cancel_of_a_job_out_with_a_worker_wins(self):
        # hold-data: the attempt is on the wire until the test releases the peer's reply.
        self.start(fault="hold-data", RETRY_MIN="1s", RETRY_MAX="1s")
        ref = self.daemon.submit(mail(to=["ok-f1@example.net", "defer-f1@example.net"]))
        self.peer.wait_for_fault_event(1, timeout=20)
        inflight = wait_until(lambda: self.admin_json("GET", "/admin/jobs?state=in_flight")["jobs"], 10,
                              what="the job to be listed in flight")
        self.assertEqual([j["ref"] for j in inflight], [ref])
        self.assertTrue(inflight[0]["in_flight"])
        # Out with a worker: in flight only, in every figure and listing.
        q = self.daemon.queue()
        self.assertEqual((q["queued"], q["in_flight"], q["deferred"], q["oldest_queued_age_s"]), (0, 1, 0, 0))
        self.assertEqual(self.admin_json("GET", "/admin/jobs?state=queued")["jobs"], [])
        metrics = self.admin("GET", "/metrics").body.decode()
        self.assertIn('websmtp_queue_jobs{state="queued"} 0\n', metrics)
        self.assertIn('websmtp_queue_jobs{state="in_flight"} 1\n', metrics)
        doc = self.admin_json("POST", "/admin/jobs/%s/cancel" % ref)
        self.assertEqual(doc["status"], "completed")
        self.peer.release()
        # The attempt finishes: what it delivered stays delivered, the deferral stays cancelled.
        doc = self.daemon.wait_status(
            ref, lambda d: self.recipient(d, "ok-f1@example.net")["state"] == "delivered",
            what="the in-flight attempt's outcome")
        self.assertEqual(doc["status"], "completed")
        cancelled = self.recipient(doc, "defer-f1@example.net")
        self.assertEqual((cancelled["state"], cancelled["reason"]), ("failed", "cancelled"))
        # Nothing is retried (RETRY_MIN is 1 s here): the deferred recipient is never tried again.
        self.assertTrue(quiet_for(lambda: len(self.rcpts_to("defer-f1@example.net")) == 1, 2.5),
                        "a cancelled recipient was retried")
        self.daemon.wait_idle()
        q = self.daemon.queue()
        self.assertEqual((q["queued"], q["deferred"], q["in_flight"], q["completed"], q["failed"]), (0, 0, 0, 0, 1))
        shown = self.admin_json("GET", "/admin/jobs/%s" % ref)
        self.assertEqual([a["smtp_code"] for a in self.recipient(shown, "defer-f1@example.net")["history"]], [451])
        self.assertFalse(shown["in_flight"])


class SuppressionTest(AdminTestCase):

    def test_a_mailbox_reject_suppresses_the_address_for_the_next_job(self):
        self.start()
        first = self.daemon.submit(mail(to=["reject-s1@example.net"]))
        doc = self.daemon.wait_completed(first)
        self.assertEqual(doc["recipients"][0]["smtp_code"], 550)
        listed = wait_until(lambda: self.admin_json("GET", "/admin/suppressions")["suppressions"], 10,
                            what="the bounce to be suppressed")
        self.assertEqual(len(listed), 1)
        self.assertEqual((listed[0]["address"], listed[0]["reason"], listed[0]["smtp_code"]),
                         ("reject-s1@example.net", "bounce", 550))
        self.assertIn("5.1.1", listed[0]["smtp_reply"])
        self.assertIsInstance(listed[0]["created"], int)

        second = self.daemon.submit(mail(to=["Reject-S1@Example.NET", "ok-s1@example.net"]))
        doc = self.daemon.wait_completed(second)
        suppressed = self.recipient(doc, "Reject-S1@Example.NET")
        self.assertEqual((suppressed["state"], suppressed["reason"], suppressed["attempts"]), ("failed", "suppressed", 0))
        self.assertEqual(self.recipient(doc, "ok-s1@example.net")["state"], "delivered")
        self.assertEqual(len([e for e in self.peer.rcpt_events() if e["address"].lower() == "reject-s1@example.net"]), 1)

    def test_a_5_1_x_to_the_end_of_data_suppresses_nobody(self):
        self.start()
        ref = self.daemon.submit(mail(to=["datareject-s3@example.net", "ok-s3@example.net"]))
        doc = self.daemon.wait_completed(ref)
        for r in doc["recipients"]:
            self.assertEqual((r["state"], r["smtp_code"]), ("failed", 550))
        # A RCPT refusal of another mailbox in a later job is still recorded: then the list is
        # known to be written, and holds only that one.
        self.daemon.wait_completed(self.daemon.submit(mail(to=["reject-s3@example.net"])))
        listed = wait_until(lambda: self.admin_json("GET", "/admin/suppressions")["suppressions"], 10,
                            what="the RCPT refusal to be suppressed")
        self.assertEqual([s["address"] for s in listed], ["reject-s3@example.net"])

    def test_one_suppression_per_mailbox_whatever_the_domain_spelling(self):
        self.start()
        r = self.admin("PUT", "/admin/suppressions/Bob@B%C3%9CCHER.example")
        self.assertEqual(r.status, 201, r.body)
        entry = r.json()
        self.assertEqual((entry["address"], entry["reason"]), ("bob@xn--bcher-kva.example", "manual"))
        self.assertIsInstance(entry["created"], int)
        for spelling in ("bob@b%C3%BCcher.example", "BOB@xn--bcher-kva.example"):
            r = self.admin("PUT", "/admin/suppressions/" + spelling)
            self.assertEqual((r.status, r.json()), (200, entry))
        listed = self.admin_json("GET", "/admin/suppressions")["suppressions"]
        self.assertEqual([s["address"] for s in listed], ["bob@xn--bcher-kva.example"])
        ref = self.daemon.submit(mail(to=["bob@b\u00fccher.example", "ok-s4@example.net"]))
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(self.recipient(doc, "bob@b\u00fccher.example")["reason"], "suppressed")
        self.assertFalse(self.rcpts_to("bob@xn--bcher-kva.example"))
        # An automatic one (a RCPT 5.1.1) under the A-labels matches the U-label spelling too.
        self.daemon.wait_completed(self.daemon.submit(mail(to=["reject-s4@xn--bcher-kva.example"])))
        wait_until(lambda: len(self.admin_json("GET", "/admin/suppressions")["suppressions"]) == 2, 10,
                   what="the bounce to be suppressed")
        ref = self.daemon.submit(mail(to=["Reject-S4@B\u00dcCHER.example"]))
        self.assertEqual(self.daemon.wait_completed(ref)["recipients"][0]["reason"], "suppressed")
        self.assertEqual(self.admin("DELETE", "/admin/suppressions/bob@b%C3%BCcher.example").status, 204)

    def test_put_answers_the_stored_entry_and_refuses_unknown_fields(self):
        self.start()
        self.daemon.wait_completed(self.daemon.submit(mail(to=["reject-s5@example.net"])))
        bounce = wait_until(lambda: self.admin_json("GET", "/admin/suppressions")["suppressions"], 10,
                            what="the bounce to be suppressed")[0]
        r = self.admin("PUT", "/admin/suppressions/reject-s5@example.net")
        self.assertEqual((r.status, r.json()), (200, bounce))  # a bounce stays a bounce
        self.assertEqual(r.json()["reason"], "bounce")
        r = self.daemon.request("PUT", "/admin/suppressions/new-s5@example.net", body=b'{"reason": "x"}', admin=True)
        self.assertJsonError(r, 400, "unknown_field", "reason")
        r = self.daemon.request("PUT", "/admin/suppressions/new-s5@example.net", body=b"{}", admin=True)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(sorted(r.json()), ["address", "created", "reason"])

    def test_manual_suppressions_through_the_api_and_websmtpctl(self):
        self.start()
        r = self.admin("PUT", "/admin/suppressions/Manual+tag@Example.NET")
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["address"], "manual+tag@example.net")
        self.assertEqual(self.admin("PUT", "/admin/suppressions/manual+tag@example.net").status, 200)
        self.assertJsonError(self.admin("PUT", "/admin/suppressions/not-an-address"), 400, "invalid_address", "address")
        rc, out, err = self.ctl("suppress", "add", "cli@example.net")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("suppress", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn("manual+tag@example.net", out)
        self.assertIn("cli@example.net", out)
        self.assertEqual(sorted(s["address"] for s in self.ctl_json("suppress", "list")["suppressions"]),
                         ["cli@example.net", "manual+tag@example.net"])
        # Columns line up on display width, whatever the bytes of a UTF-8 address.
        rc, out, err = self.ctl("suppress", "add", "\u00e9l\u00e8ve@example.net")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("suppress", "list")
        rows = [line for line in out.splitlines() if "@example.net" in line]
        self.assertEqual(len({line.rindex("manual") for line in rows}), 1, out)
        self.assertEqual(self.admin("DELETE", "/admin/suppressions/%C3%A9l%C3%A8ve@example.net").status, 204)

        ref = self.daemon.submit(mail(to=["manual+tag@example.net"]))
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(doc["recipients"][0]["reason"], "suppressed")
        self.assertFalse(self.rcpts_to("manual+tag@example.net"))

        self.assertEqual(self.admin("DELETE", "/admin/suppressions/manual%2Btag%40example.net").status, 204)
        self.assertJsonError(self.admin("DELETE", "/admin/suppressions/manual+tag@example.net"), 404, "not_suppressed")
        rc, out, err = self.ctl("suppress", "remove", "cli@example.net")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("suppress", "remove", "cli@example.net")
        self.assertEqual(rc, 1)
        ref = self.daemon.submit(mail(to=["manual+tag@example.net"]))
        self.assertEqual(self.daemon.wait_completed(ref)["recipients"][0]["state"], "delivered")


class AdminTokenTest(AdminTestCase):

    def test_a_401_carries_one_www_authenticate(self):
        self.daemon = self.start_daemon(DELIVERY="sandbox", ADMIN_TOKEN="t0ken-for-the-admin-api")
        r = self.admin("GET", "/admin/queue")
        self.assertJsonError(r, 401, "unauthorized")
        self.assertEqual(r.headers.get_all("WWW-Authenticate"), ["Bearer"])


class JobsListTest(AdminTestCase):

    def test_bad_parameters_and_unknown_refs(self):
        self.start()
        for query, field in (("state=paused", "state"), ("limit=0", "limit"), ("limit=1001", "limit"),
                             ("limit=x", "limit"), ("after=nope", "after"), ("after=%s" % uuid.uuid4(), "after")):
            self.assertJsonError(self.admin("GET", "/admin/jobs?" + query), 400, field=field)
        unknown = str(uuid.uuid4())
        for method, path in (("GET", "/admin/jobs/%s" % unknown), ("POST", "/admin/jobs/%s/retry" % unknown),
                             ("POST", "/admin/jobs/%s/cancel" % unknown)):
            self.assertJsonError(self.admin(method, path), 404, "unknown_ref")
        self.assertJsonError(self.admin("GET", "/admin/jobs/not-a-ref"), 400, "invalid_ref", "ref")
        self.assertJsonError(self.admin("POST", "/admin/jobs/%s/explode" % unknown), 404, "not_found")
        # The other method on a job's paths: 405 naming the one they answer.
        for method, path, allow in (("GET", "/admin/jobs/%s/cancel" % unknown, "POST"),
                                    ("GET", "/admin/jobs/%s/retry" % unknown, "POST"),
                                    ("POST", "/admin/jobs/%s" % unknown, "GET, HEAD")):
            r = self.admin(method, path)
            self.assertJsonError(r, 405, "method_not_allowed")
            self.assertEqual(r.headers.get_all("Allow"), [allow])
        rc, out, err = self.ctl("show", unknown)
        self.assertEqual(rc, 1)
        self.assertIn("unknown_ref", err)
        # With --json the server's error is printed as it came, on stdout; the exit code is the same.
        rc, out, err = self.ctl("show", unknown, "--json")
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out)["code"], "unknown_ref")
        rc, out, err = self.ctl("jobs", "--state", "paused")
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl("retry")
        self.assertEqual(rc, 2)

    def test_paging_over_300_jobs_while_more_arrive_never_repeats_or_skips(self):
        self.start()
        # Jobs arrive (a thread submits) and go (they are delivered) while the pages are read.
        first = [self.daemon.submit(mail(to=["p%d@example.net" % i])) for i in range(300)]
        more = []
        stop = threading.Event()

        def submit_more():
            while not stop.is_set() and len(more) < 200:
                more.append(self.daemon.submit(mail(to=["later@example.net"])))

        t = threading.Thread(target=submit_more)
        t.start()
        try:
            seen = []
            after = None
            for _ in range(100):
                path = "/admin/jobs?limit=37" + ("&after=" + after if after else "")
                page = self.admin_json("GET", path)
                seen += [j["ref"] for j in page["jobs"]]
                after = page["next"]
                if after is None:
                    break
        finally:
            stop.set()
            t.join(timeout=60)
        self.assertEqual(len(seen), len(set(seen)), "a job was listed twice")
        self.assertTrue(set(first) <= set(seen), "%d jobs skipped" % len(set(first) - set(seen)))
        self.assertTrue(set(seen) <= set(first) | set(more))
        # Newest first: the 300 appear in the reverse order of their submits.
        order = [r for r in seen if r in set(first)]
        self.assertEqual(order, list(reversed(first)))
        rc, out, err = self.ctl("jobs", "--limit", "5")
        self.assertEqual(rc, 0, err)
        self.assertIn("more: --after", out)
        self.daemon.wait_idle()
        self.assertEqual(len(self.ctl_json("jobs", "--state", "completed", "--limit", "1000")["jobs"]), 300 + len(more))
