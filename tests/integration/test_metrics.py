"""GET /metrics on the admin port: the whole answer read by a strict parser of the Prometheus
text format (0.0.4), the families and label sets the contract names, histogram invariants,
and figures that move with load against the real websmtpd and an aiosmtpd peer."""

import json
import math
import re
import threading
import time
import unittest

from harness import IntegrationTestCase, mail, wait_until

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(AssertionError):
    pass


def parse_value(text, where):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise FormatError("%s: %r is not a number" % (where, text))
    return float(text)


def parse_labels(text, where):
    """The inside of {...}: name="value" pairs, values with \\\\, \\" and \\n escapes."""
    labels = {}
    i = 0
    while i < len(text):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise FormatError("%s: bad label at %r" % (where, text[i:]))
        name = m.group(1)
        i += m.end()
        value = []
        while True:
            if i >= len(text):
                raise FormatError("%s: unterminated label value" % where)
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text) or text[i + 1] not in "\\\"n":
                    raise FormatError("%s: bad escape in label value" % where)
                value.append("\n" if text[i + 1] == "n" else text[i + 1])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise FormatError("%s: raw newline in a label value" % where)
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise FormatError("%s: label %s twice" % (where, name))
        labels[name] = "".join(value)
        if i < len(text):
            if text[i] != ",":
                raise FormatError("%s: expected , after a label, got %r" % (where, text[i:]))
            i += 1
    return labels


def family_of(sample_name, families):
    """The family a sample belongs to: itself, or a histogram's _bucket/_sum/_count."""
    if sample_name in families:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if families.get(base, {}).get("type") in ("histogram", "summary"):
                return base
    return None


def parse_exposition(text):
    """Parses the whole text format strictly; returns {family: {"type", "help", "samples":
    [(name, labels, value)]}}. Raises FormatError on anything the format does not allow."""
    if not text.endswith("\n"):
        raise FormatError("the exposition does not end with a newline")
    families = {}
    seen_series = set()
    finished = set()  # families whose samples are over (no interleaving)
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % n
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise FormatError("%s: bad metric name %r" % (where, name))
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if fam["samples"]:
                    raise FormatError("%s: %s for %s after its samples" % (where, parts[1], name))
                if parts[1] == "HELP":
                    if fam["help"] is not None:
                        raise FormatError("%s: second HELP for %s" % (where, name))
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                else:
                    if fam["type"] is not None:
                        raise FormatError("%s: second TYPE for %s" % (where, name))
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise FormatError("%s: bad TYPE line %r" % (where, line))
                    fam["type"] = parts[3]
                if current is not None and current != name:
                    finished.add(current)
                current = name
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?\d+)?\Z", line)
        if not m:
            raise FormatError("%s: not a sample line: %r" % (where, line))
        name, labels_text, value_text = m.group(1), m.group(3), m.group(4)
        labels = parse_labels(labels_text, where) if labels_text else {}
        value = parse_value(value_text, where)
        fam_name = family_of(name, families)
        if fam_name is None:
            raise FormatError("%s: sample %s has no TYPE before it" % (where, name))
        if fam_name in finished:
            raise FormatError("%s: samples of %s are not together" % (where, fam_name))
        if current is not None and current != fam_name:
            finished.add(current)
        current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise FormatError("%s: series %r twice" % (where, key))
        seen_series.add(key)
        families[fam_name]["samples"].append((name, labels, value))
    return families


def histogram_series(fam_name, fam):
    """{labels without le: {"buckets": [(le, v)], "sum": v, "count": v}} with invariants checked."""
    series = {}
    for name, labels, value in fam["samples"]:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam_name + "_bucket":
            if "le" not in labels:
                raise FormatError("%s_bucket without le" % fam_name)
            s["buckets"].append((parse_value(labels["le"], fam_name), value))
        elif name == fam_name + "_sum":
            s["sum"] = value
        elif name == fam_name + "_count":
            s["count"] = value
        else:
            raise FormatError("%s: unexpected sample %s" % (fam_name, name))
    for rest, s in series.items():
        where = "%s%r" % (fam_name, rest)
        les = [le for le, _ in s["buckets"]]
        if les != sorted(les) or len(set(les)) != len(les):
            raise FormatError("%s: le not strictly ascending: %r" % (where, les))
        if not les or les[-1] != math.inf:
            raise FormatError("%s: no le=\"+Inf\" bucket" % where)
        counts = [v for _, v in s["buckets"]]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise FormatError("%s: buckets not cumulative: %r" % (where, counts))
        if s["count"] is None or s["sum"] is None:
            raise FormatError("%s: missing _sum or _count" % where)
        if counts[-1] != s["count"]:
            raise FormatError("%s: +Inf bucket %r != _count %r" % (where, counts[-1], s["count"]))
        if s["count"] < 0 or any(c != int(c) for c in counts):
            raise FormatError("%s: counts are not whole numbers" % where)
    return series


