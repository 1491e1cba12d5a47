"""`websmtpctl top` against a real websmtpd and an aiosmtpd peer.

The full-screen view runs in a detached tmux session of a fixed size (its own server socket,
killed at the end); the test reads the screen with `capture-pane -p`, types keys with
`send-keys`, and compares what the screen says with the admin API. A wrapper shell records
websmtpctl's exit status and the terminal's modes after it ends; `remain-on-exit` keeps the
pane, so `#{alternate_on}` shows whether the alternate screen was left.
The non-terminal mode (plain key=value lines, --count, --interval) runs as a pipe.
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid

from harness import (WEBSMTPCTL, IntegrationTestCase, clean_env, closed_port_socket, mail, require_binary,
                     wait_until)

TMUX = shutil.which("tmux")
COLUMNS, ROWS = 120, 40
SCREEN_TIMEOUT = 20.0
CLI_TIMEOUT = 60
KEYS_LINE = "p pause/resume   r retry deferred   q quit"
ADMIN_TOKEN = "top-test-admin-token-0123456789"


def figures_on(screen, label):
    """The `name number` pairs of the screen line that starts with `label`."""
    for line in screen.splitlines():
        if line.startswith(label):
            return {name: int(value) for name, value in re.findall(r"([a-z_]+) (\d+)", line)}
    return None


class TmuxTop:
    """websmtpctl top in a detached tmux session with its own server (-L socket)."""

    def __init__(self, test, admin_url, lang="C.UTF-8", extra_args=(), global_args=()):
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="websmtp-top.")
        self.socket = "websmtp-top-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self.rc_file = os.path.join(self.dir, "rc")
        self.stty_file = os.path.join(self.dir, "stty")
        conf = os.path.join(self.dir, "tmux.conf")
        with open(conf, "w") as f:
            # The pane stays after websmtpctl ends (its screen can be read); no status bar, so
            # the program gets all the rows.
            f.write("set -g remain-on-exit on\nset -g status off\n")
        self.conf = conf
        env = {k: v for k, v in clean_env().items() if k not in ("LC_ALL", "LC_CTYPE", "TMUX")}
        env["LANG"] = lang
        self.env = env
        argv = [WEBSMTPCTL, "--admin", admin_url] + list(global_args) + ["top", "--interval", "0.3"] + list(extra_args)
        # The wrapper catches SIGINT (a caught signal is reset to default in websmtpctl) so that
        # Ctrl-C, which goes to the whole foreground group, ends websmtpctl only.
        command = "trap : INT; %s; echo $? > %s; stty -a > %s" % (
            " ".join(shlex.quote(a) for a in argv), shlex.quote(self.rc_file), shlex.quote(self.stty_file))
        test.addCleanup(self.kill)
        self.tmux("new-session", "-d", "-s", "top", "-x", str(COLUMNS), "-y", str(ROWS), "sh -c " + shlex.quote(command))

    def tmux(self, *args):
        p = subprocess.run([TMUX, "-L", self.socket, "-f", self.conf] + list(args), capture_output=True,
                           env=self.env, timeout=10)
        if p.returncode != 0:
            raise AssertionError("tmux %s failed: %s" % (args[0], p.stderr.decode("utf-8", "replace")))
        return p.stdout.decode("utf-8", "replace")

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "top")

    def pane(self, fmt):
        return self.tmux("display-message", "-p", "-t", "top", fmt).strip()

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "top", *keys)

    def wait_screen(self, predicate, what, timeout=SCREEN_TIMEOUT):
        last = {}

        def check():
            last["screen"] = self.screen()
            return predicate(last["screen"])
        try:
            return wait_until(check, timeout, interval=0.1, what=what)
        except AssertionError as e:
            raise AssertionError("%s; screen:\n%s" % (e, last.get("screen")))

    def wait_text(self, text, timeout=SCREEN_TIMEOUT):
        return self.wait_screen(lambda s: s if text in s else None, "%r on the screen" % text, timeout)

    def wait_exit(self):
        """Waits for websmtpctl and its wrapper to end; returns websmtpctl's exit status."""
        wait_until(lambda: self.pane("#{pane_dead}") == "1", SCREEN_TIMEOUT, interval=0.1, what="top to exit")
        with open(self.rc_file) as f:
            return int(f.read().strip())

    def kill(self):
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, env=self.env, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_top_plain(admin_url, *args, env=None):
    """websmtpctl top with stdout a pipe: (exit status, stdout, stderr)."""
    p = subprocess.run([WEBSMTPCTL, "--admin", admin_url, "top"] + list(args), capture_output=True,
                       env=clean_env(env), stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


class TopHelpers:
    """For test cases with self.admin_url: top on screen until it shows figures, and q."""

    def start_top(self, **kwargs):
        top = TmuxTop(self, self.admin_url, **kwargs)
        top.wait_text("delivery running")
        return top

    def quit(self, top):
        top.keys("q")
        self.assertEqual(top.wait_exit(), 0)


class TopTestCase(TopHelpers, IntegrationTestCase):

    def setUp(self):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        if TMUX is None:
            self.fail("tmux is not installed (Debian package tmux, in the Makefile's TEST_DEPS)")
        self.peer = self.start_peer()
        # Deferred recipients wait an hour unless someone retries them: `r` must be what
        # delivers them.
        self.daemon = self.start_daemon(**self.relay_env(self.peer, RETRY_MIN="1h", RETRY_MAX="2h"))
        self.admin_url = "http://127.0.0.1:%d" % self.daemon.admin_port

    def submit(self, *recipients):
        return self.daemon.submit(mail(to=list(recipients), subject="top test"))

    def wait_screen_matches_api(self, top, keys=("queued", "in_flight", "deferred", "completed", "failed")):
        """Polls until the screen's queue and totals lines show the admin API's figures."""
        def same(screen):
            api = self.daemon.queue()
            queue = figures_on(screen, "Queue")
            totals = figures_on(screen, "Totals")
            if queue is None or totals is None:
                return None
            want_totals = {"submitted": api["submitted_total"], "delivered": api["delivered_total"],
                           "failed": api["failed_total"]}
            if all(queue.get(k) == api[k] for k in keys) and totals == want_totals:
                return (screen, api)
            return None
        return top.wait_screen(same, "the screen to show the API's figures")


class TopScreenTest(TopTestCase):

    def test_live_figures_follow_the_api_and_q_restores_the_terminal(self):
        top = TmuxTop(self, self.admin_url)
        screen = top.wait_text("delivery running")
        self.assertIn(KEYS_LINE, screen.splitlines()[ROWS - 1])
        self.assertEqual(top.pane("#{alternate_on}"), "1")
        self.assertEqual(figures_on(screen, "Queue")["queued"], 0)

        refs = [self.submit("bob%d@example.net" % i) for i in range(5)]
        self.daemon.wait_all_completed(refs)
        screen, api = self.wait_screen_matches_api(top)
        self.assertEqual(api["submitted_total"], 5)
        self.assertEqual(figures_on(screen, "Queue")["completed"], api["completed"])
        workers = re.search(r"busy (\d+)/(\d+)", screen)
        self.assertIsNotNone(workers, screen)
        self.assertEqual(int(workers.group(2)), api["workers"])
        # Five submits within the last minute: the submit sparkline has a bar above the floor.
        submit_row = next(line for line in screen.splitlines() if line.strip().startswith("submit"))
        self.assertRegex(submit_row, "[\u2582-\u2588]", screen)

        self.quit(top)
        self.assertEqual(top.pane("#{alternate_on}"), "0")
        self.assertNotIn("delivery running", top.screen())
        with open(top.stty_file) as f:
            modes = f.read().split()
        self.assertIn("icanon", modes)
        self.assertIn("echo", modes)

    def test_ctrl_c_quits_with_status_0(self):
        top = self.start_top()
        top.keys("C-c")
        self.assertEqual(top.wait_exit(), 0)
        self.assertEqual(top.pane("#{alternate_on}"), "0")

    def test_resize_redraws_to_the_new_size(self):
        top = self.start_top()
        top.tmux("resize-window", "-t", "top", "-x", "70", "-y", "18")

        def fits(screen):
            lines = screen.split("\n")
            rows = [line for line in lines if line]
            return screen if rows and rows[-1].startswith("p pause/resume") and lines.index(rows[-1]) == 17 \
                and all(len(line) <= 70 for line in lines) else None
        top.wait_screen(fits, "the keys line on row 18 of a 70x18 screen")
        self.quit(top)

    def test_ascii_sparklines_when_the_locale_is_not_utf8(self):
        top = TmuxTop(self, self.admin_url, lang="C")
        top.wait_text("delivery running")  # the first figures are the rates' baseline
        self.daemon.wait_all_completed([self.submit("bob@example.net")])
        screen, _ = self.wait_screen_matches_api(top)
        self.assertTrue(all(ord(c) < 128 for c in screen), screen)
        submit_row = next(line for line in screen.splitlines() if line.strip().startswith("submit"))
        self.assertRegex(submit_row, r"[.\-:=+*#]", screen)
        self.quit(top)

    def test_survives_the_server_going_away_and_coming_back(self):
        top = self.start_top()
        port, admin_port = self.daemon.port, self.daemon.admin_port
        self.daemon.stop()
        top.wait_text("cannot connect to " + self.admin_url)
        self.daemon.start(PORT=port, ADMIN_PORT=admin_port)
        top.wait_screen(lambda s: s if "delivery running" in s and "cannot connect" not in s else None,
                        "the view to recover")
        self.quit(top)


class TopActionTest(TopTestCase):
    """The keys that act on the queue (POST /admin/pause, /admin/resume, /admin/retry) and the
    latest failures (GET /admin/jobs?state=failed, GET /admin/jobs/:ref)."""

    def test_p_pauses_and_resumes_delivery(self):
        top = self.start_top()
        top.keys("p")
        wait_until(lambda: self.daemon.queue()["paused"] is True, SCREEN_TIMEOUT, what="the daemon to pause")
        screen = top.wait_text("delivery PAUSED")
        self.assertIn("delivery paused", screen.splitlines()[ROWS - 2])

        # Submits are still accepted while paused, and wait in the queue.
        ref = self.submit("bob@example.net")
        screen, api = self.wait_screen_matches_api(top)
        self.assertEqual(api["queued"], 1)
        self.assertEqual(figures_on(screen, "Queue")["queued"], 1)

        top.keys("p")
        wait_until(lambda: self.daemon.queue()["paused"] is False, SCREEN_TIMEOUT, what="the daemon to resume")
        top.wait_text("delivery resumed")
        top.wait_text("delivery running")
        self.daemon.wait_completed(ref)
        self.quit(top)

    def test_r_retries_deferred_jobs(self):
        top = self.start_top()
        ref = self.submit("deferonce-top@example.net")
        self.daemon.wait_status(ref, lambda d: d["recipients"][0]["state"] == "deferred")
        screen, api = self.wait_screen_matches_api(top)
        self.assertEqual(figures_on(screen, "Queue")["deferred"], 1)

        top.keys("r")
        top.wait_text("retried 1 deferred job")
        doc = self.daemon.wait_completed(ref)
        self.assertEqual(doc["recipients"][0]["state"], "delivered")
        screen, api = self.wait_screen_matches_api(top)
        self.assertEqual(figures_on(screen, "Queue")["deferred"], 0)
        self.quit(top)

    def test_latest_failures_show_their_smtp_reply(self):
        top = self.start_top()
        ref = self.submit("reject-top@example.net")
        self.daemon.wait_completed(ref)
        screen = top.wait_text("reject-top@example.net")
        lines = screen.splitlines()
        at = next(i for i, line in enumerate(lines) if "reject-top@example.net" in line and " ref " in line)
        # The whole ref on a 120-column screen (for `websmtpctl show`), the reply on the next row.
        self.assertTrue(lines[at].endswith("ref " + ref), lines[at])
        self.assertRegex(lines[at + 1], r"^ +rejected: 550 5\.1\.1 <reject-top@example\.net>: user unknown$")
        self.quit(top)


class TopTokenTest(TopHelpers, IntegrationTestCase):
    """An admin API that wants ADMIN_TOKEN: top sends --admin-token, and without it shows the
    server's refusal (and that of each key's action) instead of figures."""

    def setUp(self):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        if TMUX is None:
            self.fail("tmux is not installed (Debian package tmux, in the Makefile's TEST_DEPS)")
        self.daemon = self.start_daemon(DELIVERY="sandbox", ADMIN_TOKEN=ADMIN_TOKEN)
        self.admin_url = "http://127.0.0.1:%d" % self.daemon.admin_port

    def test_without_the_token_the_refusal_is_on_screen(self):
        top = TmuxTop(self, self.admin_url)
        top.wait_text("the server refused: ")
        self.assertRegex(top.screen(), r"the server refused: .*\(unauthorized\)")
        top.keys("p")
        screen = top.wait_text("pause failed: ")
        self.assertRegex(screen.splitlines()[ROWS - 2], r"pause failed: .*\(unauthorized\)")
        self.quit(top)

    def test_with_the_token_the_figures_show_and_the_keys_act(self):
        top = self.start_top(global_args=("--admin-token", ADMIN_TOKEN))
        top.keys("r")
        top.wait_text("retried 0 deferred jobs")
        self.assertNotIn("refused", top.screen())
        self.quit(top)

    def test_plain_mode_reports_the_refusal_and_exits_1(self):
        rc, out, err = run_top_plain(self.admin_url, "--count", "1")
        self.assertEqual(rc, 1, err)
        self.assertRegex(out, r"^time=\d+ error=refused detail=\"the server refused: .*unauthorized.*\"\n$")
        rc, out, err = run_top_plain(self.admin_url, "--count", "1", env={"WEBSMTP_ADMIN_TOKEN": ADMIN_TOKEN})
        self.assertEqual(rc, 0, err)
        self.assertIn(" queued=0 ", out)


class TopPlainTest(TopTestCase):

    def ctl(self, *args, admin_url=None):
        rc, out, err = run_top_plain(admin_url or self.admin_url, *args)
        self._logs.append(("websmtpctl top %s" % " ".join(args), "rc=%d\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)))
        return rc, out, err

    def test_count_prints_one_key_value_line_per_refresh(self):
        refs = [self.submit("bob%d@example.net" % i) for i in range(3)]
        self.daemon.wait_all_completed(refs)
        api = self.daemon.wait_idle()
        rc, out, err = self.ctl("--count", "3", "--interval", "0.2")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3, out)
        for line in lines:
            self.assertNotIn("\x1b", line)
            fields = dict(item.split("=", 1) for item in line.split())
            for key in ("queued", "in_flight", "deferred", "completed", "failed", "workers", "submitted_total",
                        "delivered_total", "failed_total"):
                self.assertEqual(int(fields[key]), api[key], (key, line))
            self.assertEqual(fields["paused"], "false")
            self.assertRegex(fields["submit_rate"], r"^\d+\.\d\d$")
            self.assertRegex(fields["time"], r"^\d+$")

    def test_count_against_a_closed_port_reports_and_exits_3(self):
        with closed_port_socket() as s:
            rc, out, err = self.ctl("--count", "2", "--interval", "0.1",
                                    admin_url="http://127.0.0.1:%d" % s.getsockname()[1])
        self.assertEqual(rc, 3, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        for line in lines:
            self.assertRegex(line, r"^time=\d+ error=cannot_connect detail=\".*\"$")

    def test_bad_options_are_usage_errors(self):
        for args in (["--interval", "0"], ["--interval", "nan"], ["--count", "-1"], ["--failures", "99"]):
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 2, (args, err))
            self.assertEqual(out, "")
