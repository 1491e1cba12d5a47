"""websmtpctl against a real websmtpd: output, stdin bodies, and exit codes
(0 ok, 1 refused or failed, 2 usage, 3 cannot connect)."""

import json
import os
import subprocess
import unittest
import uuid

from harness import (WEBSMTPCTL, IntegrationTestCase, clean_env, closed_port_socket, parse_message,
                     require_binary)

CLI_TIMEOUT = 90


class CliTestCase(IntegrationTestCase):

    def setUp(self):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")

    def ctl(self, *args, stdin=None, env=None, daemon=None):
        daemon = daemon or self.daemon
        argv = [WEBSMTPCTL]
        if daemon is not None:
            argv += ["--server", "http://127.0.0.1:%d" % daemon.port,
                     "--admin", "http://127.0.0.1:%d" % daemon.admin_port]
        argv += list(args)
        p = subprocess.run(argv, input=(stdin or "").encode("utf-8"), capture_output=True, env=clean_env(env),
                           timeout=CLI_TIMEOUT)
        self._logs.append(("websmtpctl %s" % " ".join(args[:3]),
                           "rc=%d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout.decode("utf-8", "replace"),
                                                                 p.stderr.decode("utf-8", "replace"))))
        return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")

    def assertOneErrorLine(self, stderr):
        lines = stderr.splitlines()
        self.assertEqual(len(lines), 1, "expected one line on stderr, got %r" % stderr)
        self.assertTrue(lines[0].strip())


