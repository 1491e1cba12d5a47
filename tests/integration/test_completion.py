"""`websmtpctl completion bash`, the manual pages and the install rules.

The completion script is sourced in a real bash and its function is called the way bash's
programmable completion calls it (COMP_WORDS / COMP_CWORD set); the manual page is rendered
with man(1); `cmake --install` into a temporary prefix shows where both land.
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile

from harness import WEBSMTPCTL, WEBSMTPD, IntegrationTestCase, clean_env, require_binary

CLI_TIMEOUT = 60
BASH = shutil.which("bash") or "/bin/bash"


def run(argv, **kwargs):
    p = subprocess.run(argv, capture_output=True, env=kwargs.pop("env", clean_env()), stdin=subprocess.DEVNULL,
                       timeout=CLI_TIMEOUT, **kwargs)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def subcommands_in_help(text):
    """The names listed under 'Subcommands:' in a CLI11 --help."""
    names = []
    in_section = False
    for line in text.splitlines():
        if line.startswith("Subcommands:"):
            in_section = True
            continue
        if in_section:
            m = re.match(r"^  (\S+)\s", line)
            if not m:
                break
            names.append(m.group(1))
    return names


class CompletionTest(IntegrationTestCase):

    def setUp(self):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        rc, self.script, err = run([WEBSMTPCTL, "completion", "bash"])
        self.assertEqual(rc, 0, err)
        self.dir = tempfile.mkdtemp(prefix="websmtp-completion.")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.script_path = os.path.join(self.dir, "websmtpctl.bash")
        with open(self.script_path, "w") as f:
            f.write(self.script)

    def complete(self, *words):
        """What bash offers for the command line `words` with the cursor on the last word."""
        array = " ".join(shlex.quote(w) for w in words)
        program = ("source %s\n"
                   "COMP_WORDS=(%s)\n"
                   "COMP_CWORD=%d\n"
                   "COMP_LINE=\"${COMP_WORDS[*]}\"\n"
                   "COMP_POINT=${#COMP_LINE}\n"
                   "fn=$(complete -p websmtpctl | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n"
                   "\"$fn\" websmtpctl \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
                   "printf '%%s\\n' \"${COMPREPLY[@]}\"\n") % (shlex.quote(self.script_path), array, len(words) - 1)
        rc, out, err = run([BASH, "--norc", "--noprofile", "-c", program], cwd=self.dir)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        return sorted(line for line in out.splitlines() if line)

    def test_the_script_registers_a_completion_function(self):
        rc, out, err = run([BASH, "--norc", "--noprofile", "-c", "source %s; complete -p websmtpctl"
                            % shlex.quote(self.script_path)])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.strip(), r"^complete -F _websmtpctl websmtpctl$")

    def test_completes_subcommands_from_a_prefix(self):
        self.assertEqual(self.complete("websmtpctl", "st"), ["status"])
        self.assertEqual(self.complete("websmtpctl", "to"), ["top"])
        self.assertEqual(self.complete("websmtpctl", "keys", "c"), ["create"])
        self.assertEqual(self.complete("websmtpctl", "completion", ""), ["bash"])

    def test_offers_every_subcommand_of_the_help_and_no_hidden_one(self):
        rc, out, err = run([WEBSMTPCTL, "--help"])
        self.assertEqual(rc, 0, err)
        listed = subcommands_in_help(out)
        self.assertIn("top", listed)
        self.assertIn("completion", listed)
        self.assertEqual(self.complete("websmtpctl", ""), sorted(listed))
        self.assertNotIn("man", listed)
        self.assertEqual(self.complete("websmtpctl", "ma"), [])

    def test_completes_options_of_the_command_and_global_ones(self):
        self.assertEqual(self.complete("websmtpctl", "send", "--su"), ["--subject"])
        self.assertEqual(self.complete("websmtpctl", "keys", "create", "--na"), ["--name"])
        self.assertEqual(self.complete("websmtpctl", "top", "--cou"), ["--count"])
        # Global options may follow the subcommand (the parser falls through to the program's).
        self.assertEqual(self.complete("websmtpctl", "status", "--adm"), ["--admin", "--admin-token"])
        self.assertEqual(self.complete("websmtpctl", "--se"), ["--server"])

    def test_an_option_value_is_not_taken_for_a_command(self):
        self.assertEqual(self.complete("websmtpctl", "--admin", "queue", "q"), ["queue"])
        self.assertEqual(self.complete("websmtpctl", "--admin", "http://127.0.0.1:8081", "qu"), ["queue"])
        # The word after an option that takes a value is its value: nothing to offer for a URL.
        self.assertEqual(self.complete("websmtpctl", "--admin", ""), [])

    def test_fixed_values_of_an_option_are_offered(self):
        self.assertEqual(self.complete("websmtpctl", "jobs", "--state", ""),
                         ["completed", "deferred", "failed", "in_flight", "queued"])
        self.assertEqual(self.complete("websmtpctl", "jobs", "--state", "in"), ["in_flight"])
        self.assertEqual(self.complete("websmtpctl", "jobs", "--limit", ""), [])  # a number: nothing to offer

    def test_another_shell_is_a_usage_error_that_says_so(self):
        rc, out, err = run([WEBSMTPCTL, "completion", "zsh"])
        self.assertEqual(rc, 2)
        self.assertIn("only bash is supported", err)

    def test_file_options_complete_file_names(self):
        with open(os.path.join(self.dir, "body-text.txt"), "w") as f:
            f.write("x")
        self.assertEqual(self.complete("websmtpctl", "send", "--body-file", "body-"), ["body-text.txt"])


class ManualTest(IntegrationTestCase):

    def setUp(self):
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")

    def test_help_is_a_manual(self):
        rc, out, err = run([WEBSMTPCTL, "--help"])
        self.assertEqual(rc, 0, err)
        for heading in ("Examples:", "Environment:", "Exit status:"):
            self.assertIn(heading, out)
        self.assertRegex(out, r"\n  3  cannot connect")
        self.assertIn("WEBSMTP_ADMIN_TOKEN", out)
        rc, out, err = run([WEBSMTPCTL, "top", "--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("--count", out)
        self.assertIn("p pause or resume", out)

    def test_every_command_has_help_with_a_description(self):
        rc, out, err = run([WEBSMTPCTL, "--help"])
        for name in subcommands_in_help(out):
            rc, text, err = run([WEBSMTPCTL, name, "--help"])
            self.assertEqual(rc, 0, (name, err))
            self.assertRegex(text.splitlines()[0], r"\S", name)
            # Its footer names the global options it also takes.
            for option in ("--json", "--server", "--admin", "--api-key", "--admin-token"):
                self.assertRegex(text.split("Global options")[-1], re.escape(option) + r"[ ,]", name)

    def test_man_page_is_generated_from_the_commands_and_renders(self):
        rc, roff, err = run([WEBSMTPCTL, "man"])
        self.assertEqual(rc, 0, err)
        self.assertTrue(roff.startswith(".TH WEBSMTPCTL 1 "), roff[:200])
        built = os.path.join(os.path.dirname(WEBSMTPCTL), "websmtpctl.1")
        with open(built) as f:
            self.assertEqual(f.read(), roff, "the build's websmtpctl.1 is stale")
        rc, text, err = run(["man", "-l", "-P", "cat", built], env=clean_env({"MANWIDTH": "100", "LANG": "C.UTF-8"}))
        self.assertEqual(rc, 0, err)
        for heading in ("NAME", "SYNOPSIS", "GLOBAL OPTIONS", "COMMANDS", "EXAMPLES", "ENVIRONMENT", "EXIT STATUS"):
            self.assertRegex(text, r"(?m)^%s$" % heading)
        rc, out, _ = run([WEBSMTPCTL, "--help"])
        for name in subcommands_in_help(out):
            self.assertRegex(text, r"(?m)^   websmtpctl %s\b" % re.escape(name), name)
        self.assertIn("--admin-token", text)
        self.assertIn("WEBSMTP_ADMIN_URL", text)

    def test_websmtpd_man_page_comes_from_its_help(self):
        require_binary(WEBSMTPD, "WEBSMTPD")
        built = os.path.join(os.path.dirname(WEBSMTPD), "websmtpd.1")
        if shutil.which("help2man") is None:
            self.skipTest("help2man is not installed (Debian package help2man, in the Makefile's DEPS)")
        rc, text, err = run(["man", "-l", "-P", "cat", built], env=clean_env({"MANWIDTH": "200", "LANG": "C.UTF-8"}))
        self.assertEqual(rc, 0, err)
        self.assertRegex(text, r"(?m)^NAME$")
        self.assertIn("websmtpd - HTTP-to-SMTP gateway daemon", text)
        self.assertIn("--admin-port", text)
        self.assertIn("ADMIN_PORT", text)

    def test_install_puts_the_pages_and_the_completion_in_place(self):
        build_dir = os.path.dirname(os.path.dirname(os.path.dirname(WEBSMTPCTL)))
        if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            self.skipTest("WEBSMTPCTL is not in a CMake build tree: %s" % WEBSMTPCTL)
        prefix = tempfile.mkdtemp(prefix="websmtp-install.")
        self.addCleanup(shutil.rmtree, prefix, True)
        rc, out, err = run(["cmake", "--install", build_dir, "--prefix", prefix])
        self.assertEqual(rc, 0, out + err)
        page = os.path.join(prefix, "share", "man", "man1", "websmtpctl.1")
        completion = os.path.join(prefix, "share", "bash-completion", "completions", "websmtpctl")
        with open(page) as f:
            self.assertTrue(f.read().startswith(".TH WEBSMTPCTL 1"))
        with open(completion) as f:
            self.assertIn("complete -F _websmtpctl websmtpctl", f.read())
        if shutil.which("help2man") is not None:
            self.assertTrue(os.path.isfile(os.path.join(prefix, "share", "man", "man1", "websmtpd.1")))
