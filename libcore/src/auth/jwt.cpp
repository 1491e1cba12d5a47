#include "websmtp/auth/jwt.hpp"

// OpenSSL 3 EVP directly, not Poco::JWT: Poco::JWT (1.11 here) has no JWKS, so keys built from
// n/e and x/y would need OpenSSL anyway; it decodes and parses before we can apply the strict
// rules below (canonical base64url, duplicate members, crit, typ) and reports through
// exceptions, where a refused token is an everyday value here. With EVP the whole check is
// one readable path: a few calls per algorithm, each result tested.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "../common/openssl_ptr.hpp"

namespace websmtp::auth {

namespace {

using namespace websmtp::openssl;  // the owning pointers (common/openssl_ptr.hpp)

constexpr std::size_t kMinHmacSecretBytes = 32;  // RFC 7518 3.2: a key as long as the hash
constexpr int kMinRsaBits = 2048;
constexpr std::size_t kMaxKeyFileBytes = 1 << 20;
constexpr int kMaxJsonDepth = 32;  // as for request bodies (api.md)
constexpr std::int64_t kMaxLeewayS = 3600;
// Dates are clamped to +-2^40 s (some 35,000 years) so that date +- leeway never overflows.
constexpr std::int64_t kMaxDate = std::int64_t{1} << 40;

enum class Alg { kHs256, kRs256, kEs256 };

const char* name_of(Alg alg) {
  switch (alg) {
    case Alg::kHs256:
      return "HS256";
    case Alg::kRs256:
      return "RS256";
    case Alg::kEs256:
      return "ES256";
  }
  return "";
}

// Pops whatever OpenSSL queued on this thread's error stack during one call: a stale error
// left there would be read by the next TLS operation on the thread as its own.
class OpensslErrorScope {
 public:
  OpensslErrorScope() { ERR_set_mark(); }
  ~OpensslErrorScope() { ERR_pop_to_mark(); }
  OpensslErrorScope(const OpensslErrorScope&) = delete;
  OpensslErrorScope& operator=(const OpensslErrorScope&) = delete;
};

tl::unexpected<Error> refuse(std::string why) { return fail(ErrorKind::kUnauthorized, "unauthorized", std::move(why)); }

tl::unexpected<Error> bad_config(const std::string& key, const std::string& why) {
  return fail(ErrorKind::kInvalid, "invalid_config", key + ": " + why, key);
}

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// RFC 7515 2: base64url without padding. Strict: no '=', no whitespace, no '+' or '/', and
// the unused low bits of the last character must be zero, so each value has one encoding.
std::optional<std::string> b64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = b64url_value(c);
    if (v < 0) return std::nullopt;
    acc = ((acc << 6) | static_cast<std::uint32_t>(v)) & 0xFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

// A JSON object, or nullopt. Duplicate member names are refused (RFC 7515 5.2 allows either
// that or last-wins; refusing means no two parsers on the path can read different claims), as
// is nesting deeper than kMaxJsonDepth.
std::optional<nlohmann::json> parse_object(std::string_view text) {
  std::vector<std::set<std::string>> open;  // member names seen, per object being parsed
  bool bad = false;
  nlohmann::json::parser_callback_t check = [&](int depth, nlohmann::json::parse_event_t event,
                                                nlohmann::json& parsed) {
    if (depth > kMaxJsonDepth) bad = true;
    switch (event) {
      case nlohmann::json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case nlohmann::json::parse_event_t::key:
        if (open.empty() || !open.back().insert(parsed.get<std::string>()).second) bad = true;
        break;
      case nlohmann::json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  auto j = nlohmann::json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/false);
  if (bad || j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// RFC 7519 2 NumericDate: a JSON number of seconds, possibly fractional (floored).
std::optional<std::int64_t> numeric_date(const nlohmann::json& v) {
  if (v.is_number_unsigned())
    return static_cast<std::int64_t>(std::min<std::uint64_t>(v.get<std::uint64_t>(), kMaxDate));
  if (v.is_number_integer()) return std::clamp<std::int64_t>(v.get<std::int64_t>(), -kMaxDate, kMaxDate);
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d)) return std::nullopt;
    return static_cast<std::int64_t>(
        std::floor(std::clamp(d, -static_cast<double>(kMaxDate), static_cast<double>(kMaxDate))));
  }
  return std::nullopt;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Adds the space-separated words of `text` to `out`.
void add_words(std::string_view text, std::vector<std::string>& out) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = text.find(' ', i);
    if (end == std::string_view::npos) end = text.size();
    if (end > i) out.emplace_back(text.substr(i, end - i));
    i = end + 1;
  }
}

Result<std::string> read_key_file(const std::string& config_key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad_config(config_key, "cannot open " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxKeyFileBytes) return bad_config(config_key, path + " is larger than 1 MiB");
  }
  if (in.bad()) return bad_config(config_key, "cannot read " + path);
  return text;
}

