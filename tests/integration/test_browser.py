"""A real browser against websmtpd (api.md, "CORS" and "Authentication, keys and limits").

Headless Debian Chromium, driven over the DevTools protocol, loads a contact-form page
(tests/support/browser_site/contact.html) from one loopback origin; the page sends a job
with fetch() and a publishable key to websmtpd on another origin and follows it with status
long-polls. From the key's origin the browser lets it through and the message reaches the
SMTP peer; from any other origin the browser's own CORS check refuses it before the job is
ever sent. The test reads only what a user would see (the page's DOM) plus the peer.

Skipped only when Chromium or python3-websocket is not installed (`make test-deps` installs
both, so under `make test` it runs).
"""

import json
import os
import re
import unittest
import urllib.parse

from harness import (HERE, WEBSMTPD, IntegrationTestCase, messages_by_test_id, new_test_id, parse_message,
                     require_binary)

import browser  # tests/support/browser.py (harness puts tests/support on sys.path)

SITE_DIR = os.path.join(os.path.dirname(HERE), "support", "browser_site")
OWNER = "owner@shop.example"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Generous: the page's whole run is one submit and a few long-polls on loopback.
PAGE_TIMEOUT = 45.0
EVENT_TIMEOUT = 15.0


def header(response, name):
    """A header of a CDP Network.Response (a plain dict: compare names case-insensitively)."""
    return next((v for k, v in response["headers"].items() if k.lower() == name.lower()), None)