class ParserSelfTest(unittest.TestCase):
    """The parser refuses what the format does not allow (so its passing means something)."""

    def test_refuses_malformed_expositions(self):
        good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\n"
        parse_exposition(good)
        for bad in [
            good[:-1],                                            # no final newline
            "a_total 1\n",                                        # no TYPE
            "# TYPE a_total counter\na_total{k=\"v} 1\n",         # unterminated value
            "# TYPE a_total counter\na_total{k=\"v\",k=\"w\"} 1\n",  # label twice
            "# TYPE a_total counter\na_total 1\na_total 2\n",    # series twice
            "# TYPE a_total counter\na_total one\n",              # not a number
            "# TYPE a counter\n# TYPE b counter\na 1\nb 1\na{x=\"1\"} 1\n",  # interleaved
            "# TYPE a counter\n# TYPE a gauge\na 1\n",            # TYPE twice
        ]:
            with self.assertRaises(FormatError, msg=bad):
                parse_exposition(bad)
        h = parse_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                             "h_sum 1\nh_count 1\n")
        with self.assertRaises(FormatError):
            histogram_series("h", h["h"])


EXPECTED = {
    # family: (type, label names of every sample (le aside))
    "websmtp_submits_total": ("counter", None),  # {result} or {result, code}
    "websmtp_deliveries_total": ("counter", {"outcome", "class"}),
    "websmtp_queue_jobs": ("gauge", {"state"}),
    "websmtp_queue_oldest_queued_age_seconds": ("gauge", set()),
    "websmtp_paused": ("gauge", set()),
    "websmtp_workers": ("gauge", set()),
    "websmtp_workers_busy": ("gauge", set()),
    "websmtp_long_polls_waiting": ("gauge", set()),
    "websmtp_delivery_latency_seconds": ("histogram", set()),
    "websmtp_delivery_attempts": ("histogram", set()),
    "websmtp_smtp_sessions_total": ("counter", {"event"}),
    "websmtp_store_commit_duration_seconds": ("histogram", set()),
    "websmtp_process_start_time_seconds": ("gauge", set()),
    "websmtp_uptime_seconds": ("gauge", set()),
}