struct Key {
  Alg alg = Alg::kHs256;
  std::string secret;  // HS256
  PkeyPtr pkey;        // RS256, ES256
};

// The algorithm a public key is for, after checking it is one we accept and that OpenSSL's
// public-key check passes (odd modulus and sane exponent; a point on the curve).
Result<Alg> classify(EVP_PKEY* pkey, const std::string& config_key, const std::string& what) {
  Alg alg;
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < kMinRsaBits)
      return bad_config(config_key, what + " is an RSA key of " + std::to_string(bits) + " bits; at least " +
                                        std::to_string(kMinRsaBits) + " are required");
    alg = Alg::kRs256;
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[80] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1 ||
        std::string_view(group, len) != "prime256v1")
      return bad_config(config_key, what + " is an EC key on a curve other than P-256 (ES256)");
    alg = Alg::kEs256;
  } else {
    return bad_config(config_key, what + " is neither an RSA key nor an EC P-256 key");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx || EVP_PKEY_public_check(ctx.get()) != 1)
    return bad_config(config_key, what + " fails OpenSSL's public key check");
  return alg;
}

Result<Key> load_pem(const std::string& path) {
  static const std::string kConfigKey = "JWT_PUBLIC_KEY_FILE";
  auto text = read_key_file(kConfigKey, path);
  if (!text) return tl::unexpected(text.error());
  BioPtr bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  // A public key never asks for a passphrase; the callback makes sure nothing prompts on a tty.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  Key key;
  key.pkey.reset(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!key.pkey) return bad_config(kConfigKey, path + " holds no PEM public key (-----BEGIN PUBLIC KEY-----)");
  auto alg = classify(key.pkey.get(), kConfigKey, path);
  if (!alg) return tl::unexpected(alg.error());
  key.alg = *alg;
  return key;
}

Result<PkeyPtr> pkey_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return fail(ErrorKind::kInvalid, "invalid_config", "OpenSSL refuses the key parameters");
  return PkeyPtr(raw);
}

std::optional<std::string> b64url_member(const nlohmann::json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) return std::nullopt;
  auto bytes = b64url_decode(it->get_ref<const std::string&>());
  if (!bytes || bytes->empty()) return std::nullopt;
  return bytes;
}

// RFC 7518 6.3.1: n and e, big-endian unsigned.
Result<PkeyPtr> rsa_from_jwk(const nlohmann::json& jwk, const std::string& what) {
  static const std::string kConfigKey = "JWT_JWKS_FILE";
  auto n = b64url_member(jwk, "n");
  auto e = b64url_member(jwk, "e");
  if (!n || !e) return bad_config(kConfigKey, what + " needs base64url members n and e");
  BnPtr n_bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr));
  BnPtr e_bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr));
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!n_bn || !e_bn || !bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n_bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e_bn.get()) != 1)
    return bad_config(kConfigKey, what + ": cannot build the RSA key");
  auto pkey = pkey_from_params("RSA", bld.get());
  if (!pkey) return bad_config(kConfigKey, what + ": " + pkey.error().message);
  return pkey;
}