class BrowserTest(IntegrationTestCase):
    """One browser and two web sites for the class; a fresh peer, daemon and key per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_binary(WEBSMTPD, "WEBSMTPD")
        reason = browser.unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        # Each stops itself if it fails to start; once started, the class cleanup stops it
        # (by PID and process group) whatever the tests do.
        cls.site = browser.StaticSite(SITE_DIR)
        cls.addClassCleanup(cls.site.stop)
        cls.other_site = browser.StaticSite(SITE_DIR)
        cls.addClassCleanup(cls.other_site.stop)
        cls.chromium = browser.Chromium()
        cls.addClassCleanup(cls.chromium.stop)

    def extra_logs(self):
        return [("chromium", self.chromium.log_text()), ("site", self.site.log_text()),
                ("other site", self.other_site.log_text())]

    def setUp(self):
        self.peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(self.peer, AUTH_MODE="keys", HOST="127.0.0.1"))
        self.api = "http://127.0.0.1:%d" % self.daemon.port
        # The key is bound to the first site only; CORS_ORIGINS is not set.
        r = self.daemon.request("POST", "/admin/keys", admin=True, headers={"Content-Type": "application/json"},
                                body=json.dumps({"name": "contact form", "type": "publishable",
                                                 "origins": [self.site.origin], "recipients": [OWNER]}).encode())
        self.assertEqual(r.status, 201, r.body)
        self.key = r.json()["key"]
        self.assertTrue(self.key.startswith("pk_"), self.key)

    def open_contact_form(self, site, test_id):
        query = urllib.parse.urlencode({"api": self.api, "key": self.key, "to": OWNER, "test_id": test_id})
        tab = self.chromium.open(site.origin + "/contact.html?" + query)
        self.addCleanup(tab.close)
        return tab

    def answers(self, tab, kind, path, count=None):
        """The responses the browser received for requests of `kind` (a CDP resource type:
        Preflight, Fetch, ...) to websmtpd at `path` (a prefix, with the query), as its
        Network domain recorded them; with `count`, waits until there are that many."""
        def match(e):
            return e["type"] == kind and e["response"]["url"].startswith(self.api + path)
        if count:
            tab.wait_events("Network.responseReceived", match, EVENT_TIMEOUT, count)
        return [e["response"] for e in tab.events("Network.responseReceived") if match(e)]

    def preflight_answer(self, tab):
        answers = self.answers(tab, "Preflight", "/mail/send", count=1)
        self.assertEqual(len(answers), 1, "preflights of /mail/send seen by the browser: %r" % answers)
        return answers[0]

    def page_state(self, tab):
        return {name: tab.text("#" + name) for name in ("ref", "status", "states", "error", "outcome")}

    def test_page_on_the_keys_origin_sends_and_follows_the_job_to_completed(self):
        tid = new_test_id()
        tab = self.open_contact_form(self.site, tid)
        outcome = tab.wait_text("#outcome", PAGE_TIMEOUT)
        state = self.page_state(tab)
        self.assertEqual(outcome, "done", state)
        self.assertEqual(state["error"], "", state)
        self.assertEqual(state["status"], "completed", state)
        ref = state["ref"]
        self.assertRegex(ref, UUID)
        # Every state the page was told, in order; it ends at "completed".
        states = tab.evaluate("[...document.querySelectorAll('#states li')].map(li => li.textContent)")
        self.assertEqual(states[-1], "completed", states)
        self.assertTrue(set(states) <= {"not started", "processing", "completed"}, states)
        # The message reached the peer once, to the key's recipient.
        got = messages_by_test_id(self.peer).get(tid, [])
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0]["rcpt_tos"], [OWNER])
        msg = parse_message(got[0]["data"])
        self.assertEqual(msg["Subject"], "Contact form")
        self.assertIn(self.site.origin, msg.get_payload())
        # What the browser saw: websmtpd allowed the preflight for this origin, then accepted the job.
        preflight = self.preflight_answer(tab)
        self.assertEqual(preflight["status"], 204, preflight)
        self.assertEqual(header(preflight, "Access-Control-Allow-Origin"), self.site.origin, preflight)
        self.assertEqual([a["status"] for a in self.answers(tab, "Fetch", "/mail/send", count=1)], [202])
        # It followed the job with long-polls authorised by the status token (at least one per
        # state it showed), each answer readable by the page (CORS).
        polls = self.answers(tab, "Fetch", "/mail/status/", count=len(states))
        for poll in polls:
            self.assertRegex(poll["url"], r"/mail/status/%s\?wait=20&since=[a-z%%0-9]+&token=." % ref)
            self.assertEqual(poll["status"], 200, poll)
            self.assertEqual(header(poll, "Access-Control-Allow-Origin"), self.site.origin, poll)

    def test_page_on_another_origin_is_refused_by_the_browser(self):
        tid = new_test_id()
        tab = self.open_contact_form(self.other_site, tid)
        outcome = tab.wait_text("#outcome", PAGE_TIMEOUT)
        state = self.page_state(tab)
        self.assertEqual(outcome, "failed", state)
        # fetch() rejects with a TypeError when the browser's CORS check fails; the page never
        # sees an answer, so it has no ref and no status.
        self.assertRegex(state["error"], r"^TypeError: ", state)
        self.assertEqual((state["ref"], state["status"]), ("", ""), state)
        # The browser asked websmtpd first (a preflight: the request carries Authorization and
        # a JSON body); websmtpd's answer carried no Access-Control-Allow-Origin, nor any other
        # Access-Control-* header, and that is the reason the browser gives for refusing.
        preflight = self.preflight_answer(tab)
        self.assertIsNone(header(preflight, "Access-Control-Allow-Origin"), preflight)
        self.assertEqual([h for h in preflight["headers"] if h.lower().startswith("access-control-")], [], preflight)
        failed = tab.wait_events("Network.loadingFailed", lambda e: "corsErrorStatus" in e, EVENT_TIMEOUT)
        self.assertEqual([e["corsErrorStatus"]["corsError"] for e in failed],
                         ["PreflightMissingAllowOriginHeader"], failed)
        # So the POST itself was never answered (never sent: websmtpd accepted nothing, below).
        self.assertEqual(self.answers(tab, "Fetch", "/mail/send"), [])
        # Nothing was submitted, and nothing reached the peer.
        q = self.daemon.wait_idle()
        self.assertEqual(q["submitted_total"], 0, q)
        self.assertNotIn(tid, messages_by_test_id(self.peer))


if __name__ == "__main__":
    unittest.main()
