// Real crypto throughout: keys are generated when the suite starts, tokens are signed here with
// OpenSSL, and the verifier reads the keys back from PEM and JWKS files.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "websmtp/auth/jwt.hpp"
#include "websmtp/common/base64.hpp"

using websmtp::ErrorKind;
using websmtp::auth::JwtClaims;
using websmtp::auth::JwtOptions;
using websmtp::auth::JwtVerifier;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kNow = 1'700'000'000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";

std::string b64url(std::string_view bytes) {
  std::string s = websmtp::base64_encode(bytes);
  std::replace(s.begin(), s.end(), '+', '-');
  std::replace(s.begin(), s.end(), '/', '_');
  s.erase(std::find(s.begin(), s.end(), '='), s.end());
  return s;
}

std::string b64url_bn(const EVP_PKEY* key, const char* param, int pad = 0) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, param, &bn), 1);
  std::string bytes(static_cast<std::size_t>(pad ? pad : BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  BN_free(bn);
  return b64url(bytes);
}

using Signer = std::function<std::string(std::string_view)>;

Signer hs256(std::string key) {
  return [key](std::string_view input) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(input.data()),
         input.size(), mac, &len);
    return std::string(reinterpret_cast<char*>(mac), len);
  };
}

std::string digest_sign(EVP_PKEY* key, std::string_view input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key), 1);
  EXPECT_EQ(EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()), 1);
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(input.data()), input.size()),
            1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  return sig;
}

Signer rs256(EVP_PKEY* key) {
  return [key](std::string_view input) { return digest_sign(key, input); };
}

// The DER ECDSA-Sig-Value that OpenSSL makes, as JWS wants it: R || S, 32 bytes each.
Signer es256(EVP_PKEY* key) {
  return [key](std::string_view input) {
    std::string der = digest_sign(key, input);
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(sig);
    return raw;
  };
}

Signer es256_der(EVP_PKEY* key) {
  return [key](std::string_view input) { return digest_sign(key, input); };
}

std::string make_token(const json& header, const json& payload, const Signer& sign) {
  std::string input = b64url(header.dump()) + "." + b64url(payload.dump());
  return input + "." + b64url(sign(input));
}

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio, key), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return pem;
}

json rsa_jwk(EVP_PKEY* key, const std::string& kid) {
  return {{"kty", "RSA"},
          {"kid", kid},
          {"use", "sig"},
          {"alg", "RS256"},
          {"n", b64url_bn(key, OSSL_PKEY_PARAM_RSA_N)},
          {"e", b64url_bn(key, OSSL_PKEY_PARAM_RSA_E)}};
}

json ec_jwk(EVP_PKEY* key, const std::string& kid) {
  return {{"kty", "EC"},
          {"kid", kid},
          {"crv", "P-256"},
          {"x", b64url_bn(key, OSSL_PKEY_PARAM_EC_PUB_X, 32)},
          {"y", b64url_bn(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32)}};
}

json header(const std::string& alg) { return {{"alg", alg}, {"typ", "JWT"}}; }

json claims() { return {{"sub", "user-1"}, {"exp", kNow + 300}, {"iat", kNow}, {"scope", "mail:send openid"}}; }

class JwtFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});
    rsa_other_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});
    ec_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    ec_other_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    ASSERT_TRUE(rsa_ && rsa_other_ && ec_ && ec_other_);
    std::string tmpl = (std::filesystem::temp_directory_path() / "websmtp-jwt-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    rsa_pem_ = write("rsa.pem", pem_of(rsa_));
    ec_pem_ = write("ec.pem", pem_of(ec_));
    json jwks = {{"keys",
                  {rsa_jwk(rsa_, "rsa-1"), ec_jwk(ec_, "ec-1"),
                   // Published next to signing keys by real identity providers; not for us.
                   json{{"kty", "RSA"}, {"kid", "enc-1"}, {"use", "enc"}, {"n", "AQAB"}, {"e", "AQAB"}},
                   json{{"kty", "oct"}, {"kid", "hmac-1"}, {"k", b64url(kSecret)}},
                   json{{"kty", "OKP"}, {"kid", "ed-1"}, {"crv", "Ed25519"}, {"x", "AAAA"}}}}};
    jwks_ = write("jwks.json", jwks.dump());
  }
  static void TearDownTestSuite() {
    for (EVP_PKEY* k : {rsa_, rsa_other_, ec_, ec_other_}) EVP_PKEY_free(k);
    std::filesystem::remove_all(dir_);
  }

  static std::string write(const std::string& name, const std::string& text) {
    auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  // Throws when create() fails: gtest reports the test as failed with the message, where a
  // null verifier would crash the whole binary.
  static std::unique_ptr<JwtVerifier> make(const JwtOptions& o) {
    auto v = JwtVerifier::create(o);
    if (!v) throw std::runtime_error("JwtVerifier::create: " + v.error().message);
    return std::move(*v);
  }
  static JwtOptions secret_options() {
    JwtOptions o;
    o.hs256_secret = kSecret;
    return o;
  }
  static JwtOptions pem_options(const std::string& file) {
    JwtOptions o;
    o.public_key_file = file;
    return o;
  }
  static JwtOptions jwks_options() {
    JwtOptions o;
    o.jwks_file = jwks_;
    return o;
  }

  static inline EVP_PKEY* rsa_ = nullptr;
  static inline EVP_PKEY* rsa_other_ = nullptr;
  static inline EVP_PKEY* ec_ = nullptr;
  static inline EVP_PKEY* ec_other_ = nullptr;
  static inline std::filesystem::path dir_;
  static inline std::string rsa_pem_, ec_pem_, jwks_;
};

