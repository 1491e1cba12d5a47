"""JWT bearer tokens (api.md, "Authentication, keys and limits"): tokens signed here with
PyJWT (Debian python3-jwt, an independent implementation) and refused or accepted by websmtpd;
every refused request is checked to reach nothing at the SMTP peer."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
import unittest

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import IntegrationTestCase, mail, messages_by_test_id, new_test_id

SECRET = "a-shared-secret-of-at-least-32-bytes!!"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub="user-1", scope="mail:send", exp_in=300, **extra):
    now = int(time.time())
    c = {"sub": sub, "exp": now + exp_in, "iat": now}
    if scope is not None:
        c["scope"] = scope
    c.update(extra)
    return c


class JwtTestCase(IntegrationTestCase):

    def send(self, token, payload=None, test_id=None, path="/mail/send"):
        h = {"Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        return self.daemon.request("POST", path, body=json.dumps(payload or mail(test_id=test_id)).encode(),
                                   headers=h)

    def status(self, ref, token):
        return self.daemon.request("GET", "/mail/status/" + ref, headers={"Authorization": "Bearer " + token})


class Hs256Test(JwtTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        self.daemon = self.start_daemon(**self.relay_env(
            self.peer, AUTH_MODE="jwt", JWT_HS256_SECRET=SECRET, JWT_ISSUER="https://id.example",
            JWT_AUDIENCE="websmtp", JWT_RATE_PER_MINUTE="3"))

    def token(self, **kw):
        c = claims(iss="https://id.example", aud="websmtp")
        c.update(kw)
        return jwt.encode({k: v for k, v in c.items() if v is not None}, SECRET, algorithm="HS256")

    def test_a_valid_token_sends_and_its_subject_owns_the_status(self):
        r = self.send(self.token())
        self.assertEqual(r.status, 202, r.body)
        ref = r.json()["ref"]
        self.assertTrue(r.json()["status_token"])
        self.assertEqual(r.header("RateLimit-Limit"), "3")
        # Another token of the same subject sees it; another subject does not.
        self.assertEqual(self.status(ref, self.token(jti="other")).status, 200)
        self.assertJsonError(self.status(ref, self.token(sub="user-2")), 404, "unknown_ref")
        # aud may be an array holding ours.
        self.assertEqual(self.send(self.token(aud=["other", "websmtp"], sub="user-3")).status, 202)
        # Within the 60 s leeway an expired token still passes.
        self.assertEqual(self.send(self.token(exp=int(time.time()) - 30, sub="user-4")).status, 202)

    def test_bad_tokens_are_refused_and_nothing_is_sent(self):
        tid = new_test_id()
        now = int(time.time())
        header_none = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        body = b64url(json.dumps(claims(iss="https://id.example", aud="websmtp")).encode())
        good = self.token()
        h, p, s = good.split(".")
        tampered = ".".join([h, b64url(json.dumps(claims(sub="admin", iss="https://id.example",
                                                         aud="websmtp")).encode()), s])
        cases = {
            "expired": self.token(exp=now - 120),
            "not yet valid": self.token(nbf=now + 300),
            "wrong issuer": self.token(iss="https://evil.example"),
            "wrong audience": self.token(aud="someone-else"),
            "no exp": self.token(exp=None),
            "no sub": self.token(sub=None),
            "wrong secret": jwt.encode(claims(iss="https://id.example", aud="websmtp"), SECRET + "x", algorithm="HS256"),
            "alg none": header_none + "." + body + ".",
            "alg HS512": jwt.encode(claims(iss="https://id.example", aud="websmtp"), SECRET, algorithm="HS512"),
            "tampered payload": tampered,
            "garbage": "not.a.token",
            "two parts": h + "." + p,
        }
        for what, token in cases.items():
            with self.subTest(what):
                self.assertJsonError(self.send(token, test_id=tid), 401, "unauthorized")
        # Valid, but without the scope: 403 naming it.
        self.assertJsonError(self.send(self.token(scope="profile email"), test_id=tid), 403, "forbidden", "scope")
        self.assertEqual(self.send(self.token(scope=None, scp=["mail:send"])).status, 202)  # scp array form
        self.daemon.wait_idle()
        self.assertNotIn(tid, messages_by_test_id(self.peer))

    def test_rate_per_subject(self):
        a = self.token(sub="noisy")
        codes = [self.send(a).status for _ in range(4)]
        self.assertEqual(codes, [202, 202, 202, 429])
        r = self.send(a)
        self.assertGreaterEqual(int(r.header("Retry-After")), 1)
        self.assertEqual(self.send(self.token(sub="quiet")).status, 202)

    def test_api_keys_are_not_accepted_in_jwt_mode(self):
        self.assertJsonError(self.send("sk_" + "A" * 43), 401, "unauthorized")


class AsymmetricTest(JwtTestCase):

    def setUp(self):
        self.peer = self.start_peer()
        self.dir = tempfile.mkdtemp(prefix="websmtp-jwt.")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_pem = self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        self.pem_path = os.path.join(self.dir, "rsa.pem")
        with open(self.pem_path, "wb") as f:
            f.write(self.rsa_pem)

    def test_rs256_from_a_pem_and_no_algorithm_confusion(self):
        self.daemon = self.start_daemon(**self.relay_env(self.peer, AUTH_MODE="jwt", JWT_PUBLIC_KEY_FILE=self.pem_path))
        good = jwt.encode(claims(), self.rsa, algorithm="RS256")
        self.assertEqual(self.send(good).status, 202)
        tid = new_test_id()
        # The public key's PEM used as an HMAC secret (the classic confusion attack).
        h = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        p = b64url(json.dumps(claims()).encode())
        sig = b64url(hmac.new(self.rsa_pem, (h + "." + p).encode(), hashlib.sha256).digest())
        self.assertJsonError(self.send(h + "." + p + "." + sig, test_id=tid), 401, "unauthorized")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.assertJsonError(self.send(jwt.encode(claims(), other, algorithm="RS256"), test_id=tid), 401)
        self.daemon.wait_idle()
        self.assertNotIn(tid, messages_by_test_id(self.peer))

    def test_es256_from_a_jwks_by_kid_and_keys_alongside(self):
        ec_key = ec.generate_private_key(ec.SECP256R1())
        nums = ec_key.public_key().public_numbers()
        jwks = {"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
             "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))},
            {"kty": "RSA", "kid": "rsa-1", "alg": "RS256",
             "n": b64url(self.rsa.public_key().public_numbers().n.to_bytes(256, "big")),
             "e": b64url((65537).to_bytes(3, "big"))}]}
        path = os.path.join(self.dir, "jwks.json")
        with open(path, "w") as f:
            json.dump(jwks, f)
        self.daemon = self.start_daemon(**self.relay_env(self.peer, AUTH_MODE="keys,jwt", JWT_JWKS_FILE=path))
        self.assertEqual(self.send(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})).status,
                         202)
        self.assertEqual(self.send(jwt.encode(claims(), self.rsa, algorithm="RS256",
                                              headers={"kid": "rsa-1"})).status, 202)
        tid = new_test_id()
        self.assertJsonError(self.send(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "nope"}),
                                       test_id=tid), 401, "unauthorized")
        # The EC key under the RSA key's kid: refused.
        self.assertJsonError(self.send(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "rsa-1"}),
                                       test_id=tid), 401, "unauthorized")
        # keys,jwt: an API key works too.
        r = self.daemon.request("POST", "/admin/keys", admin=True, body=b'{"name":"k"}',
                                headers={"Content-Type": "application/json"})
        self.assertEqual(self.send(r.json()["key"]).status, 202)
        self.daemon.wait_idle()
        self.assertNotIn(tid, messages_by_test_id(self.peer))

    def test_an_unusable_key_file_stops_the_daemon_naming_it(self):
        bad = os.path.join(self.dir, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a key")
        d = self.make_daemon(**self.relay_env(self.peer, AUTH_MODE="jwt", JWT_PUBLIC_KEY_FILE=bad))
        with self.assertRaises(Exception):
            d.start()
        self.assertIn("JWT_PUBLIC_KEY_FILE", d.log_text())


if __name__ == "__main__":
    unittest.main()