class MetricsTest(IntegrationTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        # One worker: its relay session is kept from one job to the next. Deferrals wait a minute.
        self.daemon = self.start_daemon(**self.relay_env(self.peer, THREADS="1", RETRY_MIN="60s", RETRY_MAX="60s"))

    def scrape(self):
        r = self.daemon.request("GET", "/metrics", admin=True)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        families = parse_exposition(r.body.decode("utf-8"))
        for name, fam in families.items():
            self.assertTrue(name.startswith("websmtp_"), name)
            self.assertIsNotNone(fam["type"], "%s has no TYPE" % name)
            self.assertTrue(fam["help"], "%s has no HELP" % name)
            self.assertEqual(name.endswith("_total"), fam["type"] == "counter", name)
            if fam["type"] == "histogram":
                histogram_series(name, fam)
        return families

    @staticmethod
    def value(families, name, **labels):
        """A sample's value; 0 for a series not written (a code never refused)."""
        fam = families.get(family_of(name, families) or name)
        for n, l, v in fam["samples"] if fam else []:
            if n == name and l == labels:
                return v
        return 0.0

    def test_families_types_and_label_sets(self):
        families = self.scrape()
        self.assertEqual(set(families), set(EXPECTED))
        for name, (typ, label_names) in EXPECTED.items():
            fam = families[name]
            self.assertEqual(fam["type"], typ, name)
            self.assertTrue(fam["samples"], name)
            for _, labels, value in fam["samples"]:
                names = set(labels) - {"le"}
                if label_names is not None:
                    self.assertEqual(names, label_names, (name, labels))
                self.assertFalse(math.isnan(value), name)
        combos = {(l["outcome"], l["class"]) for _, l, _ in families["websmtp_deliveries_total"]["samples"]}
        self.assertEqual(combos, {(o, c) for o in ("delivered", "deferred", "failed")
                                  for c in ("2xx", "4xx", "5xx", "none")})
        self.assertEqual({l["state"] for _, l, _ in families["websmtp_queue_jobs"]["samples"]},
                         {"queued", "in_flight", "deferred", "completed", "failed"})
        self.assertEqual({l["event"] for _, l, _ in families["websmtp_smtp_sessions_total"]["samples"]},
                         {"opened", "reused"})
        for _, labels, _ in families["websmtp_submits_total"]["samples"]:
            self.assertIn(labels.get("result"), ("accepted", "rejected"))
            self.assertEqual(set(labels), {"result"} if labels["result"] == "accepted" else {"result", "code"})
        start = self.value(families, "websmtp_process_start_time_seconds")
        self.assertLessEqual(abs(start - time.time()), 120)
        self.assertGreaterEqual(self.value(families, "websmtp_uptime_seconds"), 0)
        self.assertEqual(self.value(families, "websmtp_workers"), 1)

    def test_figures_move_with_load(self):
        before = self.scrape()
        n = 5
        refs = [self.daemon.submit(mail(to=["ok%d@example.net" % i])) for i in range(n)]
        self.daemon.wait_all_completed(refs, timeout=60)
        # Refused submits, counted by their code.
        self.assertJsonError(self.daemon.post_send(b"{not json"), 400, "invalid_json")
        self.assertJsonError(self.daemon.post_send({"to": ["a@example.net"], "subject": "s", "body": "b"}),
                             400, "missing_field", "from")
        self.assertJsonError(self.daemon.post_send({"from": "a@example.org", "to": ["a@example.net"],
                                                    "subject": "s", "body": "b"}, {"Idempotency-Key": ""}),
                             400, "invalid_idempotency_key")
        # A recipient the peer refuses and one it defers.
        ref = self.daemon.submit(mail(to=["reject1@example.net", "defer1@example.net"]))
        self.daemon.wait_status(ref, lambda d: all(r["attempts"] >= 1 for r in d["recipients"]))
        after = self.scrape()

        def delta(name, **labels):
            return self.value(after, name, **labels) - self.value(before, name, **labels)

        self.assertEqual(delta("websmtp_submits_total", result="accepted"), n + 1)
        for code in ("invalid_json", "missing_field", "invalid_idempotency_key"):
            self.assertEqual(delta("websmtp_submits_total", result="rejected", code=code), 1, code)
        self.assertEqual(delta("websmtp_deliveries_total", outcome="delivered", **{"class": "2xx"}), n)
        self.assertEqual(delta("websmtp_deliveries_total", outcome="failed", **{"class": "5xx"}), 1)
        self.assertEqual(delta("websmtp_deliveries_total", outcome="deferred", **{"class": "4xx"}), 1)
        self.assertEqual(delta("websmtp_delivery_latency_seconds_count"), n)
        self.assertGreater(delta("websmtp_delivery_latency_seconds_sum"), 0)
        self.assertEqual(delta("websmtp_delivery_attempts_count"), n + 1)  # the deferred one is not final
        self.assertEqual(delta("websmtp_delivery_attempts_bucket", le="1"), n + 1)
        opened = delta("websmtp_smtp_sessions_total", event="opened")
        reused = delta("websmtp_smtp_sessions_total", event="reused")
        self.assertEqual(opened + reused, n + 1)  # one transaction per job
        self.assertGreaterEqual(opened, 1)
        self.assertGreaterEqual(reused, 1)  # one worker keeps its relay session
        self.assertGreaterEqual(delta("websmtp_store_commit_duration_seconds_count"), 2)

        # The queue gauges are /admin/queue's figures (nothing moves now: the deferral waits 60 s).
        queue = self.daemon.queue()
        after = self.scrape()
        for state in ("queued", "deferred", "completed", "failed", "in_flight"):
            self.assertEqual(self.value(after, "websmtp_queue_jobs", state=state), queue[state], state)
        self.assertEqual(self.value(after, "websmtp_queue_jobs", state="completed"), n)
        self.assertEqual(self.value(after, "websmtp_queue_jobs", state="deferred"), 1)

    def test_a_batch_counts_each_job(self):
        before = self.scrape()
        jobs = [mail(to=["ok@example.net"]) for _ in range(3)]
        r = self.daemon.request("POST", "/mail/batch", body=json.dumps({"jobs": jobs}).encode(),
                                headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 202, r.body)
        self.daemon.wait_all_completed(r.json()["refs"])
        bad = self.daemon.request("POST", "/mail/batch", body=b'{"jobs": []}',
                                  headers={"Content-Type": "application/json"})
        self.assertJsonError(bad, 422, "invalid_batch_size")
        after = self.scrape()
        self.assertEqual(self.value(after, "websmtp_submits_total", result="accepted")
                         - self.value(before, "websmtp_submits_total", result="accepted"), 3)
        self.assertEqual(self.value(after, "websmtp_submits_total", result="rejected", code="invalid_batch_size"), 1)

    def test_long_polls_waiting_counts_a_parked_long_poll(self):
        self.assertEqual(self.value(self.scrape(), "websmtp_long_polls_waiting"), 0)
        # Deferred for a minute: "processing" until the cancel below completes it.
        ref = self.daemon.submit(mail(to=["defer-lp@example.net"]))
        self.daemon.wait_status(ref, lambda d: d["status"] == "processing", what="%s deferred" % ref)
        answer = {}

        def poll():
            answer["r"] = self.daemon.request("GET", "/mail/status/%s?wait=25&since=processing" % ref)
        t = threading.Thread(target=poll)
        t.start()
        self.addCleanup(t.join, 60)
        wait_until(lambda: self.value(self.scrape(), "websmtp_long_polls_waiting") == 1, timeout=20,
                   what="the long-poll counted as waiting")
        self.assertNotIn("r", answer)
        r = self.daemon.request("POST", "/admin/jobs/%s/cancel" % ref, admin=True)
        self.assertEqual(r.status, 200, r.body)
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(answer["r"].status, 200, answer["r"])
        self.assertEqual(answer["r"].json()["status"], "completed")
        self.assertEqual(self.value(self.scrape(), "websmtp_long_polls_waiting"), 0)

    def test_only_the_admin_port_serves_it(self):
        r = self.daemon.request("POST", "/metrics", admin=True)
        self.assertJsonError(r, 405, "method_not_allowed")
        # Not on the public port.
        self.assertJsonError(self.daemon.request("GET", "/metrics"), 404, "not_found")


class MetricsAuthTest(IntegrationTestCase):

    def test_metrics_need_the_admin_token_and_count_refusals_before_the_handler(self):
        token = "t" * 32
        daemon = self.start_daemon(ADMIN_TOKEN=token, DELIVERY="sandbox", AUTH_MODE="keys")
        self.assertJsonError(daemon.request("GET", "/metrics", admin=True), 401, "unauthorized")
        # Refused by the authentication step, before the submit handler runs.
        self.assertJsonError(daemon.post_send(mail()), 401, "unauthorized")
        self.assertJsonError(daemon.post_send(mail(), {"Authorization": "Bearer sk_nonsense"}), 401, "unauthorized")
        # Not a submit: not counted.
        self.assertJsonError(daemon.request("GET", "/mail/status/" + "0" * 36), 401, "unauthorized")
        r = daemon.request("GET", "/metrics", admin=True, headers={"Authorization": "Bearer " + token})
        self.assertEqual(r.status, 200)
        fams = parse_exposition(r.body.decode())
        self.assertEqual(MetricsTest.value(fams, "websmtp_submits_total", result="rejected", code="unauthorized"), 2)
        self.assertEqual(MetricsTest.value(fams, "websmtp_submits_total", result="accepted"), 0)


if __name__ == "__main__":
    unittest.main()