// Expects a refusal whose message holds `why`.
#define EXPECT_REFUSED(result, why)                                                   \
  do {                                                                                \
    const auto& r_ = (result);                                                        \
    ASSERT_FALSE(r_) << "accepted a token that should be refused (" << why << ")";    \
    EXPECT_EQ(r_.error().kind, ErrorKind::kUnauthorized);                             \
    EXPECT_EQ(r_.error().code, "unauthorized");                                       \
    EXPECT_NE(r_.error().message.find(why), std::string::npos) << r_.error().message; \
  } while (0)

class JwtVerify : public JwtFixture {};
class JwtCreate : public JwtFixture {};

// --- valid tokens -----------------------------------------------------------------------------

TEST_F(JwtVerify, AcceptsHs256) {
  auto v = make(secret_options());
  EXPECT_EQ(v->algorithm(), "HS256");
  auto c = v->verify(make_token(header("HS256"), claims(), hs256(kSecret)), kNow);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->subject, "user-1");
  EXPECT_EQ(c->expires_at, kNow + 300);
  EXPECT_EQ(c->scopes, (std::vector<std::string>{"mail:send", "openid"}));
  EXPECT_EQ(c->raw["iat"], kNow);
}

TEST_F(JwtVerify, AcceptsRs256FromPem) {
  auto v = make(pem_options(rsa_pem_));
  EXPECT_EQ(v->algorithm(), "RS256");
  auto c = v->verify(make_token(header("RS256"), claims(), rs256(rsa_)), kNow);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->subject, "user-1");
}

TEST_F(JwtVerify, AcceptsEs256FromPem) {
  auto v = make(pem_options(ec_pem_));
  EXPECT_EQ(v->algorithm(), "ES256");
  // ECDSA is randomized: sign until R or S has a leading zero byte (1 in 128 on average), which
  // must be kept as padding in R || S; every signature on the way must verify.
  std::string input = b64url(header("ES256").dump()) + "." + b64url(claims().dump());
  bool short_value_seen = false;
  for (int i = 0; i < 2000 && !short_value_seen; ++i) {
    std::string sig = es256(ec_)(input);
    short_value_seen = sig[0] == '\0' || sig[32] == '\0';
    auto c = v->verify(input + "." + b64url(sig), kNow);
    ASSERT_TRUE(c) << c.error().message;
  }
  EXPECT_TRUE(short_value_seen);
}

TEST_F(JwtVerify, AcceptsJwksKeysByKid) {
  auto v = make(jwks_options());
  EXPECT_EQ(v->algorithm(), "ES256,RS256");
  auto rs = v->verify(make_token({{"alg", "RS256"}, {"kid", "rsa-1"}}, claims(), rs256(rsa_)), kNow);
  EXPECT_TRUE(rs) << rs.error().message;
  auto es = v->verify(make_token({{"alg", "ES256"}, {"kid", "ec-1"}}, claims(), es256(ec_)), kNow);
  EXPECT_TRUE(es) << es.error().message;
}

TEST_F(JwtVerify, AcceptsTypJwtAndAtJwtInAnyCase) {
  auto v = make(secret_options());
  for (const char* typ : {"JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"}) {
    auto c = v->verify(make_token({{"alg", "HS256"}, {"typ", typ}}, claims(), hs256(kSecret)), kNow);
    EXPECT_TRUE(c) << typ;
  }
  EXPECT_TRUE(v->verify(make_token({{"alg", "HS256"}}, claims(), hs256(kSecret)), kNow));  // typ is optional
}

// --- keys and algorithms ----------------------------------------------------------------------

