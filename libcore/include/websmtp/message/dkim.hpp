#pragma once
// DKIM signing (RFC 6376): rsa-sha256 (and ed25519-sha256, RFC 8463) with relaxed/relaxed
// canonicalization, over a rendered message exactly as it will be sent (CRLF line ends, not
// dot-stuffed: see message::build_message). The submit path signs once, so every delivery
// attempt sends the same signed bytes.
//
// Everything here is pure except load_signer(), which reads the key files once at start.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/common/error.hpp"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace websmtp::config {
struct Config;
}  // namespace websmtp::config

namespace websmtp::message::dkim {

// ---- Canonicalization (RFC 6376 3.4.2 and 3.4.4) -------------------------------------------

// One header field as it appears in the message ("Name: value", folds included, with or without
// its final CRLF) in relaxed form: "name:value\r\n" with the name lower-cased, the value unfolded,
// runs of WSP made one space and WSP around the colon and at the ends removed.
std::string relaxed_header(std::string_view field);

// A message body in relaxed form: WSP runs made one space, WSP at line ends removed, empty lines
// at the end dropped, and a final CRLF when anything is left (an empty body stays empty).
// Only CRLF ends a line, as in the messages build_message renders.
std::string relaxed_body(std::string_view body);

// bh=: base64 of SHA-256 over relaxed_body(body) (the whole body: l= is never used).
std::string body_hash(std::string_view body);

// ---- The message's header -----------------------------------------------------------------

struct Field {
  std::string_view name;  // as written, without the colon or WSP before it
  std::string_view text;  // the whole field: name, colon, value with its folds, final CRLF
};
struct SplitMessage {
  std::vector<Field> fields;  // in message order
  std::string_view body;      // after the blank line (empty when there is none)
};
// Splits at the first empty line. A line that is neither a field nor a continuation (no colon)
// is kept as a field without a name, so it is never signed and never shifts another field.
SplitMessage split_message(std::string_view message);

// The h= list for a message with these fields: every field a production signer signs, once per
// occurrence, in message order, then the over-signed names once more, so that a copy added in
// transit (a second From, a Reply-To where there was none) breaks the signature.
std::vector<std::string> signed_header_names(const std::vector<Field>& fields);

// RFC 6376 3.7: the data the signature covers. For each of `names` the last instance not picked
// yet, bottom up (5.4.2; a name with none left adds nothing), in relaxed form; then `own_field`,
// the DKIM-Signature field as written but with an empty b= value, relaxed and without its CRLF.
std::string header_hash_input(const std::vector<Field>& fields, const std::vector<std::string>& names,
                              std::string_view own_field);

// ---- Keys and signatures ------------------------------------------------------------------

enum class Algorithm { kRsaSha256, kEd25519Sha256 };
const char* to_string(Algorithm a);  // "rsa-sha256", "ed25519-sha256"

inline constexpr int kMinRsaBits = 1024;  // RFC 8301 3.2: verifiers must refuse smaller keys

// A private signing key: RSA of kMinRsaBits or more, or Ed25519. Copies share the key.
class PrivateKey {
 public:
  // PEM "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" (PKCS#1), unencrypted. The error's message
  // says why a key is refused (not PEM, encrypted, too short, another type, fails its check).
  static Result<PrivateKey> from_pem(std::string_view pem);

  Algorithm algorithm() const { return algorithm_; }
  int bits() const { return bits_; }
  // The signature of `data`: RSASSA-PKCS1-v1_5 with SHA-256 for RSA; for Ed25519 (RFC 8463
  // 3) PureEdDSA over SHA-256(data). Raw bytes; empty when OpenSSL fails.
  std::string sign(std::string_view data) const;
  // The DNS TXT record's p=: base64 of the DER SubjectPublicKeyInfo (RSA), or of the raw 32-byte
  // public key (Ed25519, RFC 8463 4.2).
  std::string public_key_base64() const;
  // "v=DKIM1; k=rsa; p=..." (k=ed25519 for Ed25519).
  std::string dns_record() const;

 private:
  std::shared_ptr<evp_pkey_st> pkey_;
  Algorithm algorithm_ = Algorithm::kRsaSha256;
  int bits_ = 0;
};

struct SignOptions {
  std::string domain;     // d=
  std::string selector;   // s=
  std::int64_t time = 0;  // t= (Unix seconds)
};

// The "DKIM-Signature: ...\r\n" field for `message` (rendered, CRLF, not dot-stuffed), folded
// within 78 columns; prepend it to the message. Empty when the key fails to sign.
std::string signature_field(std::string_view message, const PrivateKey& key, const SignOptions& options);

// The keys by From domain; a domain may hold one key of each algorithm (then it is signed twice,
// as RFC 8463 suggests, for verifiers that know only rsa-sha256).
class Signer {
 public:
  struct Entry {
    std::string domain;  // lower case
    std::string selector;
    PrivateKey key;
    std::string source;  // where the key came from (a file name), for messages
  };
  // The error names the earlier key when `domain` already has a key of this algorithm.
  Result<bool> add(Entry entry);
  bool empty() const { return by_domain_.empty(); }
  const std::vector<Entry>* keys_for(std::string_view domain) const;  // nullptr when none
  std::size_t size() const;

  // Prepends a signature for each key of the domain of `from_address` (exact, case-insensitive
  // match: a subdomain needs keys of its own). Returns how many signatures were added.
  int sign(std::string& message, std::string_view from_address, std::int64_t now_s) const;

 private:
  std::map<std::string, std::vector<Entry>, std::less<>> by_domain_;
};

// "<selector>._domainkey.<domain>.pem" -> selector and domain (lower case); false when the
// name does not have that form.
bool parse_key_file_name(std::string_view file_name, std::string& selector, std::string& domain);
std::string key_file_name(std::string_view selector, std::string_view domain);

// The keys of DKIM_KEYS_DIR (every *.pem in it) and of DKIM_DOMAIN/DKIM_SELECTOR/DKIM_KEY_FILE.
// Throws config::ConfigError naming the configuration key and the file for a directory that
// cannot be read, a .pem whose name is not <selector>._domainkey.<domain>.pem, a key that cannot
// be read or used (not RSA >= 1024 bits or Ed25519), or two keys of one algorithm for a domain.
Signer load_signer(const config::Config& config);

}  // namespace websmtp::message::dkim
