"""The .deb works: built with cpack from the build tree (the binaries already built), unpacked
with dpkg-deb into a temporary root, its paths agree with the systemd unit (ExecStart, the
env file it names, conffiles, StateDirectory), and the unpacked websmtpd, run the way the unit
runs it (its ExecStart arguments and Environment= rebased into the root, DATA_DIR standing for
StateDirectory), accepts a job and completes it in sandbox mode."""

import glob
import gzip
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness
from harness import IntegrationTestCase, mail, wait_until

CPACK_TIMEOUT = 240


def build_dir_of(binary):
    d = os.path.dirname(os.path.abspath(binary))
    for _ in range(6):
        if os.path.exists(os.path.join(d, "CPackConfig.cmake")):
            return d
        d = os.path.dirname(d)
    return None


def parse_unit(text):
    """{section: [(key, value)]}; repeated keys kept in order."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def unit_values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def unit_value(unit, section, key):
    values = unit_values(unit, section, key)
    return values[-1] if values else None


class PackageTest(IntegrationTestCase):

    @classmethod
    def setUpClass(cls):
        harness.require_binary(harness.WEBSMTPD, "WEBSMTPD")
        for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s is not installed" % tool)
        build = build_dir_of(harness.WEBSMTPD)
        if not build:
            raise unittest.SkipTest("no CPackConfig.cmake above %s" % harness.WEBSMTPD)
        cls.tmp = tempfile.mkdtemp(prefix="websmtp-pkg.")
        out = os.path.join(cls.tmp, "out")
        r = subprocess.run(["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", out],
                           cwd=build, capture_output=True, text=True, timeout=CPACK_TIMEOUT)
        if r.returncode != 0:
            raise AssertionError("cpack failed:\n%s\n%s" % (r.stdout[-4000:], r.stderr[-4000:]))
        debs = glob.glob(os.path.join(out, "*.deb"))
        if len(debs) != 1:
            raise AssertionError("expected one .deb, got %r" % debs)
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        cls.control = os.path.join(cls.tmp, "control")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True, timeout=60)
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True, timeout=60)
        cls.files = set()
        for dirpath, _, files in os.walk(cls.root):
            for f in files:
                cls.files.add("/" + os.path.relpath(os.path.join(dirpath, f), cls.root))
        units = [f for f in cls.files if f.endswith("/systemd/system/websmtpd.service")]
        if len(units) != 1:
            raise AssertionError("expected one websmtpd.service in %r" % sorted(cls.files))
        cls.unit_path = units[0]
        with open(cls.rooted(cls.unit_path)) as f:
            cls.unit = parse_unit(f.read())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "tmp", "/nonexistent"), ignore_errors=True)

    @classmethod
    def rooted(cls, path):
        return os.path.join(cls.root, path.lstrip("/"))

    def exec_start(self):
        return shlex.split(unit_value(self.unit, "Service", "ExecStart"))

    def credentials(self):
        """LoadCredential=name:path -> {name: path}."""
        out = {}
        for v in unit_values(self.unit, "Service", "LoadCredential"):
            name, _, path = v.partition(":")
            out[name] = path
        return out

    def env_file(self):
        """The file ExecStart's --env-file reads, as a path in the package: through
        ${CREDENTIALS_DIRECTORY}/<name> when it is a credential."""
        argv = self.exec_start()
        self.assertIn("--env-file", argv)
        arg = argv[argv.index("--env-file") + 1]
        m = re.fullmatch(r"\$\{CREDENTIALS_DIRECTORY\}/([^/]+)", arg)
        if m:
            self.assertIn(m.group(1), self.credentials(), "--env-file names a credential the unit does not load")
            return self.credentials()[m.group(1)]
        return arg

    def conffiles(self):
        path = os.path.join(self.control, "conffiles")
        self.assertTrue(os.path.exists(path), "the package has no conffiles")
        with open(path) as f:
            return [l.strip() for l in f if l.strip()]

    def test_control_has_shlibdeps_dependencies(self):
        out = subprocess.run(["dpkg-deb", "-f", self.deb, "Package", "Depends", "Architecture"],
                             capture_output=True, text=True, check=True).stdout
        fields = dict(l.split(": ", 1) for l in out.strip().splitlines())
        self.assertEqual(fields["Package"], "websmtp")
        depends = fields.get("Depends", "")
        for lib in ("libc6", "libstdc++6", "libsqlite3", "libssl"):
            self.assertIn(lib, depends)
        self.assertRegex(depends, r"libpistache")

    def test_paths_agree_with_the_unit(self):
        for binary in ("/usr/bin/websmtpd", "/usr/bin/websmtpctl"):
            self.assertIn(binary, self.files)
            self.assertTrue(os.access(self.rooted(binary), os.X_OK), binary)
        self.assertFalse([f for f in self.files if f.startswith("/usr/etc/")], "configuration under /usr/etc")
        argv = self.exec_start()
        self.assertIn(argv[0], self.files, "ExecStart names a binary the package does not hold")
        env_file = self.env_file()
        self.assertTrue(env_file.startswith("/etc/"), env_file)
        self.assertIn(env_file, self.files)
        self.assertEqual(self.conffiles(), [env_file])
        # It holds secrets (SMTP_PWD, ADMIN_TOKEN): root-only in the package.
        listing = subprocess.run(["dpkg-deb", "-c", self.deb], capture_output=True, text=True, check=True).stdout
        [entry] = [l for l in listing.splitlines() if l.endswith("." + env_file)]
        self.assertTrue(entry.startswith("-rw-------"), entry)
        for f in unit_values(self.unit, "Service", "EnvironmentFile"):
            f = f.lstrip("-")
            self.assertIn(f, self.conffiles())
            with open(self.rooted(f)) as fh:
                for line in fh:
                    # systemd would take a trailing comment into the value
                    self.assertNotRegex(line, r"^\s*[A-Z_]+=.*\s#", "EnvironmentFile with a trailing comment")

    def test_unit_hardening_and_state_directory(self):
        svc = lambda k: unit_value(self.unit, "Service", k)  # noqa: E731
        self.assertEqual(svc("DynamicUser"), "yes")
        self.assertEqual(svc("NoNewPrivileges"), "yes")
        self.assertEqual(svc("ProtectSystem"), "strict")
        state = svc("StateDirectory")
        self.assertEqual(state, "websmtp")
        env = dict(v.split("=", 1) for v in unit_values(self.unit, "Service", "Environment"))
        self.assertEqual(env.get("DATA_DIR"), "/var/lib/" + state)
        self.assertEqual(svc("WorkingDirectory"), "/var/lib/" + state)
        # Under ProtectSystem=strict only the StateDirectory is writable: nothing else may be needed.
        for key in ("ReadWritePaths",):
            for path in unit_values(self.unit, "Service", key):
                self.assertTrue(path.startswith("/var/lib/" + state), path)
        with open(self.rooted(self.env_file())) as f:
            from_file = {}
            for line in f:
                m = re.match(r"^([A-Z_]+)=(\S*)", line)
                if m:
                    from_file[m.group(1)] = m.group(2)
        nofile = int(svc("LimitNOFILE"))
        self.assertGreater(nofile, int(from_file["MAX_CONNECTIONS"]) + 100)
        self.assertEqual(unit_value(self.unit, "Install", "WantedBy"), "multi-user.target")

    def test_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        # The unit as packaged, its ExecStart pointed at the unpacked binary (verify checks that
        # the command exists); --root would need a whole system's units in the root.
        d = os.path.join(self.tmp, "verify")
        os.makedirs(d, exist_ok=True)
        with open(self.rooted(self.unit_path)) as f:
            text = f.read()
        binary = self.exec_start()[0]
        text = text.replace("ExecStart=" + binary, "ExecStart=" + self.rooted(binary))
        unit = os.path.join(d, "websmtpd.service")
        with open(unit, "w") as f:
            f.write(text)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True, text=True, timeout=60)
        # verify exits 0 on unknown keys and bad values too: it must say nothing about the unit.
        ours = [l for l in (r.stdout + r.stderr).splitlines() if "websmtpd.service" in l]
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(ours, [], r.stdout + r.stderr)

    def test_the_conffile_names_every_optional_feature_and_tells_the_truth(self):
        with open(self.rooted(self.env_file())) as f:
            text = f.read()
        self.assertNotIn("not available yet", text)
        for key in ("AUTH_MODE", "RATE_LIMIT_IP", "TRUSTED_PROXIES", "DNS_SERVER", "MX_TLS", "DKIM_KEYS_DIR",
                    "DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_KEY_FILE", "WEBHOOK_SECRET", "WEBHOOK_RETRY_MIN",
                    "WEBHOOK_RETRY_MAX", "WEBHOOK_ALLOW_PRIVATE"):
            lines = [l for l in text.splitlines() if l.startswith("#%s=" % key)]
            self.assertEqual(len(lines), 1, key)  # commented out, one line, with what it does
            self.assertIn("# ", lines[0].split("=", 1)[1], key)
        # SMTP_HELO's default as websmtpd itself describes it.
        r = subprocess.run([harness.WEBSMTPD, "--help"], capture_output=True, text=True, timeout=60)
        helo = next(l for l in r.stdout.splitlines() if "[env SMTP_HELO]" in l)
        self.assertIn("empty: localhost", helo)
        self.assertRegex(text, r"\nSMTP_HELO= +# EHLO name; empty: localhost")

    def test_man_pages_and_completion_when_packaged(self):
        man = sorted(f for f in self.files if f.startswith("/usr/share/man/"))
        completions = sorted(f for f in self.files if "/bash-completion/" in f)
        # Both are installed (the build makes them from the binary): a package without them is broken.
        self.assertTrue(man, "the package has no manual page")
        self.assertTrue(completions, "the package has no bash completion")
        for f in man:
            self.assertRegex(f, r"^/usr/share/man/man[1-8]/[^/]+\.[1-8](\.gz)?$")
            opener = gzip.open if f.endswith(".gz") else open
            with opener(self.rooted(f), "rb") as fh:
                self.assertIn(b".TH", fh.read(4096), f)
        for f in completions:
            self.assertTrue(f.startswith("/usr/share/bash-completion/completions/"), f)
            with open(self.rooted(f), "rb") as fh:
                self.assertIn(b"complete", fh.read(), f)

    def test_unpacked_daemon_runs_as_the_unit_says(self):
        state = os.path.join(self.tmp, "state")  # stands for StateDirectory (/var/lib/websmtp)
        os.makedirs(state, exist_ok=True)
        ready = os.path.join(self.tmp, "ready.json")
        log_path = os.path.join(self.tmp, "websmtpd.log")

        # What systemd does for LoadCredential=: a copy in a directory of the service's own.
        creds = os.path.join(self.tmp, "credentials")
        os.makedirs(creds, exist_ok=True)
        for name, path in self.credentials().items():
            shutil.copyfile(self.rooted(path), os.path.join(creds, name))

        def rebase(arg):
            arg = arg.replace("${CREDENTIALS_DIRECTORY}", creds)
            return self.rooted(arg) if arg.startswith(("/etc/", "/usr/")) else arg
        argv = [rebase(a) for a in self.exec_start()]
        env = harness.clean_env()
        env["CREDENTIALS_DIRECTORY"] = creds
        for assignment in unit_values(self.unit, "Service", "Environment"):
            k, v = assignment.split("=", 1)
            env[k] = state if v == "/var/lib/websmtp" else v
        # Test-only: ephemeral ports on loopback, and a ready file to learn them.
        env.update({"PORT": "0", "ADMIN_PORT": "0", "HOST": "127.0.0.1", "READY_FILE": ready})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=state, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def log_text():
            with open(log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.addCleanup(stop)

        def is_ready():
            if proc.poll() is not None:
                raise AssertionError("websmtpd exited with %s:\n%s" % (proc.returncode, log_text()))
            try:
                with open(ready) as f:
                    return json.load(f)
            except (FileNotFoundError, ValueError):
                return None
        info = wait_until(is_ready, 20, what="the packaged websmtpd to be ready")
        port = int(info["port"])

        def request(method, path, body=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                return r.status, r.read()
            finally:
                conn.close()
        status, body = request("POST", "/mail/send", json.dumps(mail(to=["bob@example.net"])).encode())
        self.assertEqual(status, 202, body)
        ref = json.loads(body)["ref"]

        def completed():
            s, b = request("GET", "/mail/status/" + ref)
            doc = json.loads(b)
            return doc if s == 200 and doc["status"] == "completed" else None
        doc = wait_until(completed, 30, what="the job to complete")
        self.assertEqual(doc["failed"], [])
        # The env file's DELIVERY=sandbox wrote the message into the state directory.
        self.assertTrue(glob.glob(os.path.join(state, "sandbox", ref + "*")), os.listdir(state))
        stop()
        self.assertEqual(proc.returncode, 0, log_text())


if __name__ == "__main__":
    unittest.main()