TEST_F(JwtVerify, RefusesUnknownOrMissingKidWithJwks) {
  auto v = make(jwks_options());
  EXPECT_REFUSED(v->verify(make_token({{"alg", "RS256"}, {"kid", "rsa-2"}}, claims(), rs256(rsa_)), kNow),
                 "kid names no configured key");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "RS256"}}, claims(), rs256(rsa_)), kNow), "no kid");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "RS256"}, {"kid", 7}}, claims(), rs256(rsa_)), kNow),
                 "kid is not a string");
  // Skipped keys cannot be used: encryption, symmetric and EdDSA keys.
  EXPECT_REFUSED(v->verify(make_token({{"alg", "HS256"}, {"kid", "hmac-1"}}, claims(), hs256(kSecret)), kNow),
                 "kid names no configured key");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "RS256"}, {"kid", "enc-1"}}, claims(), rs256(rsa_)), kNow),
                 "kid names no configured key");
}

TEST_F(JwtVerify, RefusesAlgNone) {
  auto v = make(secret_options());
  for (const char* alg : {"none", "None", "NONE"}) {
    std::string unsigned_token = b64url(json{{"alg", alg}}.dump()) + "." + b64url(claims().dump()) + ".";
    EXPECT_REFUSED(v->verify(unsigned_token, kNow), "unsigned");
    EXPECT_REFUSED(v->verify(make_token({{"alg", alg}}, claims(), hs256(kSecret)), kNow), "alg none");
  }
  EXPECT_REFUSED(v->verify(make_token({{"typ", "JWT"}}, claims(), hs256(kSecret)), kNow), "no alg");
  EXPECT_REFUSED(v->verify(make_token({{"alg", nullptr}}, claims(), hs256(kSecret)), kNow), "no alg");
}

TEST_F(JwtVerify, RefusesAnAlgOtherThanTheConfiguredOne) {
  auto rs = make(pem_options(rsa_pem_));
  EXPECT_REFUSED(rs->verify(make_token(header("RS512"), claims(), rs256(rsa_)), kNow), "alg is not the one");
  EXPECT_REFUSED(rs->verify(make_token(header("PS256"), claims(), rs256(rsa_)), kNow), "alg is not the one");
  EXPECT_REFUSED(rs->verify(make_token(header("ES256"), claims(), es256(ec_)), kNow), "alg is not the one");
  EXPECT_REFUSED(rs->verify(make_token(header("rs256"), claims(), rs256(rsa_)), kNow), "alg is not the one");
  auto hs = make(secret_options());
  EXPECT_REFUSED(hs->verify(make_token(header("RS256"), claims(), rs256(rsa_)), kNow), "alg is not the one");
  EXPECT_REFUSED(hs->verify(make_token(header("HS512"), claims(), hs256(kSecret)), kNow), "alg is not the one");
  // With a JWKS the alg is the key's: an RS256 token naming the EC key is refused.
  auto jwks = make(jwks_options());
  EXPECT_REFUSED(jwks->verify(make_token({{"alg", "RS256"}, {"kid", "ec-1"}}, claims(), rs256(rsa_)), kNow),
                 "alg is not the one");
}

// The classic confusion: the attacker knows the RSA public key and signs with its PEM text as
// an HMAC secret, hoping the verifier picks HMAC because the token says so.
TEST_F(JwtVerify, RefusesHs256SignedWithThePublicKey) {
  std::ifstream in(rsa_pem_);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto forged = make_token(header("HS256"), claims(), hs256(pem));
  EXPECT_REFUSED(make(pem_options(rsa_pem_))->verify(forged, kNow), "alg is not the one");
  auto forged_kid = make_token({{"alg", "HS256"}, {"kid", "rsa-1"}}, claims(), hs256(pem));
  EXPECT_REFUSED(make(jwks_options())->verify(forged_kid, kNow), "alg is not the one");
  auto forged_ec = make_token(header("HS256"), claims(), hs256(pem_of(ec_)));
  EXPECT_REFUSED(make(pem_options(ec_pem_))->verify(forged_ec, kNow), "alg is not the one");
}

TEST_F(JwtVerify, RefusesCritAndUnknownTyp) {
  auto v = make(secret_options());
  EXPECT_REFUSED(
      v->verify(make_token({{"alg", "HS256"}, {"crit", {"exp"}}, {"exp", 1}}, claims(), hs256(kSecret)), kNow), "crit");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "HS256"}, {"crit", json::array()}}, claims(), hs256(kSecret)), kNow),
                 "crit");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "HS256"}, {"typ", "JWS"}}, claims(), hs256(kSecret)), kNow), "typ");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "HS256"}, {"typ", "dpop+jwt"}}, claims(), hs256(kSecret)), kNow), "typ");
  EXPECT_REFUSED(v->verify(make_token({{"alg", "HS256"}, {"typ", 1}}, claims(), hs256(kSecret)), kNow), "typ");
}

