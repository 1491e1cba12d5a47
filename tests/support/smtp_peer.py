#!/usr/bin/python3
"""Scriptable SMTP test peer for websmtp integration tests.

Run it with Debian's interpreter, which ships python3-aiosmtpd::

    /usr/bin/python3 tests/support/smtp_peer.py --log FILE \
        [--host 127.0.0.1] [--port 0] [--fault MODE] [--exit-on-stdin-eof]

Once the listening socket accepts connections the program prints exactly one
line ``READY <port>`` on stdout (flushed) and serves until SIGTERM/SIGINT (or
until stdin reaches EOF with ``--exit-on-stdin-eof``), then exits 0.

Recipient behaviour, from the local part of RCPT TO (case-insensitive):

    deferonce*  451 the first time this exact address is seen, 250 afterwards
    defer*      451 4.3.0 <addr>: try again later
    reject*     550 5.1.1 <addr>: user unknown
    otherwise   250 2.1.5 Ok

An accepted DATA is answered ``250 2.0.0 Ok: queued as <N>``.

Log file (JSON lines, append mode, flushed and fsync'd per line, written
before the SMTP reply is sent):

    {"event": "rcpt", "address": ..., "code": 250|451|550}
    {"seq": N, "mail_from": ..., "rcpt_tos": [accepted only],
     "data": <message, utf-8 decoded with surrogateescape>, "time": float}
    {"event": "fault", "mode": ..., "stage": ...}   (fault modes only)

``data`` holds the message exactly as received after dot-unstuffing (CRLF line
endings, without the terminating ``.``); ``data.encode("utf-8",
"surrogateescape")`` gives back the original bytes.

Fault modes (--fault):

    none           normal behaviour (default)
    hang-greeting  accept TCP connections, never send anything
    hang-data      normal until the final "." of DATA, then never answer
    drop-data      abort the connection as soon as DATA bytes arrive
    garbage        greet with "HTTP/1.1 400 Bad Request" and close
    421            greet with "421 4.3.2 Service shutting down" and close
    tempfail-all   every RCPT gets 451
    hold-data      normal until the final "." of DATA, then logs a fault event
                   (stage "data-end") and holds the reply: each byte written to
                   the peer's stdin (PeerProcess.release()) lets the oldest held
                   DATA go on (logged and answered 250 as usual)

The module part (``PeerProcess``) only needs the standard library, so it can be
imported from any Python 3 interpreter; only the server needs aiosmtpd.
"""

import argparse
import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DEBIAN_PYTHON = "/usr/bin/python3"
PEER_HOSTNAME = "peer.test"
DATA_SIZE_LIMIT = 64 * 1024 * 1024
FAULT_MODES = ("none", "hang-greeting", "hang-data", "drop-data", "garbage",
               "421", "tempfail-all", "hold-data")

GARBAGE_REPLY = (b"HTTP/1.1 400 Bad Request\r\n"
                 b"Content-Length: 0\r\n"
                 b"Connection: close\r\n\r\n")
SHUTDOWN_GREETING = b"421 4.3.2 Service shutting down\r\n"


# --------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------

