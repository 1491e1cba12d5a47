#!/usr/bin/python3
"""Direct delivery (DELIVERY=mx) against relay delivery, side by side in one run (bench/mx.sh).

MX mode: the test DNS server (tests/support/dns_server.py, in this process) holds MX records
for DOMAINS domains (d0.bench.test ...), spread over SINKS MX hosts, each a Postfix smtp-sink on
127.0.0.2, 127.0.0.3, ... (one port for all: SMTP_PORT). Relay mode: one smtp-sink on
127.0.0.1, SMTP_SERVER. The same JOBS one-recipient jobs (recipient i at domain i % DOMAINS) go
to a fresh websmtpd (THREADS workers) in each mode through /mail/batch (100 jobs a request).

Measured per mode: the drain rate (jobs from the first submit to the moment /admin/queue counts
them all delivered or failed, polled every 50 ms), the sessions the sinks saw opened (smtp-sink
-c: sess=) against the messages they took (mesg=): messages minus sessions went over a reused
session; websmtpd's CPU seconds; the load average before and after. Then "MX mode = X% of relay
mode". Rounds alternate the order (mx first, then relay first) so a drift in the machine's load
touches both. Every wait is bounded; every process started here is stopped by its PID.

    bench/mx.sh [--jobs 20000] [--domains 8] [--sinks 4] [--threads 8] [--rounds 2]

One JSON line per measurement is appended to bench/out/results.jsonl (phase "mx").
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from dns_server import DnsServer  # noqa: E402
from bench import alive, get_json  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
BATCH = 100


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Signal one process we started (by its PID), wait bounded, then SIGKILL; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def common_port(hosts):
    """A TCP port free on every one of `hosts` (smtp-sink listens on each with the same port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port free on " + ", ".join(hosts))


def wait_listening(host, port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


class Sink:
    def __init__(self, host, port, work):
        self.host = host
        self.counter = os.path.join(work, f"sink-{host}-{port}.out")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with open(self.counter, "wb") as out:
            self.proc = subprocess.Popen([SINK] + user + ["-c", f"{host}:{port}", "1000"], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_listening(host, port, self.proc)

    def counts(self):
        """The last "sess=N quit=N mesg=N" smtp-sink printed (-c)."""
        with open(self.counter, "rb") as f:
            text = f.read().decode("ascii", "replace").replace("\r", "\n")
        last = {}
        for line in text.splitlines():
            words = dict(w.split("=", 1) for w in line.split() if "=" in w)
            if "mesg" in words:
                last = {k: int(v) for k, v in words.items() if v.isdigit()}
        return last

    def stop(self):
        stop(self.proc)


class Daemon:
    def __init__(self, binary, work, name, env):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        ready = os.path.join(self.dir, "ready.json")
        base = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": "0", "ADMIN_PORT": "0", "READY_FILE": ready,
                "DATA_DIR": os.path.join(self.dir, "data"), "LOG_LEVEL": "warn", "SHUTDOWN_GRACE": "3s",
                "MAX_RECIPIENTS": "100"}
        base.update({k: str(v) for k, v in env.items()})
        self.log_path = os.path.join(self.dir, "daemon.log")
        with open(self.log_path, "ab") as log:
            # env: nothing from the caller's environment; cwd a temp dir and no .env file.
            self.proc = subprocess.Popen([binary, "--env-file", "/nonexistent"], cwd=self.dir, env=base,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"websmtpd exited during start; see {self.log_path}")
            try:
                with open(ready) as f:
                    r = json.load(f)
                self.port, self.admin = r["port"], r["admin_port"]
                break
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"websmtpd not ready after {START_TIMEOUT}s")
                time.sleep(0.02)

    def queue(self, holder):
        st, q = get_json(holder, "127.0.0.1", self.admin, "/admin/queue")
        if st != 200:
            raise RuntimeError(f"/admin/queue answered {st}")
        return q

    def stop(self):
        return stop(self.proc)


def job(i, domains):
    return {"from": "Bench <bench@example.org>", "to": [f"user{i}@d{i % domains}.bench.test"],
            "subject": f"bench {i}", "body": "direct delivery benchmark\n" * 8}


def submit_all(daemon, jobs, domains, deadline):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        for start in range(0, jobs, BATCH):
            if time.monotonic() > deadline:
                raise RuntimeError("submit cut off by the time cap")
            body = json.dumps({"jobs": [job(i, domains) for i in range(start, min(jobs, start + BATCH))]})
            conn.request("POST", "/mail/batch", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            answer = r.read()
            if r.status != 202:
                raise RuntimeError(f"/mail/batch answered {r.status}: {answer[:200]!r}")
    finally:
        conn.close()


def run_mode(mode, a, work, round_no):
    domains, nsinks = a.domains, a.sinks
    hosts = [f"127.0.0.{2 + k}" for k in range(nsinks)] if mode == "mx" else ["127.0.0.1"]
    port = common_port(hosts)
    sinks, dns, daemon = [], None, None
    try:
        for h in hosts:
            sinks.append(Sink(h, port, work))
        if mode == "mx":
            zone = {}
            for d in range(domains):
                mx = f"mx{d % nsinks}.bench.test"
                zone[f"d{d}.bench.test"] = {"MX": [(10, mx)]}
                zone[mx] = {"A": [hosts[d % nsinks]]}
            dns = DnsServer(zone, ttl=3600)
            env = {"DELIVERY": "mx", "DNS_SERVER": dns.address, "SMTP_PORT": port, "THREADS": a.threads}
        else:
            env = {"DELIVERY": "relay", "SMTP_SERVER": "127.0.0.1", "SMTP_PORT": port, "SMTP_TLS": "none",
                   "THREADS": a.threads}
        daemon = Daemon(a.websmtpd, work, f"{mode}-{round_no}", env)
        load_before = loadavg()
        holder = {}
        deadline = time.monotonic() + a.timeout
        t0 = time.time()
        submit_all(daemon, a.jobs, domains, deadline)
        t_submitted = time.time()
        done, q = False, None
        while time.monotonic() < deadline:
            q = daemon.queue(holder)
            if q["delivered_total"] + q["failed_total"] >= a.jobs:
                done = True
                break
            time.sleep(0.05)
        t_end = time.time()
        cpu = cpu_seconds(daemon.proc.pid) if alive(daemon.proc.pid) else None
        load_after = loadavg()
        rc = daemon.stop()
        daemon = None
        counts = [s.counts() for s in sinks]
        sessions = sum(c.get("sess", 0) for c in counts)
        messages = sum(c.get("mesg", 0) for c in counts)
        elapsed = t_end - t0
        return {
            "mode": mode, "round": round_no, "jobs": a.jobs, "threads": a.threads, "domains": domains,
            "mx_hosts": len(hosts), "done": done, "elapsed_s": round(elapsed, 3),
            "submit_s": round(t_submitted - t0, 3), "jobs_per_s": round(a.jobs / elapsed, 1) if done else None,
            "delivered": q["delivered_total"] if q else None, "failed": q["failed_total"] if q else None,
            "sessions_opened": sessions, "messages_at_sinks": messages,
            "messages_over_reused_sessions": messages - sessions, "sinks": counts,
            "dns_queries": len(dns.queries) if dns else None, "cpu_s": round(cpu, 2) if cpu is not None else None,
            "load_before": load_before, "load_after": load_after, "exit_code": rc,
        }
    finally:
        if daemon is not None:
            daemon.stop()
        for s in sinks:
            s.stop()
        if dns is not None:
            dns.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--domains", type=int, default=8)
    p.add_argument("--sinks", type=int, default=4, help="MX hosts (smtp-sink on 127.0.0.2 ...)")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300.0, help="cap on one mode's submit and drain, seconds")
    p.add_argument("--websmtpd", default=os.environ.get("WEBSMTPD",
                                                         os.path.join(REPO, "build/release/apps/websmtpd/websmtpd")))
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    a = p.parse_args()
    if not (1 <= a.jobs <= 1_000_000 and 1 <= a.domains <= 1000 and 1 <= a.sinks <= 200 and 1 <= a.rounds <= 20):
        sys.exit("bench/mx: --jobs 1..1e6, --domains 1..1000, --sinks 1..200, --rounds 1..20")
    for tool in (a.websmtpd, SINK):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench/mx: missing {tool} (make build; apt-get install -y postfix)")
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = tempfile.mkdtemp(prefix="websmtp-bench-mx.")
    out_dir = os.path.join(HERE, "out")
    os.makedirs(out_dir, exist_ok=True)
    results = []
    print(f"bench/mx {run_id}: {a.jobs} jobs, {a.domains} domains over {a.sinks} MX hosts, THREADS={a.threads}, "
          f"{os.cpu_count()} CPUs, load {loadavg()}", file=sys.stderr)
    try:
        for r in range(1, a.rounds + 1):
            for mode in (("mx", "relay") if r % 2 else ("relay", "mx")):
                print(f"== round {r}/{a.rounds}: {mode} [load {loadavg()}]", file=sys.stderr)
                res = run_mode(mode, a, work, r)
                res.update(run=run_id, phase="mx", time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           host=socket.gethostname(), cpus=os.cpu_count())
                print("   " + json.dumps({k: res[k] for k in ("jobs_per_s", "elapsed_s", "submit_s", "sessions_opened",
                                                               "messages_at_sinks", "cpu_s", "load_before")}),
                      file=sys.stderr)
                results.append(res)
                with open(os.path.join(out_dir, "results.jsonl"), "a") as f:
                    f.write(json.dumps(res) + "\n")
    finally:
        if a.keep:
            print(f"bench/mx: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, True)
    print(f"\n{'round':>5} {'mode':>5} {'jobs/s':>9} {'drain s':>8} {'sessions':>8} {'messages':>8} "
          f"{'reused':>8} {'cpu s':>6}  load before -> after")
    for res in results:
        print(f"{res['round']:>5} {res['mode']:>5} {res['jobs_per_s'] or '-':>9} {res['elapsed_s']:>8} "
              f"{res['sessions_opened']:>8} {res['messages_at_sinks']:>8} {res['messages_over_reused_sessions']:>8} "
              f"{res['cpu_s'] if res['cpu_s'] is not None else '-':>6}  {res['load_before']} -> {res['load_after']}")
    ratios = []
    for r in range(1, a.rounds + 1):
        by = {res["mode"]: res for res in results if res["round"] == r}
        if by.get("mx", {}).get("jobs_per_s") and by.get("relay", {}).get("jobs_per_s"):
            ratios.append(100.0 * by["mx"]["jobs_per_s"] / by["relay"]["jobs_per_s"])
    if ratios:
        ratios.sort()
        print(f"\nMX mode = {ratios[len(ratios) // 2]:.0f}% of relay mode (drain rate; per round: "
              f"{', '.join(f'{x:.0f}%' for x in ratios)}); load average at the end: {loadavg()}")
    return 0 if all(res["done"] for res in results) else 1


if __name__ == "__main__":
    sys.exit(main())