// --- signatures -------------------------------------------------------------------------------

TEST_F(JwtVerify, RefusesATamperedPayload) {
  auto v = make(pem_options(rsa_pem_));
  std::string token = make_token(header("RS256"), claims(), rs256(rsa_));
  auto dot1 = token.find('.');
  auto dot2 = token.find('.', dot1 + 1);
  json evil = claims();
  evil["sub"] = "admin";
  std::string tampered = token.substr(0, dot1 + 1) + b64url(evil.dump()) + token.substr(dot2);
  EXPECT_REFUSED(v->verify(tampered, kNow), "signature is not valid");
}

TEST_F(JwtVerify, RefusesATamperedOrForeignSignature) {
  for (auto [options, alg, sign] :
       {std::tuple{secret_options(), "HS256", hs256(kSecret)}, std::tuple{pem_options(rsa_pem_), "RS256", rs256(rsa_)},
        std::tuple{pem_options(ec_pem_), "ES256", es256(ec_)}}) {
    SCOPED_TRACE(alg);
    auto v = make(options);
    std::string input = b64url(header(alg).dump()) + "." + b64url(claims().dump());
    std::string sig = sign(input);
    ASSERT_TRUE(v->verify(input + "." + b64url(sig), kNow));
    // A valid signature cut short, by one byte or to one byte: no prefix of it is accepted.
    EXPECT_REFUSED(v->verify(input + "." + b64url(sig.substr(0, sig.size() - 1)), kNow), "signature is not valid");
    EXPECT_REFUSED(v->verify(input + "." + b64url(sig.substr(0, 1)), kNow), "signature is not valid");
    EXPECT_REFUSED(v->verify(input + "." + b64url(sig + '\0'), kNow), "signature is not valid");
    sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);
    EXPECT_REFUSED(v->verify(input + "." + b64url(sig), kNow), "signature is not valid");
  }
  EXPECT_REFUSED(make(secret_options())->verify(make_token(header("HS256"), claims(), hs256(kSecret + "x")), kNow),
                 "signature is not valid");
  EXPECT_REFUSED(make(pem_options(rsa_pem_))->verify(make_token(header("RS256"), claims(), rs256(rsa_other_)), kNow),
                 "signature is not valid");
  EXPECT_REFUSED(make(pem_options(ec_pem_))->verify(make_token(header("ES256"), claims(), es256(ec_other_)), kNow),
                 "signature is not valid");
  // ES256 in JWS is R || S; the DER form OpenSSL produces is not a JWS signature.
  EXPECT_REFUSED(make(pem_options(ec_pem_))->verify(make_token(header("ES256"), claims(), es256_der(ec_)), kNow),
                 "signature is not valid");
  // R = S = 0 is never valid.
  EXPECT_REFUSED(
      make(pem_options(ec_pem_))
          ->verify(make_token(header("ES256"), claims(), [](std::string_view) { return std::string(64, '\0'); }), kNow),
      "signature is not valid");
}

// --- compact serialization --------------------------------------------------------------------

TEST_F(JwtVerify, RefusesMalformedTokens) {
  auto v = make(secret_options());
  std::string good = make_token(header("HS256"), claims(), hs256(kSecret));
  ASSERT_TRUE(v->verify(good, kNow));
  auto dot1 = good.find('.');
  auto dot2 = good.rfind('.');
  EXPECT_REFUSED(v->verify("", kNow), "compact JWS");
  EXPECT_REFUSED(v->verify("garbage", kNow), "compact JWS");
  EXPECT_REFUSED(v->verify(good.substr(0, dot2), kNow), "compact JWS");           // two parts
  EXPECT_REFUSED(v->verify(good.substr(0, dot2 + 1), kNow), "unsigned");          // empty signature
  EXPECT_REFUSED(v->verify(good.substr(0, good.size() - 5), kNow), "signature");  // truncated signature
  EXPECT_REFUSED(v->verify(good + ".", kNow), "compact JWS");
  EXPECT_REFUSED(v->verify(good + ".e30", kNow), "compact JWS");  // a JWE has five parts
  EXPECT_REFUSED(v->verify(good.substr(dot1), kNow), "empty header");
  EXPECT_REFUSED(v->verify(good.substr(0, dot1) + ".." + good.substr(dot2 + 1), kNow), "empty header or payload");
  EXPECT_REFUSED(v->verify(good.substr(0, dot1) + "..." + good.substr(dot2 + 1), kNow), "compact JWS");
  EXPECT_REFUSED(v->verify("..", kNow), "empty");
  EXPECT_REFUSED(v->verify(" " + good, kNow), "header is not base64url");
  EXPECT_REFUSED(v->verify(good + "\n", kNow), "signature is not base64url");
}