class JsonLog:
    """Append-only JSON-lines log, durable per line."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="ascii")

    def write(self, record):
        # ensure_ascii keeps every line plain ASCII, lone surrogates included.
        self._file.write(json.dumps(record, ensure_ascii=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        self._file.close()


def _local_part(address):
    local = address.rsplit("@", 1)[0] if "@" in address else address
    return local.strip('"').lower()


class PeerHandler:
    """aiosmtpd handler implementing the recipient rules and message log."""

    def __init__(self, log, fault="none"):
        self.log = log
        self.fault = fault
        self.seq = 0
        self.seen_deferonce = set()
        self.releases = None  # hold-data: asyncio.Semaphore, created in the loop

    def decide(self, address):
        if self.fault == "tempfail-all":
            return 451, "451 4.3.0 <%s>: try again later" % address
        local = _local_part(address)
        if local.startswith("deferonce"):
            if address not in self.seen_deferonce:
                self.seen_deferonce.add(address)
                return 451, "451 4.3.0 <%s>: try again later" % address
            return 250, "250 2.1.5 Ok"
        if local.startswith("defer"):
            return 451, "451 4.3.0 <%s>: try again later" % address
        if local.startswith("reject"):
            return 550, "550 5.1.1 <%s>: user unknown" % address
        return 250, "250 2.1.5 Ok"

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        code, reply = self.decide(address)
        if code == 250:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        self.log.write({"event": "rcpt", "address": address, "code": code})
        return reply

    async def handle_DATA(self, server, session, envelope):
        if self.fault == "hang-data":
            self.log.write({"event": "fault", "mode": self.fault,
                            "stage": "data-end"})
            # Never answer; cancelled when the client goes away or at exit.
            await asyncio.get_running_loop().create_future()
        if self.fault == "hold-data":
            self.log.write({"event": "fault", "mode": self.fault,
                            "stage": "data-end"})
            await self.releases.acquire()
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content or b""
        if isinstance(raw, str):
            text = raw
        else:
            text = bytes(raw).decode("utf-8", "surrogateescape")
        self.seq += 1
        self.log.write({
            "seq": self.seq,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": text,
            "time": time.time(),
        })
        return "250 2.0.0 Ok: queued as %d" % self.seq


class _SilentProtocol(asyncio.Protocol):
    """hang-greeting: accept and keep the connection, never send a byte."""

    def __init__(self, peer):
        self.peer = peer
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.peer.transports.add(transport)
        self.peer.log.write({"event": "fault", "mode": self.peer.fault,
                             "stage": "connect"})

    def data_received(self, data):
        pass  # swallow whatever the client sends

    def connection_lost(self, exc):
        self.peer.transports.discard(self.transport)


class _GreetAndCloseProtocol(asyncio.Protocol):
    """garbage / 421: write a fixed greeting, then close."""

    def __init__(self, peer, payload):
        self.peer = peer
        self.payload = payload

    def connection_made(self, transport):
        self.peer.log.write({"event": "fault", "mode": self.peer.fault,
                             "stage": "connect"})
        transport.write(self.payload)
        transport.close()  # flushes the buffered greeting first


def _make_smtp_class():
    from aiosmtpd.smtp import SMTP

    class PeerSMTP(SMTP):
        """SMTP protocol that also tracks its transport for shutdown."""

        peer = None

        def connection_made(self, transport):
            if self.peer is not None:
                self.peer.transports.add(transport)
            super().connection_made(transport)

        def connection_lost(self, error):
            if self.peer is not None and self.transport is not None:
                self.peer.transports.discard(self.transport)
            super().connection_lost(error)

    class DropDataSMTP(PeerSMTP):
        """drop-data: abort the connection once DATA bytes arrive."""

        _drop_armed = False

        async def push(self, status):
            await super().push(status)
            head = status[:3]
            if head in ("354", b"354"):
                self._drop_armed = True

        def data_received(self, data):
            if self._drop_armed and data and self.transport is not None:
                self._drop_armed = False
                self.peer.log.write({"event": "fault", "mode": "drop-data",
                                     "stage": "data", "bytes": len(data)})
                self.transport.abort()
                return
            super().data_received(data)

    return PeerSMTP, DropDataSMTP


class Peer:
    def __init__(self, log, fault):
        self.log = log
        self.fault = fault
        self.transports = set()
        self.handler = PeerHandler(log, fault)

    def protocol_factory(self, loop):
        fault = self.fault
        if fault == "hang-greeting":
            return lambda: _SilentProtocol(self)
        if fault == "garbage":
            return lambda: _GreetAndCloseProtocol(self, GARBAGE_REPLY)
        if fault == "421":
            return lambda: _GreetAndCloseProtocol(self, SHUTDOWN_GREETING)
        peer_smtp, drop_smtp = _make_smtp_class()
        cls = drop_smtp if fault == "drop-data" else peer_smtp

        def factory():
            proto = cls(self.handler,
                        hostname=PEER_HOSTNAME,
                        enable_SMTPUTF8=True,
                        decode_data=False,  # also advertises 8BITMIME
                        data_size_limit=DATA_SIZE_LIMIT,
                        loop=loop)
            proto.peer = self
            return proto
        return factory


def _listening_socket(host, port):
    # Bind exactly one socket, so "port 0" yields exactly one real port even
    # when the host name resolves to several addresses.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(args):
    loop = asyncio.get_running_loop()
    log = JsonLog(args.log)
    peer = Peer(log, args.fault)
    peer.handler.releases = asyncio.Semaphore(0)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:
        fd = sys.stdin.fileno()

        def on_stdin():
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(fd)
                stop.set()
            elif args.fault == "hold-data":
                for _ in range(len(chunk)):
                    peer.handler.releases.release()
        loop.add_reader(fd, on_stdin)

    sock = _listening_socket(args.host, args.port)
    server = await loop.create_server(peer.protocol_factory(loop), sock=sock)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        server.close()
        for transport in list(peer.transports):
            transport.abort()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=2)
        except (asyncio.TimeoutError, Exception):
            pass
        log.close()
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Scriptable SMTP test peer")
    parser.add_argument("--log", required=True,
                        help="JSON-lines log file (appended)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0,
                        help="0 = ephemeral port (default)")
    parser.add_argument("--fault", default="none", choices=FAULT_MODES)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="also exit when stdin reaches EOF "
                             "(parent went away)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------------------
# Client side: run the peer as a subprocess
# --------------------------------------------------------------------------

class PeerProcess:
    """Start smtp_peer.py as a subprocess and talk to its log.

    with PeerProcess(fault="none") as peer:
        smtplib.SMTP(peer.host, peer.port) ...
        peer.messages()
    """

    SCRIPT = os.path.abspath(__file__)

    def __init__(self, log_path=None, fault=None, host="127.0.0.1", port=0,
                 startup_timeout=10.0, stop_timeout=5.0,
                 python=DEBIAN_PYTHON, start=True):
        self.host = host
        self.fault = fault or "none"
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.python = python
        self._requested_port = port
        self._own_dir = None
        if log_path is None:
            self._own_dir = tempfile.mkdtemp(prefix="smtp_peer.")
            log_path = os.path.join(self._own_dir, "peer.jsonl")
        self.log_path = os.path.abspath(log_path)
        self.proc = None
        self.port = None
        self.returncode = None
        self.stdout_tail = b""  # anything printed after READY (should be b"")
        self._stderr = None
        self._stderr_text_final = ""
        self._cached_records = None
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        if self.proc is not None:
            raise RuntimeError("peer already started")
        self._stderr = tempfile.TemporaryFile()
        cmd = [self.python, self.SCRIPT, "--log", self.log_path,
               "--host", self.host, "--port", str(self._requested_port),
               "--fault", self.fault, "--exit-on-stdin-eof"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self._stderr, close_fds=True)
        try:
            self.port = self._read_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    "smtp peer not READY within %.1fs; stderr:\n%s"
                    % (self.startup_timeout, self.stderr_text()))
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                self.proc.wait(timeout=self.stop_timeout)
                raise RuntimeError(
                    "smtp peer exited (rc=%s) before READY; stderr:\n%s"
                    % (self.proc.returncode, self.stderr_text()))
            buf += chunk
        line, _, rest = buf.partition(b"\n")
        self.stdout_tail += rest
        parts = line.decode("ascii", "replace").split()
        if len(parts) != 2 or parts[0] != "READY" or not parts[1].isdigit():
            raise RuntimeError("unexpected smtp peer output: %r" % line)
        return int(parts[1])

    def stderr_text(self):
        if self._stderr is None or self._stderr.closed:
            return self._stderr_text_final
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def release(self, count=1):
        """hold-data: let `count` held DATA transactions be answered."""
        self.proc.stdin.write(b"+" * count)
        self.proc.stdin.flush()

    def stop(self, signum=signal.SIGTERM):
        """Signal the peer by PID, wait, kill after stop_timeout.

        Returns the exit status (0 for a clean shutdown). Idempotent.
        """
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        self.returncode = proc.returncode
        if proc.stdout is not None:
            try:
                self.stdout_tail += proc.stdout.read()
            except (OSError, ValueError):
                pass
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._own_dir is not None:
            self._cached_records = self._read_records()
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
        if self._stderr is not None:
            self._stderr_text_final = self.stderr_text()
            self._stderr.close()
        self.proc = None
        return self.returncode

    def __enter__(self):
        if self.proc is None and self.returncode is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- log access --------------------------------------------------------

    def _read_records(self):
        try:
            with open(self.log_path, "r", encoding="ascii") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return []
        records = []
        # The last element is "" or a partially written line: skip it.
        for line in lines[:-1]:
            if line.strip():
                records.append(json.loads(line))
        return records

    def records(self):
        """Every log line (messages, rcpt events, fault events)."""
        if self._cached_records is not None:
            return list(self._cached_records)
        return self._read_records()

    def messages(self):
        """Accepted messages: dicts with seq, mail_from, rcpt_tos, data, time."""
        return [r for r in self.records() if "event" not in r and "seq" in r]

    def rcpt_events(self):
        """RCPT decisions: dicts with event="rcpt", address, code."""
        return [r for r in self.records() if r.get("event") == "rcpt"]

    def fault_events(self):
        return [r for r in self.records() if r.get("event") == "fault"]

    def wait_for_messages(self, count, timeout=10.0, interval=0.02):
        """Poll the log until at least `count` messages are there.

        Bounded by `timeout`; returns the messages or raises TimeoutError.
        """
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count:
                return msgs
            if time.monotonic() >= deadline:
                raise TimeoutError("expected %d messages, have %d"
                                   % (count, len(msgs)))
            time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