// RFC 7518 6.2.1: x and y, 32 bytes each for P-256, as an uncompressed point 04 || x || y.
Result<PkeyPtr> ec_from_jwk(const nlohmann::json& jwk, const std::string& what) {
  static const std::string kConfigKey = "JWT_JWKS_FILE";
  auto x = b64url_member(jwk, "x");
  auto y = b64url_member(jwk, "y");
  if (!x || !y || x->size() != 32 || y->size() != 32)
    return bad_config(kConfigKey, what + " needs base64url members x and y of 32 bytes each");
  std::string point = "\x04" + *x + *y;
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
    return bad_config(kConfigKey, what + ": cannot build the EC key");
  auto pkey = pkey_from_params("EC", bld.get());
  if (!pkey) return bad_config(kConfigKey, what + ": not a point on P-256");
  return pkey;
}

// Keys that are for something else (use "enc", key_ops without "verify", kty oct/OKP, other
// curves, alg PS256/RSA-OAEP/...) are skipped, as identity providers publish such keys next
// to their signing keys; a key meant for us that is broken stops start-up.
Result<std::map<std::string, Key, std::less<>>> load_jwks(const std::string& path) {
  static const std::string kConfigKey = "JWT_JWKS_FILE";
  auto text = read_key_file(kConfigKey, path);
  if (!text) return tl::unexpected(text.error());
  auto doc = parse_object(*text);
  if (!doc || !doc->contains("keys") || !(*doc)["keys"].is_array())
    return bad_config(kConfigKey, path + " is not a JWKS document (a JSON object with a \"keys\" array)");
  std::map<std::string, Key, std::less<>> keys;
  const auto& list = (*doc)["keys"];
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& jwk = list[i];
    std::string what = path + " keys[" + std::to_string(i) + "]";
    if (!jwk.is_object()) return bad_config(kConfigKey, what + " is not an object");
    auto str = [&](const char* name) -> std::optional<std::string> {
      auto it = jwk.find(name);
      if (it == jwk.end() || !it->is_string()) return std::nullopt;
      return it->get<std::string>();
    };
    auto kid = str("kid");
    auto kty = str("kty");
    if (!kid || kid->empty() || !kty) continue;
    if (jwk.contains("use") && str("use") != "sig") continue;
    if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
      if (!ops->is_array() || std::find(ops->begin(), ops->end(), "verify") == ops->end()) continue;
    }
    Key key;
    if (*kty == "RSA") {
      key.alg = Alg::kRs256;
    } else if (*kty == "EC" && str("crv") == "P-256") {
      key.alg = Alg::kEs256;
    } else {
      continue;
    }
    if (jwk.contains("alg") && str("alg") != name_of(key.alg)) continue;
    what += " (kid " + *kid + ")";
    auto pkey = key.alg == Alg::kRs256 ? rsa_from_jwk(jwk, what) : ec_from_jwk(jwk, what);
    if (!pkey) return tl::unexpected(pkey.error());
    key.pkey = std::move(*pkey);
    auto alg = classify(key.pkey.get(), kConfigKey, what);
    if (!alg) return tl::unexpected(alg.error());
    if (keys.count(*kid)) return bad_config(kConfigKey, path + " has two signing keys with kid " + *kid);
    keys.emplace(*kid, std::move(key));
  }
  if (keys.empty())
    return bad_config(kConfigKey, path +
                                      " has no usable signing key (RSA of 2048 bits or more, or EC P-256, "
                                      "with a kid, use sig and alg RS256/ES256 when given)");
  return keys;
}

}  // namespace

struct JwtVerifier::Impl {
  std::string algorithm;
  std::optional<Key> single;                       // JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE
  std::map<std::string, Key, std::less<>> by_kid;  // JWT_JWKS_FILE
  std::string issuer;
  std::string audience;
  std::int64_t leeway_s = 60;
  MdPtr sha256;  // fetched once, not per token