TEST_F(JwtVerify, RefusesPaddingAndOtherBase64Forms) {
  auto v = make(secret_options());
  // A header whose base64 encoding needs padding (its length is not a multiple of 3).
  json h = {{"alg", "HS256"}};
  while (h.dump().size() % 3 == 0) h["p"] = h.value("p", "") + "x";
  std::string input = b64url(h.dump()) + "." + b64url(claims().dump());
  std::string sig = hs256(kSecret)(input);
  ASSERT_TRUE(v->verify(input + "." + b64url(sig), kNow));
  // The HS256 signature is 32 bytes: 43 characters, one "=" when padded.
  EXPECT_REFUSED(v->verify(input + "." + b64url(sig) + "=", kNow), "signature is not base64url");
  std::string padded_header = websmtp::base64_encode(h.dump());
  ASSERT_EQ(padded_header.back(), '=');
  std::string padded_input = padded_header + "." + b64url(claims().dump());
  EXPECT_REFUSED(v->verify(padded_input + "." + b64url(hs256(kSecret)(padded_input)), kNow), "header is not base64url");
  // The standard alphabet ('+', '/') is not base64url.
  std::string std_sig = websmtp::base64_encode(sig);
  std_sig.erase(std_sig.find('='));
  if (std_sig.find_first_of("+/") != std::string::npos)
    EXPECT_REFUSED(v->verify(input + "." + std_sig, kNow), "signature is not base64url");
  // A last character with non-zero unused bits decodes to the same bytes: refused all the same.
  std::string sig_b64 = b64url(sig);
  std::string noncanonical = sig_b64;
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  noncanonical.back() = alphabet[alphabet.find(sig_b64.back()) | 1];  // 43 chars: 2 unused bits
  ASSERT_NE(noncanonical, sig_b64);
  EXPECT_REFUSED(v->verify(input + "." + noncanonical, kNow), "signature is not base64url");
  // A length no base64 can have.
  EXPECT_REFUSED(v->verify(input + "." + sig_b64 + "AA", kNow), "signature is not base64url");
}

TEST_F(JwtVerify, RefusesAHugeToken) {
  auto v = make(secret_options());
  json big = claims();
  big["pad"] = std::string(JwtVerifier::kMaxTokenBytes, 'x');
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), big, hs256(kSecret)), kNow), "larger than");
  EXPECT_REFUSED(v->verify(std::string(1 << 20, 'a'), kNow), "larger than");
  // Just under the cap is fine.
  big["pad"] = std::string(4000, 'x');
  EXPECT_TRUE(v->verify(make_token(header("HS256"), big, hs256(kSecret)), kNow));
}

TEST_F(JwtVerify, RefusesNonJsonHeaderOrPayload) {
  auto v = make(secret_options());
  auto signed_parts = [&](const std::string& h, const std::string& p) {
    std::string input = b64url(h) + "." + b64url(p);
    return input + "." + b64url(hs256(kSecret)(input));
  };
  EXPECT_REFUSED(v->verify(signed_parts("not json", claims().dump()), kNow), "header is not a JSON object");
  EXPECT_REFUSED(v->verify(signed_parts("[\"HS256\"]", claims().dump()), kNow), "header is not a JSON object");
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\"", claims().dump()), kNow), "header is not a JSON object");
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\"}", "not json"), kNow), "payload is not a JSON object");
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\"}", "\"user-1\""), kNow), "payload is not a JSON object");
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\"}", "{\"sub\":\"\xff\"}"), kNow),
                 "payload is not a JSON object");  // not UTF-8
  // Duplicate members: two parsers on the path could read different values.
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\",\"alg\":\"none\"}", claims().dump()), kNow),
                 "header is not a JSON object");
  std::string dup_sub = claims().dump();
  dup_sub.insert(1, "\"sub\":\"admin\",");
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\"}", dup_sub), kNow), "payload is not a JSON object");
  // Same name in different objects is fine.
  json nested = claims();
  nested["a"] = {{"sub", 1}};
  nested["b"] = json::array({json{{"sub", 2}}, json{{"sub", 3}}});
  EXPECT_TRUE(v->verify(signed_parts("{\"alg\":\"HS256\"}", nested.dump()), kNow));
  // Deeper than 32 levels.
  std::string deep = claims().dump();
  deep.pop_back();
  deep += ",\"deep\":" + std::string(40, '[') + std::string(40, ']') + "}";
  EXPECT_REFUSED(v->verify(signed_parts("{\"alg\":\"HS256\"}", deep), kNow), "payload is not a JSON object");
}