class SandboxCliTest(CliTestCase):

    def setUp(self):
        super().setUp()
        self.daemon = self.start_daemon(DELIVERY="sandbox")

    def eml(self, ref):
        with open(os.path.join(self.daemon.data_dir, "sandbox", ref + ".eml"), "rb") as f:
            return parse_message(f.read().decode("utf-8", "surrogateescape"))

    def test_send_prints_the_ref_and_exits_0(self):
        rc, out, err = self.ctl("send", "--from", "Alice <alice@example.org>", "--to", "bob@example.net",
                                "--to", "carol@example.com", "--subject", "From the CLI", "--body", "cli body")
        self.assertEqual(rc, 0, err)
        ref = out.strip()
        self.assertEqual(out, ref + "\n")
        uuid.UUID(ref)
        doc = self.daemon.wait_completed(ref)
        self.assertEqual([r["address"] for r in doc["recipients"]], ["bob@example.net", "carol@example.com"])
        msg = self.eml(ref)
        self.assertEqual(msg["Subject"], "From the CLI")
        self.assertEqual(msg.get_payload(decode=True).decode().rstrip("\r\n"), "cli body")

    def test_send_wait_exits_0_once_delivered(self):
        rc, out, err = self.ctl("send", "--from", "alice@example.org", "--to", "bob@example.net",
                                "--subject", "wait for me", "--body", "x", "--wait")
        self.assertEqual(rc, 0, err)
        ref = out.splitlines()[0].strip()
        code, doc = self.daemon.status(ref)
        self.assertEqual(code, 200)
        self.assertEqual(doc["status"], "completed")
        self.assertEqual(doc["recipients"][0]["state"], "delivered")

    def test_send_reads_the_body_from_stdin(self):
        body = "line one from stdin\nline two: ünïcödé ✓\n"
        rc, out, err = self.ctl("send", "--from", "alice@example.org", "--to", "bob@example.net",
                                "--subject", "stdin", stdin=body)
        self.assertEqual(rc, 0, err)
        ref = out.strip()
        self.daemon.wait_completed(ref)
        text = self.eml(ref).get_payload(decode=True).decode("utf-8").replace("\r\n", "\n")
        self.assertEqual(text, body)

    def test_send_body_file_dash_reads_stdin(self):
        rc, out, err = self.ctl("send", "--from", "alice@example.org", "--to", "bob@example.net",
                                "--subject", "dash", "--body-file", "-", stdin="via dash\n")
        self.assertEqual(rc, 0, err)
        ref = out.strip()
        self.daemon.wait_completed(ref)
        self.assertIn("via dash", self.eml(ref).get_payload(decode=True).decode())

    def test_send_json_prints_the_server_answer(self):
        rc, out, err = self.ctl("send", "--from", "alice@example.org", "--to", "bob@example.net",
                                "--subject", "json", "--body", "x", "--json")
        self.assertEqual(rc, 0, err)
        answer = json.loads(out)
        uuid.UUID(answer["ref"])

    def test_status_json_prints_the_status_document(self):
        ref = self.daemon.submit({"from": "alice@example.org", "to": ["bob@example.net"], "subject": "s",
                                  "body": "b"})
        expected = self.daemon.wait_completed(ref)
        rc, out, err = self.ctl("status", ref, "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), expected)

    def test_status_text_names_the_ref_and_state(self):
        ref = self.daemon.submit({"from": "alice@example.org", "to": ["bob@example.net"], "subject": "s",
                                  "body": "b"})
        self.daemon.wait_completed(ref)
        rc, out, err = self.ctl("status", ref)
        self.assertEqual(rc, 0, err)
        self.assertIn(ref, out)
        self.assertIn("completed", out)
        self.assertIn("bob@example.net", out)

    def test_status_of_unknown_ref_exits_1(self):
        rc, out, err = self.ctl("status", str(uuid.uuid4()))
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertOneErrorLine(err)

    def test_status_of_malformed_ref_exits_1(self):
        rc, out, err = self.ctl("status", "not-a-ref")
        self.assertIn(rc, (1, 2))
        self.assertOneErrorLine(err)

    def test_refused_send_exits_1_with_the_server_error(self):
        rc, out, err = self.ctl("send", "--from", "alice@example.org", "--to", "not an address",
                                "--subject", "s", "--body", "b")
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertOneErrorLine(err)
        self.assertIn("invalid_address", err)

    def test_queue_json_reads_the_admin_api(self):
        self.daemon.wait_completed(self.daemon.submit(
            {"from": "alice@example.org", "to": ["bob@example.net"], "subject": "s", "body": "b"}))
        rc, out, err = self.ctl("queue", "--json")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["submitted_total"], 1)
        self.assertEqual(doc["workers"], 1)
        self.assertIs(doc["paused"], False)

    def test_queue_text_lists_the_figures(self):
        rc, out, err = self.ctl("queue")
        self.assertEqual(rc, 0, err)
        self.assertIn("queued", out)
        self.assertIn("workers", out)

    def test_server_url_from_environment(self):
        env = {"WEBSMTP_URL": "http://127.0.0.1:%d" % self.daemon.port}
        p = subprocess.run([WEBSMTPCTL, "send", "--from", "alice@example.org", "--to", "bob@example.net",
                            "--subject", "env", "--body", "b"], capture_output=True, env=clean_env(env),
                           timeout=CLI_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.daemon.wait_completed(p.stdout.decode().strip())


class RelayCliTest(CliTestCase):

    def test_send_wait_exits_1_when_a_recipient_fails(self):
        peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(peer))
        rc, out, err = self.ctl("send", "--from", "alice@example.org", "--to", "ok@example.net",
                                "--to", "reject1@example.net", "--subject", "s", "--body", "b", "--wait")
        self.assertEqual(rc, 1, err)
        ref = out.splitlines()[0].strip()
        uuid.UUID(ref)
        self.assertIn("reject1@example.net", out)
        self.assertTrue(err.strip())


