"""dnsmasq (Debian package dnsmasq-base) as the real DNS server of the direct-delivery tests.

    with Dnsmasq(mx=[("example.net", "mx1.example.net", 10)],
                 hosts={"mx1.example.net": "127.0.0.2"},
                 local=["example.net", "test"]) as dns:
        ... DNS_SERVER=dns.address ...

dnsmasq runs as a child of the test, in the foreground, on 127.0.0.1 and a port that was free a
moment before (dnsmasq cannot bind port 0 and report it; a port taken meanwhile makes it exit,
and the next free port is tried). It reads no configuration file, no /etc/hosts and no
resolv.conf, so it knows only what it is given:

- `mx`: (domain, host, preference) -> MX records (--mx-host);
- `hosts`: host -> address (or a list of them) -> A records (--host-record); a name with an A
  record and no MX gets NODATA for MX: an implicit MX;
- `ttl`: the TTL of those records (--local-ttl);
- `local`: domains answered from the above only (--local=/domain/): any other name in them is
  NXDOMAIN. A name outside every `local` domain is not answered usefully (no upstream).

What it needs unprivileged (tried with dnsmasq 2.90 as user nobody): a port over 1023 (port 53
gives "failed to create listening socket: Permission denied"), nothing else; in the foreground
it writes no PID file. As root it would drop to the user "dnsmasq" (made by the Debian package,
absent elsewhere) and write /run/dnsmasq.pid: it is told to stay the user and group that runs
the test (--user, --group) and to write no PID file (--pid-file=). It is stopped by its PID. `queries(name, type)`
counts the questions it logged (--log-queries into a file of its own).

What dnsmasq cannot express (a null MX, SERVFAIL, no answer at all) stays with dns_server.py.
Standard library only.
"""

import grp
import os
import pwd
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time

DNSMASQ = "/usr/sbin/dnsmasq"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq listens on both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def query(port, name, qtype=15, timeout=0.5):
    """One UDP question to 127.0.0.1:port; the reply's RCODE, or None when none came."""
    qid = random.randrange(65536)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        packet += bytes([len(label)]) + label.encode("ascii")
    packet += b"\x00" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, ("127.0.0.1", port))
            reply = s.recv(4096)
        except OSError:
            return None
    if len(reply) < 12 or struct.unpack(">H", reply[:2])[0] != qid:
        return None
    return struct.unpack(">H", reply[2:4])[0] & 0x0F


class Dnsmasq:
    def __init__(self, mx=(), hosts=None, local=(), ttl=300, binary=DNSMASQ):
        self.binary = binary
        self.args = ["--local-ttl=%d" % ttl]  # dnsmasq's default is 0: nothing could be cached
        for domain, host, preference in mx:
            self.args.append("--mx-host=%s,%s,%d" % (domain, host, preference))
        for host, addresses in (hosts or {}).items():
            for address in [addresses] if isinstance(addresses, str) else addresses:
                self.args.append("--host-record=%s,%s" % (host, address))
        for domain in local:
            self.args.append("--local=/%s/" % domain)
        self.dir = tempfile.mkdtemp(prefix="websmtp-dnsmasq.")
        self.log_path = os.path.join(self.dir, "dnsmasq.log")
        self.proc = None
        self.port = None
        self.address = None
        self._log = None
        self.start()

    def start(self):
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        for _ in range(5):
            port = free_port()
            self._log = open(self.log_path, "ab")
            cmd = [self.binary, "--keep-in-foreground", "--port=%d" % port, "--listen-address=127.0.0.1",
                   "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
                   "--user=%s" % user, "--group=%s" % group, "--log-queries", "--log-facility=-",
                   "--cache-size=0"] + self.args
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_ready(port):
                self.port = port
                self.address = "127.0.0.1:%d" % port
                return self
            self._reap()  # most likely the port was taken meanwhile: another one
        raise RuntimeError("dnsmasq did not start; its log:\n" + self.log_text())

    def _wait_ready(self, port):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if query(port, "ready.invalid") is not None:  # any answer: it serves
                return True
        return False

    def _reap(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self):
        self._reap()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, True)

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queries(self, name, qtype):
        """How many times `name` was asked for `qtype` ("MX", "A", ...)."""
        needle = "query[%s] %s from" % (qtype, name.lower())
        return sum(1 for line in self.log_text().lower().splitlines() if needle.lower() in line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