// --- claims -----------------------------------------------------------------------------------

TEST_F(JwtVerify, RefusesExpiredTokensWithinLeewayAccepted) {
  auto v = make(secret_options());
  auto at = [&](std::int64_t exp) {
    json c = claims();
    c["exp"] = exp;
    return v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow);
  };
  EXPECT_TRUE(at(kNow + 1));
  EXPECT_TRUE(at(kNow));  // expired, within the 60 s leeway
  EXPECT_TRUE(at(kNow - 59));
  EXPECT_REFUSED(at(kNow - 60), "expired");  // RFC 7519: valid only *before* exp (+ leeway)
  EXPECT_REFUSED(at(kNow - 3600), "expired");
  EXPECT_REFUSED(at(std::numeric_limits<std::int64_t>::min()), "expired");
  EXPECT_TRUE(at(std::numeric_limits<std::int64_t>::max()));
}

TEST_F(JwtVerify, LeewayIsConfigurable) {
  JwtOptions o = secret_options();
  o.leeway_s = 0;
  auto v = make(o);
  json c = claims();
  c["exp"] = kNow;
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "expired");
  c["exp"] = kNow + 1;
  EXPECT_TRUE(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow));
}

TEST_F(JwtVerify, RefusesNotYetValidTokens) {
  auto v = make(secret_options());
  auto with = [&](const char* name, json value) {
    json c = claims();
    c[name] = value;
    return v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow);
  };
  EXPECT_TRUE(with("nbf", kNow));
  EXPECT_TRUE(with("nbf", kNow + 60));  // within leeway
  EXPECT_REFUSED(with("nbf", kNow + 61), "not valid yet");
  EXPECT_TRUE(with("iat", kNow + 60));
  EXPECT_REFUSED(with("iat", kNow + 61), "issued in the future");
  EXPECT_REFUSED(with("nbf", "0"), "nbf is not a number");
  EXPECT_REFUSED(with("iat", true), "iat is not a number");
  EXPECT_TRUE(with("nbf", 1699999999.5));  // NumericDate may be fractional
}

TEST_F(JwtVerify, RequiresANumericExp) {
  auto v = make(secret_options());
  json c = claims();
  c.erase("exp");
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "no exp");
  for (json bad : {json("1700000300"), json(nullptr), json(true), json::array({kNow + 300})}) {
    c["exp"] = bad;
    EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "exp is not a number");
  }
  c["exp"] = static_cast<double>(kNow + 300) + 0.25;
  auto ok = v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->expires_at, kNow + 300);
}

TEST_F(JwtVerify, RequiresANonEmptySub) {
  auto v = make(secret_options());
  json c = claims();
  c.erase("sub");
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "no sub");
  for (json bad : {json(""), json(42), json(nullptr), json::array({"user-1"})}) {
    c["sub"] = bad;
    EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "no sub");
  }
  c["sub"] = "user-1\r\nX-Injected: 1";
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "control characters");
}

TEST_F(JwtVerify, ChecksTheIssuerWhenConfigured) {
  JwtOptions o = secret_options();
  o.issuer = "https://idp.example/";
  auto v = make(o);
  json c = claims();
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "issuer");
  c["iss"] = "https://idp.example";  // no trailing slash: exact match only
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "issuer");
  c["iss"] = json::array({"https://idp.example/"});
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "issuer");
  c["iss"] = "https://idp.example/";
  EXPECT_TRUE(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow));
  // Not configured: any iss.
  c["iss"] = "https://other.example/";
  EXPECT_TRUE(make(secret_options())->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow));
}

TEST_F(JwtVerify, ChecksTheAudienceAsStringOrArray) {
  JwtOptions o = secret_options();
  o.audience = "websmtp";
  auto v = make(o);
  auto with_aud = [&](json aud) {
    json c = claims();
    c["aud"] = aud;
    return v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow);
  };
  EXPECT_TRUE(with_aud("websmtp"));
  EXPECT_TRUE(with_aud(json::array({"other", "websmtp"})));
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), claims(), hs256(kSecret)), kNow), "audience");  // no aud
  EXPECT_REFUSED(with_aud("other"), "audience");
  EXPECT_REFUSED(with_aud("WEBSMTP"), "audience");
  EXPECT_REFUSED(with_aud(json::array({"other"})), "audience");
  EXPECT_REFUSED(with_aud(json::array()), "audience");
  EXPECT_REFUSED(with_aud(json::array({"websmtp", 1})), "aud is not a string or an array");
  EXPECT_REFUSED(with_aud(json{{"aud", "websmtp"}}), "audience");
}

