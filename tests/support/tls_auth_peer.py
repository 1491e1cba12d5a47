#!/usr/bin/python3
"""An SMTP peer that offers STARTTLS and/or AUTH, for the relay's TLS and AUTH tests.

    /usr/bin/python3 tls_auth_peer.py --log FILE [--cert C --key K] [--user U --password P]
                                      [--auth-methods "PLAIN LOGIN"] [--refusal "535 ..."]

Binds 127.0.0.1 on an ephemeral port and prints one line `READY <port>`. Every accepted
message is logged as a JSON line {"mail_from", "rcpt_tos", "tls": bool, "auth": login or
null, "auth_method": ...}; every AUTH attempt as {"event": "auth", "method", "login", "ok"}.
A refused AUTH is answered with --refusal (default: aiosmtpd's own 535 5.7.8 line). Every QUIT
is logged as {"event": "quit"}.
Built on aiosmtpd (run it with Debian's /usr/bin/python3). Stops on SIGTERM.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--auth-methods", default="PLAIN LOGIN")
    ap.add_argument("--refusal", help="the reply to a refused AUTH, e.g. '535 5.7.8 bad password'")
    a = ap.parse_args()

    log = open(a.log, "a", encoding="utf-8")

    def write(record):
        log.write(json.dumps(record) + "\n")
        log.flush()
        os.fsync(log.fileno())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            write({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                   "tls": session.ssl is not None,
                   "auth": session.auth_data.login.decode() if session.authenticated and session.auth_data else None})
            return "250 2.0.0 Ok: queued"

    def authenticator(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode() if auth_data and auth_data.login else ""
        password = auth_data.password.decode() if auth_data and auth_data.password else ""
        ok = a.user is not None and login == a.user and password == a.password
        write({"event": "auth", "method": mechanism, "login": login, "ok": ok})
        return AuthResult(success=ok, handled=False, auth_data=auth_data, message=None if ok else a.refusal)

    tls = None
    if a.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.cert, a.key)

    all_methods = {"PLAIN", "LOGIN"}
    offered = set(a.auth_methods.split())

    class Peer(SMTP):
        async def smtp_QUIT(self, arg):
            write({"event": "quit"})
            return await super().smtp_QUIT(arg)

    def factory():
        return Peer(Handler(), hostname="tls-auth.test", tls_context=tls, require_starttls=False,
                    auth_require_tls=False, authenticator=authenticator if a.user else None,
                    auth_exclude_mechanism=sorted(all_methods - offered) if a.user else None,
                    decode_data=False)

    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = loop.run_until_complete(loop.create_server(factory, sock=sock))
    print("READY %d" % sock.getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    server.close()
    loop.run_until_complete(server.wait_closed())
    return 0


if __name__ == "__main__":
    sys.exit(main())