  bool signature_ok(const Key& key, std::string_view input, const std::string& sig) const;
  bool digest_verify(EVP_PKEY* pkey, std::string_view input, const unsigned char* sig, std::size_t len) const;
  Result<JwtClaims> verify(std::string_view token, std::int64_t now_s) const;
  Result<JwtClaims> claims(nlohmann::json payload, std::int64_t now_s) const;
};

JwtVerifier::JwtVerifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JwtVerifier::~JwtVerifier() = default;

const std::string& JwtVerifier::algorithm() const { return impl_->algorithm; }

Result<std::unique_ptr<JwtVerifier>> JwtVerifier::create(const JwtOptions& options) {
  OpensslErrorScope errors;
  int sources = !options.hs256_secret.empty() + !options.public_key_file.empty() + !options.jwks_file.empty();
  if (sources == 0)
    return bad_config("AUTH_MODE", "jwt needs one of JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE");
  if (sources > 1)
    return bad_config(options.jwks_file.empty() ? "JWT_PUBLIC_KEY_FILE" : "JWT_JWKS_FILE",
                      "set only one of JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE and JWT_JWKS_FILE");
  if (options.leeway_s < 0 || options.leeway_s > kMaxLeewayS)
    return bad_config("leeway_s", "must be between 0 and " + std::to_string(kMaxLeewayS) + " seconds");

  auto impl = std::make_unique<Impl>();
  impl->issuer = options.issuer;
  impl->audience = options.audience;
  impl->leeway_s = options.leeway_s;
  impl->sha256.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!impl->sha256) return fail(ErrorKind::kInternal, "internal", "OpenSSL has no SHA256");

  if (!options.hs256_secret.empty()) {
    // The secret's length is all that may be said about it.
    if (options.hs256_secret.size() < kMinHmacSecretBytes)
      return bad_config("JWT_HS256_SECRET", "must be at least " + std::to_string(kMinHmacSecretBytes) +
                                                " bytes long (RFC 7518 3.2); it has " +
                                                std::to_string(options.hs256_secret.size()));
    impl->single = Key{Alg::kHs256, options.hs256_secret, nullptr};
  } else if (!options.public_key_file.empty()) {
    auto key = load_pem(options.public_key_file);
    if (!key) return tl::unexpected(key.error());
    impl->single = std::move(*key);
  } else {
    auto keys = load_jwks(options.jwks_file);
    if (!keys) return tl::unexpected(keys.error());
    impl->by_kid = std::move(*keys);
  }

  if (impl->single) {
    impl->algorithm = name_of(impl->single->alg);
  } else {
    std::set<std::string> names;
    for (const auto& [kid, key] : impl->by_kid) names.insert(name_of(key.alg));
    for (const auto& n : names) impl->algorithm += (impl->algorithm.empty() ? "" : ",") + n;
  }
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(impl)));
}

