"""A throwaway PostgreSQL 15 server for tests.

initdb in a temporary directory, pg_ctl start on a free port on 127.0.0.1 (never the system
service, never a Unix socket outside that directory), stopped by `pg_ctl stop -m fast` (and by
PID if that fails). initdb refuses to run as root: as root the server runs as the `postgres`
system user (Debian's package creates it) or `nobody`, in a directory that user owns.

    with PostgresServer() as pg:
        os.environ["DATABASE_URL"] = pg.url
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30.0


class Unavailable(Exception):
    """PostgreSQL 15 is not installed here."""


def available():
    return os.access(os.path.join(PG_BIN, "initdb"), os.X_OK) and os.access(os.path.join(PG_BIN, "pg_ctl"), os.X_OK)


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run_as():
    """The unprivileged user to run the server as, or None when already unprivileged."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise Unavailable("running as root and neither 'postgres' nor 'nobody' exists to run PostgreSQL as")


class PostgresServer:
    def __init__(self, user="websmtp", password="websmtp-test", database="websmtp", extra_opts=""):
        self.extra_opts = extra_opts  # more "-c name=value" server settings (bench diagnostics)
        if not available():
            raise Unavailable("PostgreSQL 15 is not installed (%s)" % PG_BIN)
        self.user, self.password, self.database = user, password, database
        self.dir = tempfile.mkdtemp(prefix="websmtp-pg.")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = None
        self.pid = None
        self._as = _run_as()
        if self._as:
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, self._as.pw_uid, self._as.pw_gid)

    @property
    def url(self):
        return "postgresql://%s:%s@127.0.0.1:%d/%s" % (self.user, self.password, self.port, self.database)

    def _cmd(self, args, **kw):
        if self._as:
            args = ["setpriv", "--reuid=%d" % self._as.pw_uid, "--regid=%d" % self._as.pw_gid, "--clear-groups",
                    "--"] + args
        return subprocess.run(args, cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120, **kw)

    def _check(self, args):
        r = self._cmd(args)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (args[0], r.returncode, r.stdout, r.stderr))
        return r

    def start(self):
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._as:
            os.chown(pwfile, self._as.pw_uid, self._as.pw_gid)
        self._check([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", self.user, "--pwfile", pwfile,
                     "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])
        os.unlink(pwfile)
        self.port = _free_port()
        return self._start_server()

    def _start_server(self):
        opts = "-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='%s' -c fsync=off " \
               "-c max_connections=200 -c shared_buffers=32MB" % (self.port, self.dir)
        opts += " " + self.extra_opts
        self._check([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t",
                     str(int(START_TIMEOUT)), "start"])
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        self._wait_ready()
        if not getattr(self, "_created", False):
            self._createdb()
            self._created = True
        return self

    def _createdb(self):
        env = dict(os.environ, PGPASSWORD=self.password)
        r = self._cmd(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres", "-v",
                       "ON_ERROR_STOP=1", "-c", "CREATE DATABASE %s" % self.database], env=env)
        if r.returncode != 0:
            raise RuntimeError("CREATE DATABASE failed: %s%s" % (r.stdout, r.stderr))

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise RuntimeError("PostgreSQL did not accept connections within %.0fs; log:\n%s"
                                       % (START_TIMEOUT, self.log_text()))
                time.sleep(0.05)

    def psql(self, sql):
        """Runs SQL as the test user; returns stdout (unaligned, tuples only)."""
        env = dict(os.environ, PGPASSWORD=self.password)
        r = self._cmd(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", self.database,
                       "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], env=env)
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s%s" % (r.stdout, r.stderr))
        return r.stdout

    def stop(self):
        if self.pid is None:
            return
        r = self._cmd([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop"])
        if r.returncode != 0:
            try:
                os.kill(self.pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
        self.pid = None

    def restart(self):
        self.stop()
        return self._start_server()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()