TEST_F(JwtVerify, ReadsScopeStringAndScpArray) {
  auto v = make(secret_options());
  auto scopes = [&](json extra) {
    json c = claims();
    c.erase("scope");
    c.update(extra);
    auto r = v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow);
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->scopes : std::vector<std::string>{"<refused>"};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(scopes(json::object()), V{});
  EXPECT_EQ(scopes({{"scope", "mail:send"}}), V{"mail:send"});
  EXPECT_EQ(scopes({{"scope", "  a  b "}}), (V{"a", "b"}));
  EXPECT_EQ(scopes({{"scp", {"mail:send", "openid"}}}), (V{"mail:send", "openid"}));
  EXPECT_EQ(scopes({{"scp", "mail:send openid"}}), (V{"mail:send", "openid"}));  // Azure AD's form
  EXPECT_EQ(scopes({{"scope", "a b"}, {"scp", {"b", "c"}}}), (V{"a", "b", "c"}));
  json c = claims();
  c["scope"] = json::array({"mail:send"});
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "scope is not");
  c.erase("scope");
  c["scp"] = json::array({"mail:send", 1});
  EXPECT_REFUSED(v->verify(make_token(header("HS256"), c, hs256(kSecret)), kNow), "scp is not");
}

TEST_F(JwtVerify, MessagesNeverCarryTheSecret) {
  auto v = make(secret_options());
  for (const std::string& token : {make_token(header("HS256"), claims(), hs256("wrong-secret-wrong-secret-wrong!!")),
                                   make_token(header("RS256"), claims(), hs256(kSecret)), std::string("a.b.c")}) {
    auto r = v->verify(token, kNow);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message.find(kSecret), std::string::npos);
    EXPECT_EQ(r.error().message.find("0123456789abcdef"), std::string::npos);
  }
}

TEST_F(JwtVerify, VerifiesConcurrently) {
  auto v = make(jwks_options());
  std::string rs = make_token({{"alg", "RS256"}, {"kid", "rsa-1"}}, claims(), rs256(rsa_));
  std::string es = make_token({{"alg", "ES256"}, {"kid", "ec-1"}}, claims(), es256(ec_));
  std::string bad = make_token({{"alg", "RS256"}, {"kid", "rsa-1"}}, claims(), rs256(rsa_other_));
  std::atomic<int> failures{0};
  auto work = [&] {
    for (int i = 0; i < 50; ++i) {
      if (!v->verify(rs, kNow) || !v->verify(es, kNow) || v->verify(bad, kNow)) ++failures;
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
}

// --- create() ---------------------------------------------------------------------------------

#define EXPECT_CONFIG_ERROR(result, key, why)                                                  \
  do {                                                                                         \
    const auto& r_ = (result);                                                                 \
    ASSERT_FALSE(r_) << "accepted a bad configuration (" << why << ")";                        \
    EXPECT_EQ(r_.error().kind, ErrorKind::kInvalid);                                           \
    EXPECT_EQ(r_.error().code, "invalid_config");                                              \
    EXPECT_EQ(r_.error().field, key);                                                          \
    EXPECT_EQ(r_.error().message.rfind(std::string(key) + ": ", 0), 0u) << r_.error().message; \
    EXPECT_NE(r_.error().message.find(why), std::string::npos) << r_.error().message;          \
  } while (0)

TEST_F(JwtCreate, RefusesRsaKeysUnder2048Bits) {
  EVP_PKEY* small = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024});
  ASSERT_NE(small, nullptr);
  EXPECT_CONFIG_ERROR(JwtVerifier::create(pem_options(write("rsa1024.pem", pem_of(small)))), "JWT_PUBLIC_KEY_FILE",
                      "1024 bits");
  JwtOptions o;
  o.jwks_file = write("jwks1024.json", json{{"keys", {rsa_jwk(small, "small")}}}.dump());
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "1024 bits");
  EVP_PKEY_free(small);
}

TEST_F(JwtCreate, RefusesEcKeysOffP256) {
  EVP_PKEY* p384 = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  ASSERT_NE(p384, nullptr);
  EXPECT_CONFIG_ERROR(JwtVerifier::create(pem_options(write("p384.pem", pem_of(p384)))), "JWT_PUBLIC_KEY_FILE",
                      "P-256");
  EVP_PKEY_free(p384);
  // A JWKS point that is not on the curve.
  json jwk = ec_jwk(ec_, "ec-1");
  jwk["y"] = jwk["x"];
  JwtOptions o;
  o.jwks_file = write("offcurve.json", json{{"keys", {jwk}}}.dump());
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "not a point on P-256");
  jwk["y"] = "AAAA";
  o.jwks_file = write("shorty.json", json{{"keys", {jwk}}}.dump());
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "32 bytes");
}

