"""DKIM signing end to end: keys made by `websmtpctl dkim keygen`, messages relayed to the
aiosmtpd peer and verified there by Debian's dkimpy (python3-dkim) against the TXT record that
keygen printed (a dnsfunc stands in for DNS: nothing is looked up)."""

import base64
import json
import os
import re
import stat
import subprocess
import tempfile
import shutil
import sqlite3

import dkim  # Debian's python3-dkim (dkimpy), in the Makefile's TEST_DEPS

from harness import WEBSMTPCTL, IntegrationTestCase, clean_env, mail, messages_by_test_id, new_test_id, \
    parse_message, require_binary
from polling import wait_until  # tests/support, put on the path by harness

# Every DKIM key, set (empty = unset) for each daemon so that a developer's shell cannot add keys.
NO_DKIM = {"DKIM_KEYS_DIR": "", "DKIM_DOMAIN": "", "DKIM_SELECTOR": "", "DKIM_KEY_FILE": ""}


def keygen(*args):
    require_binary(WEBSMTPCTL, "WEBSMTPCTL")
    return subprocess.run([WEBSMTPCTL, "dkim", "keygen"] + list(args), env=clean_env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


class Dns:
    """TXT records by name, as dkimpy's dnsfunc: no real DNS is ever asked."""

    def __init__(self):
        self.records = {}
        self.asked = []

    def add(self, name, record):
        self.records[name.rstrip(".").lower()] = record.encode("ascii")

    def __call__(self, name, timeout=5):
        name = name.decode("ascii") if isinstance(name, bytes) else name
        self.asked.append(name)
        return self.records.get(name.rstrip(".").lower())


class DkimTest(IntegrationTestCase):

    def setUp(self):
        self.keys = tempfile.mkdtemp(prefix="websmtp-dkim.")
        self.addCleanup(shutil.rmtree, self.keys, ignore_errors=True)
        self.dns = Dns()

    def make_key(self, domain, selector, *extra):
        r = keygen("--domain", domain, "--selector", selector, "--dir", self.keys, "--json", *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.dns.add(doc["name"], "".join(doc["strings"]))
        return doc

    def relay_daemon(self, peer, **env):
        e = dict(NO_DKIM)
        e.update(env)
        return self.start_daemon(**self.relay_env(peer, **e))

    def received(self, peer, test_id, count=1):
        def found():
            msgs = messages_by_test_id(peer).get(test_id, [])
            return msgs if len(msgs) >= count else None
        msgs = wait_until(found, 30, what="%d message(s) with test id %s at the peer" % (count, test_id))
        return [m["data"].encode("utf-8", "surrogateescape") for m in msgs]

    def verify(self, raw, idx=0):
        return dkim.DKIM(raw).verify(idx=idx, dnsfunc=self.dns)

    def refused(self, raw):
        """Why dkimpy refuses `raw`: a body hash mismatch is raised, a bad signature is False."""
        try:
            return "pass" if self.verify(raw) else "signature did not verify"
        except dkim.ValidationError as e:
            return str(e)

    def signature_tags(self, raw, idx=0):
        msg = parse_message(raw.decode("utf-8", "surrogateescape"))
        value = re.sub(r"\s+", "", msg.get_all("DKIM-Signature")[idx])
        return dict(t.split("=", 1) for t in value.split(";") if t)

    # -- websmtpctl dkim keygen ---------------------------------------------------------------

    def test_keygen_writes_a_private_key_and_prints_its_txt_record(self):
        r = keygen("--domain", "Example.ORG", "--selector", "s2025", "--dir", self.keys)
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(self.keys, "s2025._domainkey.example.org.pem")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            pem = f.read()
        self.assertIn(b"-----BEGIN PRIVATE KEY-----", pem)
        self.assertIn(path.encode(), r.stderr)

        # stdout: the zone-file line, the record split into strings of at most 255 bytes.
        out = r.stdout.decode()
        m = re.fullmatch(r's2025\._domainkey\.example\.org\. IN TXT \(((?: "[^"]*")+) \)\n', out)
        self.assertIsNotNone(m, out)
        strings = re.findall(r'"([^"]*)"', m.group(1))
        self.assertGreater(len(strings), 1)
        self.assertTrue(all(len(s) <= 255 for s in strings), [len(s) for s in strings])
        self.assertTrue(all(len(s) == 255 for s in strings[:-1]))
        record = "".join(strings)

        from cryptography.hazmat.primitives import serialization
        key = serialization.load_pem_private_key(pem, password=None)
        self.assertEqual(key.key_size, 2048)
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.assertEqual(record, "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode())

        # Never replaces a key (mail signed with it may still be in flight): exit 1, file untouched.
        again = keygen("--domain", "example.org", "--selector", "s2025", "--dir", self.keys)
        self.assertEqual(again.returncode, 1)
        self.assertIn(b"already exists", again.stderr)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), pem)

        for bad in (["--domain", "not a domain", "--selector", "s"], ["--domain", "example.org", "--selector", "a/b"]):
            r = keygen(*bad, "--dir", self.keys)
            self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(keygen("--domain", "example.org", "--selector", "s", "--bits", "512").returncode, 2)

    def test_keygen_json_and_other_sizes(self):
        doc = self.make_key("example.com", "big", "--bits", "3072")
        self.assertEqual((doc["domain"], doc["selector"], doc["algorithm"], doc["bits"]),
                         ("example.com", "big", "rsa-sha256", 3072))
        self.assertEqual(doc["name"], "big._domainkey.example.com")
        self.assertEqual(doc["file"], os.path.join(self.keys, "big._domainkey.example.com.pem"))
        self.assertEqual("".join(doc["strings"]), doc["record"])
        self.assertTrue(doc["record"].startswith("v=DKIM1; k=rsa; p=MII"))
        ed = self.make_key("example.com", "ed", "--algorithm", "ed25519")
        self.assertEqual(ed["algorithm"], "ed25519-sha256")
        self.assertRegex(ed["record"], r"^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$")

    # -- signing --------------------------------------------------------------------------------

    def test_relayed_messages_verify_with_dkimpy(self):
        self.make_key("example.org", "s1")
        peer = self.start_peer()
        daemon = self.relay_daemon(peer, DKIM_KEYS_DIR=self.keys)
        many = ["rcpt%03d@example.net" % i for i in range(150)]
        attachment = base64.b64encode(bytes(range(256)) * 40).decode()
        cases = {
            "unicode": mail(sender="Zoë Ünïcode <zoe@example.org>", subject="Grüße aus Köln — ☃ " * 6,
                            body="Ünïcode   body\twith  spaces   \n\n\nand trailing blank lines\n\n\n"),
            "html": mail(body="plain part", html="<p>Héllo <b>world</b></p>" * 50,
                         attachments=[{"filename": "naïve résumé.pdf", "content_type": "application/pdf",
                                       "content": attachment},
                                      {"filename": "a.txt", "content_type": "text/plain",
                                       "content": base64.b64encode(b"text attachment\r\n").decode()}],
                         reply_to="help@example.org", headers={"List-Unsubscribe": "<mailto:u@example.org>"}),
            "many": mail(to=many[:100], cc=many[100:], bcc=["hidden@example.net"], subject="To many"),
            "upper-case domain": mail(sender="Alice <alice@EXAMPLE.org>"),
        }
        ids = {}
        for name, req in cases.items():
            ids[name] = new_test_id()
            req.setdefault("headers", {})["X-Test-Id"] = ids[name]
            daemon.submit(req)
        for name, test_id in ids.items():
            [raw] = self.received(peer, test_id)
            self.assertTrue(raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"), (name, raw[:200]))
            self.assertTrue(self.verify(raw), name)
            tags = self.signature_tags(raw)
            self.assertEqual((tags["d"], tags["s"]), ("example.org", "s1"), name)
            names = [h.lower() for h in tags["h"].split(":")]
            self.assertEqual(names.count("from"), 2, tags["h"])  # over-signed
            for h in ("to", "subject", "date", "message-id", "mime-version", "content-type"):
                self.assertIn(h, names, name)
            self.assertNotIn("x-test-id", names)
            self.assertNotIn("l", tags)
            field = re.match(rb"DKIM-Signature:.*?\r\n(?![ \t])", raw, re.S).group(0)
            self.assertTrue(all(len(line) <= 78 for line in field.split(b"\r\n")), (name, field))
        self.assertIn("s1._domainkey.example.org", self.dns.asked[0])

        # Tampering: one body byte, a signed header, a second From: each fails; an unsigned
        # header may change.
        [raw] = self.received(peer, ids["html"])
        head, body = raw.split(b"\r\n\r\n", 1)
        at = body.rindex(b"world")
        self.assertIn("body hash mismatch", self.refused(head + b"\r\n\r\n" + body[:at] + b"W" + body[at + 1:]))
        self.assertEqual(self.refused(re.sub(b"\r\nSubject: ", b"\r\nSubject: Re: ", raw, count=1)),
                         "signature did not verify")
        self.assertFalse(self.verify(re.sub(b"\r\nReply-To: ", b"\r\nReply-To: evil@example.com\r\nReply-To: ", raw,
                                            count=1)))
        self.assertFalse(self.verify(re.sub(b"\r\nFrom: ", b"\r\nFrom: Evil <evil@example.org>\r\nFrom: ", raw,
                                            count=1)))
        self.assertFalse(self.verify(re.sub(b"\r\nTo: ", b"\r\nCc: extra@example.com\r\nTo: ", raw, count=1)))
        self.assertTrue(self.verify(raw.replace(ids["html"].encode(), b"changed-test-id")))
        [many_raw] = self.received(peer, ids["many"])
        self.assertFalse(self.verify(many_raw.replace(b"rcpt149@example.net", b"rcpt149@example.com")))
        self.assertNotIn(b"hidden@example.net", many_raw)

    def test_a_from_domain_without_a_key_is_not_signed(self):
        self.make_key("example.org", "s1")
        peer = self.start_peer()
        daemon = self.relay_daemon(peer, DKIM_KEYS_DIR=self.keys)
        ids = {}
        for sender in ("bob@example.com", "news@news.example.org", "x@example.org.example.com"):
            ids[sender] = new_test_id()
            daemon.submit(mail(sender=sender, test_id=ids[sender]))
        for sender, test_id in ids.items():
            [raw] = self.received(peer, test_id)
            self.assertNotIn(b"DKIM-Signature", raw, sender)
            self.assertTrue(raw.startswith(b"Date: "), sender)

    def test_one_key_from_dkim_key_file_and_dual_rsa_ed25519_signatures(self):
        rsa = self.make_key("example.org", "rsa1")
        self.make_key("example.org", "ed1", "--algorithm", "ed25519")
        other = tempfile.mkdtemp(prefix="websmtp-dkim-one.")
        self.addCleanup(shutil.rmtree, other, ignore_errors=True)
        one = keygen("--domain", "example.net", "--selector", "single", "--dir", other, "--json")
        self.assertEqual(one.returncode, 0, one.stderr)
        one = json.loads(one.stdout)
        self.dns.add(one["name"], one["record"])
        peer = self.start_peer()
        daemon = self.relay_daemon(peer, DKIM_KEYS_DIR=self.keys, DKIM_DOMAIN="example.net", DKIM_SELECTOR="single",
                                   DKIM_KEY_FILE=one["file"])
        dual, single = new_test_id(), new_test_id()
        daemon.submit(mail(sender="a@example.org", subject="Dual ✓", test_id=dual))
        daemon.submit(mail(sender="b@example.net", test_id=single))

        [raw] = self.received(peer, dual)
        sigs = parse_message(raw.decode("utf-8", "surrogateescape")).get_all("DKIM-Signature")
        self.assertEqual(len(sigs), 2)
        self.assertEqual(self.signature_tags(raw, 0)["a"], "rsa-sha256")
        self.assertEqual(self.signature_tags(raw, 0)["s"], "rsa1")
        self.assertEqual(self.signature_tags(raw, 1)["a"], "ed25519-sha256")
        self.assertTrue(self.verify(raw, 0))
        self.assertTrue(self.verify(raw, 1))
        self.assertEqual(len(rsa["strings"]), 2)

        [raw] = self.received(peer, single)
        self.assertEqual(self.signature_tags(raw)["d"], "example.net")
        self.assertTrue(self.verify(raw))

    def test_the_same_key_by_dkim_key_file_and_in_dkim_keys_dir_is_loaded_once(self):
        key = self.make_key("example.org", "s1")
        peer = self.start_peer()
        daemon = self.relay_daemon(peer, DKIM_KEYS_DIR=self.keys, DKIM_DOMAIN="example.org", DKIM_SELECTOR="s1",
                                   DKIM_KEY_FILE=key["file"])
        test_id = new_test_id()
        daemon.submit(mail(sender="a@example.org", test_id=test_id))
        [raw] = self.received(peer, test_id)
        self.assertEqual(len(parse_message(raw.decode("utf-8", "surrogateescape")).get_all("DKIM-Signature")), 1)
        self.assertTrue(self.verify(raw))
        daemon.stop()
        self.assertIn("loaded once", daemon.log_text())

    def test_a_retried_delivery_sends_the_same_signed_bytes(self):
        self.make_key("example.org", "s1")
        peer = self.start_peer()
        daemon = self.relay_daemon(peer, DKIM_KEYS_DIR=self.keys, RETRY_MIN="1s", RETRY_MAX="2s")
        test_id = new_test_id()
        # deferonce*: 451 at the first RCPT, 250 later: the first transaction carries the message
        # to ok@ only, the retry (a second transaction, another second) to the deferred one.
        ref = daemon.submit(mail(to=["ok@example.net", "deferonce-dkim@example.net"], test_id=test_id))
        doc = daemon.wait_completed(ref, timeout=40)
        self.assertEqual(doc["failed"], [])
        first, second = self.received(peer, test_id, count=2)
        self.assertEqual(first, second)
        self.assertTrue(self.verify(first))
        rcpts = [m["rcpt_tos"] for m in messages_by_test_id(peer)[test_id]]
        self.assertEqual(rcpts, [["ok@example.net"], ["deferonce-dkim@example.net"]])

    def test_the_message_is_stored_signed_at_submit(self):
        # What the store holds for a deferred job is what every later attempt sends: it must
        # already carry the signature, byte for byte as the first attempt sent it.
        self.make_key("example.org", "s1")
        peer = self.start_peer()
        daemon = self.relay_daemon(peer, DKIM_KEYS_DIR=self.keys, RETRY_MIN="1h", RETRY_MAX="1h")
        test_id = new_test_id()
        ref = daemon.submit(mail(to=["ok@example.net", "defer-dkim@example.net"], test_id=test_id))
        daemon.wait_status(ref, lambda d: all(r["attempts"] >= 1 for r in d["recipients"]),
                           what="a first attempt for both recipients")
        [sent] = self.received(peer, test_id)
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(daemon.data_dir, "websmtp.db"), uri=True)
        try:
            [(stored,)] = db.execute("SELECT message FROM jobs WHERE ref = ?", (ref,)).fetchall()
        finally:
            db.close()
        stored = stored.encode() if isinstance(stored, str) else stored
        self.assertTrue(stored.startswith(b"DKIM-Signature: "), stored[:100])
        self.assertEqual(stored, sent)
        self.assertTrue(self.verify(stored))

    # -- start-up checks ------------------------------------------------------------------------

    def test_an_unusable_key_stops_the_start_naming_it(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path = os.path.join(self.keys, "s1._domainkey.example.org.pem")
        with open(path, "wb") as f:
            f.write(pem)
        os.chmod(path, 0o600)
        peer = self.start_peer()
        cases = [
            (dict(DKIM_KEYS_DIR=self.keys), ["DKIM_KEYS_DIR", path, "neither an RSA nor an Ed25519"]),
            (dict(DKIM_DOMAIN="example.org", DKIM_SELECTOR="s1", DKIM_KEY_FILE=path + ".missing"),
             ["DKIM_KEY_FILE", path + ".missing", "cannot open"]),
            (dict(DKIM_DOMAIN="example.org", DKIM_KEY_FILE=path), ["DKIM_SELECTOR"]),
        ]
        for env, words in cases:
            daemon = self.make_daemon(**self.relay_env(peer, **dict(NO_DKIM, **env)))
            with self.assertRaises(RuntimeError) as caught:
                daemon.start()
            self.assertNotEqual(daemon.proc.returncode, 0)
            for word in words:
                self.assertIn(word, str(caught.exception), env)
        self.assertEqual(peer.messages(), [])


if __name__ == "__main__":
    import unittest
    unittest.main()