class CliWithoutServerTest(CliTestCase):
    daemon = None

    def test_unreachable_server_exits_3_with_one_line(self):
        closed = closed_port_socket()
        self.addCleanup(closed.close)
        url = "http://127.0.0.1:%d" % closed.getsockname()[1]
        for args in (["--server", url, "send", "--from", "a@example.org", "--to", "b@example.net",
                      "--subject", "s", "--body", "b"],
                     ["--server", url, "status", str(uuid.uuid4())],
                     ["--admin", url, "queue"]):
            with self.subTest(args=args[2]):
                rc, out, err = self.ctl(*args)
                self.assertEqual(rc, 3, err)
                self.assertEqual(out, "")
                self.assertOneErrorLine(err)

    def test_usage_errors_exit_2(self):
        for args in ([],
                     ["send", "--from", "a@example.org", "--subject", "s", "--body", "b"],  # no --to
                     ["send", "--to", "b@example.net", "--subject", "s", "--body", "b"],  # no --from
                     ["send", "--from", "a@example.org", "--to", "b@example.net", "--body", "b"],  # no --subject
                     ["send", "--from", "a", "--to", "b", "--subject", "s", "--body", "b", "--body-file", "f"],
                     ["status"],
                     ["frobnicate"],
                     ["queue", "--no-such-option"]):
            with self.subTest(args=args):
                rc, out, err = self.ctl(*args)
                self.assertEqual(rc, 2, err)
                self.assertTrue(err.strip() or out.strip())


class KeysCliTest(CliTestCase):
    """websmtpctl keys create|list|revoke, and --api-key against AUTH_MODE=keys."""

    def setUp(self):
        super().setUp()
        self.daemon = self.start_daemon(DELIVERY="sandbox", AUTH_MODE="keys")

    def test_create_use_list_and_revoke_a_key(self):
        rc, out, err = self.ctl("keys", "create", "--name", "billing", "--sender", "*@example.org",
                                "--rate-per-minute", "100")
        self.assertEqual(rc, 0, err)
        key = out.strip()
        self.assertTrue(key.startswith("sk_"), out)
        self.assertIn("only time the key is shown", err)
        # Without a key the send is refused (exit 1, the server's error); with it, accepted.
        rc, out, err = self.ctl("send", "--from", "a@example.org", "--to", "b@example.net", "--subject", "s",
                                "--body", "hi")
        self.assertEqual(rc, 1)
        self.assertIn("Authorization", err)
        rc, out, err = self.ctl("--api-key", key, "send", "--from", "a@example.org", "--to", "b@example.net",
                                "--subject", "s", "--body", "hi", "--json")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertIn("status_token", doc)
        rc, out, err = self.ctl("--api-key", key, "status", doc["ref"], "--json")
        self.assertEqual(rc, 0, err)
        # The list shows the prefix and policy, never the key.
        rc, out, err = self.ctl("keys", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn(key[:12] + "...", out)
        self.assertNotIn(key, out)
        self.assertIn("senders=*@example.org", out)
        self.assertIn("live", out)
        rc, out, err = self.ctl("keys", "list", "--json")
        listed = json.loads(out)["keys"]
        self.assertEqual(len(listed), 1)
        key_id = listed[0]["id"]
        self.assertNotEqual(listed[0]["last_used"], 0)
        rc, out, err = self.ctl("keys", "revoke", key_id)
        self.assertEqual((rc, out.strip()), (0, "revoked " + key_id), err)
        rc, out, err = self.ctl("keys", "revoke", key_id)
        self.assertEqual(rc, 1)
        rc, out, err = self.ctl("--api-key", key, "send", "--from", "a@example.org", "--to", "b@example.net",
                                "--subject", "s", "--body", "hi")
        self.assertEqual(rc, 1)
        rc, out, err = self.ctl("keys", "list")
        self.assertIn("revoked", out)

    def test_publishable_key_needs_an_origin_and_bad_options_are_usage_errors(self):
        rc, out, err = self.ctl("keys", "create", "--name", "form", "--publishable")
        self.assertEqual(rc, 1)
        self.assertIn("origins", err)
        rc, out, err = self.ctl("keys", "create", "--name", "form", "--publishable", "--origin",
                                "https://shop.example", "--recipient", "owner@shop.example", "--json")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertTrue(doc["key"].startswith("pk_"))
        self.assertEqual(doc["origins"], ["https://shop.example"])
        rc, out, err = self.ctl("keys", "create", "--name", "x", "--rate-per-day", "-3")
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl("keys")
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    unittest.main()