TEST_F(JwtCreate, ErrorsNameTheConfigKey) {
  EXPECT_CONFIG_ERROR(JwtVerifier::create(JwtOptions{}), "AUTH_MODE", "JWT_HS256_SECRET");
  JwtOptions two = secret_options();
  two.public_key_file = rsa_pem_;
  EXPECT_CONFIG_ERROR(JwtVerifier::create(two), "JWT_PUBLIC_KEY_FILE", "only one");

  JwtOptions short_secret;
  short_secret.hs256_secret = "too-short-secret";
  auto r = JwtVerifier::create(short_secret);
  EXPECT_CONFIG_ERROR(r, "JWT_HS256_SECRET", "at least 32 bytes");
  EXPECT_EQ(r.error().message.find("too-short-secret"), std::string::npos);

  EXPECT_CONFIG_ERROR(JwtVerifier::create(pem_options((dir_ / "missing.pem").string())), "JWT_PUBLIC_KEY_FILE",
                      "cannot open");
  EXPECT_CONFIG_ERROR(JwtVerifier::create(pem_options(write("garbage.pem", "not a key"))), "JWT_PUBLIC_KEY_FILE",
                      "no PEM public key");
  EXPECT_CONFIG_ERROR(JwtVerifier::create(pem_options(jwks_)), "JWT_PUBLIC_KEY_FILE", "no PEM public key");

  // A private key is not what this option takes.
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, ec_, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string private_pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  EXPECT_CONFIG_ERROR(JwtVerifier::create(pem_options(write("private.pem", private_pem))), "JWT_PUBLIC_KEY_FILE",
                      "no PEM public key");

  JwtOptions o;
  o.jwks_file = (dir_ / "missing.json").string();
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "cannot open");
  o.jwks_file = write("notjson.json", "{\"keys\": [");
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "not a JWKS document");
  o.jwks_file = write("nokeys.json", "{\"keys\": {}}");
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "not a JWKS document");
  o.jwks_file = write("empty.json", "{\"keys\": []}");
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "no usable signing key");
  json no_kid = rsa_jwk(rsa_, "x");
  no_kid.erase("kid");
  o.jwks_file = write("nokid.json", json{{"keys", {no_kid}}}.dump());
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "no usable signing key");
  o.jwks_file = write("dupkid.json", json{{"keys", {rsa_jwk(rsa_, "k"), ec_jwk(ec_, "k")}}}.dump());
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "two signing keys");
  json bad_n = rsa_jwk(rsa_, "k");
  bad_n["n"] = "not base64url!";
  o.jwks_file = write("badn.json", json{{"keys", {bad_n}}}.dump());
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "n and e");
  o.jwks_file = write("notobject.json", "{\"keys\": [1]}");
  EXPECT_CONFIG_ERROR(JwtVerifier::create(o), "JWT_JWKS_FILE", "not an object");

  JwtOptions leeway = secret_options();
  leeway.leeway_s = -1;
  EXPECT_CONFIG_ERROR(JwtVerifier::create(leeway), "leeway_s", "between 0 and");
}

TEST_F(JwtCreate, JwksSkipsKeysForOtherUses) {
  // alg PS256 or RS384, use enc, key_ops without verify: not signing keys for RS256/ES256.
  json ps = rsa_jwk(rsa_other_, "ps");
  ps["alg"] = "PS256";
  json enc = rsa_jwk(rsa_other_, "enc");
  enc["use"] = "enc";
  json ops = ec_jwk(ec_other_, "ops");
  ops["key_ops"] = {"encrypt"};
  json ok = rsa_jwk(rsa_, "ok");
  ok.erase("alg");
  ok.erase("use");
  JwtOptions o;
  o.jwks_file = write("mixed.json", json{{"keys", {ps, enc, ops, ok}}}.dump());
  auto v = JwtVerifier::create(o);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ((*v)->algorithm(), "RS256");
  EXPECT_TRUE((*v)->verify(make_token({{"alg", "RS256"}, {"kid", "ok"}}, claims(), rs256(rsa_)), kNow));
  EXPECT_REFUSED((*v)->verify(make_token({{"alg", "RS256"}, {"kid", "ps"}}, claims(), rs256(rsa_other_)), kNow),
                 "kid names no configured key");
  EXPECT_REFUSED((*v)->verify(make_token({{"alg", "ES256"}, {"kid", "ops"}}, claims(), es256(ec_other_)), kNow),
                 "kid names no configured key");
}

}  // namespace