bool JwtVerifier::Impl::digest_verify(EVP_PKEY* pkey, std::string_view input, const unsigned char* sig,
                                      std::size_t len) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, sha256.get(), nullptr, pkey) != 1) return false;
  // PKCS#1 v1.5 is the default for an RSA key; said explicitly so that RS256 cannot become PSS.
  if (EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return false;
  return EVP_DigestVerify(ctx.get(), sig, len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

bool JwtVerifier::Impl::signature_ok(const Key& key, std::string_view input, const std::string& sig) const {
  const auto* sig_bytes = reinterpret_cast<const unsigned char*>(sig.data());
  switch (key.alg) {
    case Alg::kHs256: {
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int mac_len = 0;
      if (!HMAC(sha256.get(), key.secret.data(), static_cast<int>(key.secret.size()),
                reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len))
        return false;
      // Constant time: how many leading bytes match must not show in the timing.
      return sig.size() == mac_len && CRYPTO_memcmp(mac, sig_bytes, mac_len) == 0;
    }
    case Alg::kRs256:
      // RFC 7518 3.3 / RFC 8017 8.2.2: the signature is exactly as long as the modulus.
      if (sig.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.pkey.get()))) return false;
      return digest_verify(key.pkey.get(), input, sig_bytes, sig.size());
    case Alg::kEs256: {
      // RFC 7518 3.4: JWS carries R || S, 32 bytes each; EVP wants the DER ECDSA-Sig-Value.
      if (sig.size() != 64) return false;
      EcdsaSigPtr ecdsa(ECDSA_SIG_new());
      BnPtr r(BN_bin2bn(sig_bytes, 32, nullptr));
      BnPtr s(BN_bin2bn(sig_bytes + 32, 32, nullptr));
      if (!ecdsa || !r || !s || ECDSA_SIG_set0(ecdsa.get(), r.get(), s.get()) != 1) return false;
      r.release();  // now owned by ecdsa
      s.release();
      int der_len = i2d_ECDSA_SIG(ecdsa.get(), nullptr);
      if (der_len <= 0) return false;
      std::vector<unsigned char> der(static_cast<std::size_t>(der_len));
      unsigned char* out = der.data();
      if (i2d_ECDSA_SIG(ecdsa.get(), &out) != der_len) return false;
      return digest_verify(key.pkey.get(), input, der.data(), der.size());
    }
  }
  return false;
}

Result<JwtClaims> JwtVerifier::verify(std::string_view token, std::int64_t now_s) const {
  OpensslErrorScope errors;
  return impl_->verify(token, now_s);
}

Result<JwtClaims> JwtVerifier::Impl::verify(std::string_view token, std::int64_t now_s) const {
  if (token.size() > kMaxTokenBytes) return refuse("token is larger than " + std::to_string(kMaxTokenBytes) + " bytes");
  // RFC 7515 7.1 compact serialization: header.payload.signature, each part base64url.
  std::size_t dot1 = token.find('.');
  std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return refuse("token is not a compact JWS (three base64url parts separated by dots)");
  std::string_view header_part = token.substr(0, dot1);
  std::string_view payload_part = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view signature_part = token.substr(dot2 + 1);
  if (header_part.empty() || payload_part.empty()) return refuse("token has an empty header or payload");
  if (signature_part.empty()) return refuse("token is unsigned");

  auto header_json = b64url_decode(header_part);
  if (!header_json) return refuse("token header is not base64url");
  auto header = parse_object(*header_json);
  if (!header) return refuse("token header is not a JSON object");

  // The header only selects; the algorithm and key are the configuration's.
  auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()) return refuse("token header has no alg");
  if (lower(alg->get<std::string>()) == "none") return refuse("unsigned tokens (alg none) are not accepted");
  if (header->contains("crit")) return refuse("token header has critical extensions (crit), none are supported");
  if (auto typ = header->find("typ"); typ != header->end()) {
    // RFC 7515 4.1.9: a typ without '/' stands for application/<typ>; RFC 9068: at+jwt.
    std::string t = typ->is_string() ? lower(typ->get<std::string>()) : std::string("?");
    if (t.rfind("application/", 0) == 0) t.erase(0, std::strlen("application/"));
    if (t != "jwt" && t != "at+jwt") return refuse("token typ is neither JWT nor at+jwt");
  }
  auto kid = header->find("kid");
  if (kid != header->end() && !kid->is_string()) return refuse("token kid is not a string");

  const Key* key = nullptr;
  if (single) {
    key = &*single;
  } else {
    if (kid == header->end()) return refuse("token has no kid");
    auto it = by_kid.find(kid->get_ref<const std::string&>());
    if (it == by_kid.end()) return refuse("token kid names no configured key");
    key = &it->second;
  }
  if (alg->get_ref<const std::string&>() != name_of(key->alg)) return refuse("token alg is not the one configured");

  auto signature = b64url_decode(signature_part);
  if (!signature) return refuse("token signature is not base64url");
  if (!signature_ok(*key, token.substr(0, dot2), *signature)) return refuse("token signature is not valid");

  // Signed by our key: from here on the payload is the issuer's word.
  auto payload_json = b64url_decode(payload_part);
  if (!payload_json) return refuse("token payload is not base64url");
  auto payload = parse_object(*payload_json);
  if (!payload) return refuse("token payload is not a JSON object");
  return claims(std::move(*payload), now_s);
}

Result<JwtClaims> JwtVerifier::Impl::claims(nlohmann::json payload, std::int64_t now_s) const {
  std::int64_t now = std::clamp(now_s, -kMaxDate, kMaxDate);
  JwtClaims out;

  auto exp_claim = payload.find("exp");
  if (exp_claim == payload.end()) return refuse("token has no exp");
  auto exp = numeric_date(*exp_claim);
  if (!exp) return refuse("token exp is not a number");
  // RFC 7519 4.1.4: valid only before exp; the leeway extends that.
  if (now >= *exp + leeway_s) return refuse("token has expired");
  out.expires_at = *exp;

  // Optional, but numbers when present (RFC 7519 4.1.5, 4.1.6).
  for (std::string_view name : {"nbf", "iat"}) {
    auto claim = payload.find(name);
    if (claim == payload.end()) continue;
    auto when = numeric_date(*claim);
    if (!when) return refuse("token " + std::string(name) + " is not a number");
    if (now + leeway_s < *when)
      return refuse(name == "nbf" ? "token is not valid yet (nbf)" : "token was issued in the future (iat)");
  }

  if (!issuer.empty()) {
    auto iss = payload.find("iss");
    if (iss == payload.end() || !iss->is_string() || iss->get_ref<const std::string&>() != issuer)
      return refuse("token issuer (iss) is not the one configured");
  }
  if (!audience.empty()) {
    // RFC 7519 4.1.3: one string, or an array of strings.
    auto aud = payload.find("aud");
    bool ok = false;
    if (aud != payload.end() && aud->is_string()) {
      ok = aud->get_ref<const std::string&>() == audience;
    } else if (aud != payload.end() && aud->is_array()) {
      if (!std::all_of(aud->begin(), aud->end(), [](const auto& a) { return a.is_string(); }))
        return refuse("token aud is not a string or an array of strings");
      ok = std::find(aud->begin(), aud->end(), audience) != aud->end();
    }
    if (!ok) return refuse("token audience (aud) does not include this service");
  }

  auto sub = payload.find("sub");
  if (sub == payload.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty())
    return refuse("token has no sub");
  out.subject = sub->get<std::string>();
  // sub names the caller in logs and in job ownership: no control characters.
  if (std::any_of(out.subject.begin(), out.subject.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    return refuse("token sub holds control characters");

  // OAuth2 `scope` (RFC 8693 4.2, RFC 9068): space-separated; `scp`: an array (Okta) or a
  // space-separated string (Azure AD). Both are read; each scope is kept once.
  if (auto scope = payload.find("scope"); scope != payload.end()) {
    if (!scope->is_string()) return refuse("token scope is not a space-separated string");
    add_words(scope->get_ref<const std::string&>(), out.scopes);
  }
  if (auto scp = payload.find("scp"); scp != payload.end()) {
    if (scp->is_string()) {
      add_words(scp->get_ref<const std::string&>(), out.scopes);
    } else if (scp->is_array() && std::all_of(scp->begin(), scp->end(), [](const auto& s) { return s.is_string(); })) {
      for (const auto& s : *scp)
        if (!s.get_ref<const std::string&>().empty()) out.scopes.push_back(s.get<std::string>());
    } else {
      return refuse("token scp is not an array of strings");
    }
  }
  std::vector<std::string> unique;
  for (auto& s : out.scopes)
    if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(std::move(s));
  out.scopes = std::move(unique);

  out.raw = std::move(payload);
  return out;
}

}  // namespace websmtp::auth
