#include "websmtp/message/dkim.hpp"

// OpenSSL 3 EVP directly (as auth/jwt.cpp does): a DKIM signature is one digest and one
// EVP_DigestSign call, and key checks are a few EVP_PKEY queries.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "../common/openssl_ptr.hpp"
#include "websmtp/common/base64.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/config/config.hpp"

namespace websmtp::message::dkim {

namespace {

using namespace websmtp::openssl;  // the owning pointers (common/openssl_ptr.hpp)

constexpr std::size_t kFoldAt = 78;  // RFC 5322 2.1.1, as mime.cpp folds
constexpr std::size_t kMaxKeyFileBytes = 1 << 20;
constexpr std::size_t kDigestChunk = 64 * 1024;

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

// Which fields are signed, modelled on rspamd's default sign_headers (itself RFC 6376 5.4.1's
// list plus the MIME and list headers):
//  kAlways:    signed, and over-signed even when absent: a From, To, Cc, Reply-To or Subject
//              added in transit changes what the reader sees, so none may be added;
//  kIfPresent: signed and over-signed when present: one is expected, a second copy confuses
//              parsers (two Content-Types, two Dates), but adding one where there is none is
//              harmless, and over-signing an absent one would only enlarge h=;
//  kSign:      signed when present, nothing more (mailing lists legitimately add List-* fields).
enum class Policy { kAlways, kIfPresent, kSign };
struct SignedField {
  std::string_view name;
  Policy policy;
};
constexpr std::array<SignedField, 27> kSignedFields = {{
    {"From", Policy::kAlways},
    {"Sender", Policy::kIfPresent},
    {"Reply-To", Policy::kAlways},
    {"Subject", Policy::kAlways},
    {"Date", Policy::kIfPresent},
    {"Message-ID", Policy::kIfPresent},
    {"To", Policy::kAlways},
    {"Cc", Policy::kAlways},
    {"MIME-Version", Policy::kIfPresent},
    {"Content-Type", Policy::kIfPresent},
    {"Content-Transfer-Encoding", Policy::kIfPresent},
    {"In-Reply-To", Policy::kIfPresent},
    {"References", Policy::kIfPresent},
    {"Resent-To", Policy::kSign},
    {"Resent-Cc", Policy::kSign},
    {"Resent-From", Policy::kSign},
    {"Resent-Sender", Policy::kSign},
    {"Resent-Message-ID", Policy::kSign},
    {"List-Id", Policy::kSign},
    {"List-Help", Policy::kSign},
    {"List-Owner", Policy::kSign},
    {"List-Unsubscribe", Policy::kSign},
    {"List-Unsubscribe-Post", Policy::kSign},  // RFC 8058 3.3: one-click unsubscribe must be signed
    {"List-Subscribe", Policy::kSign},
    {"List-Post", Policy::kSign},
    {"OpenPGP", Policy::kIfPresent},
    {"Autocrypt", Policy::kIfPresent},
}};

const SignedField* signed_field(std::string_view name) {
  for (const auto& f : kSignedFields)
    if (iequals(f.name, name)) return &f;
  return nullptr;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// RFC 6376 3.4.4 over `body`, each piece of output handed to `emit` (a string_view).
template <typename Emit>
void canonicalize_body(std::string_view body, Emit&& emit) {
  std::string line;  // the current line's output, without its CRLF
  std::size_t empty_lines = 0;
  bool space = false;  // a WSP run waits to be written as one space
  bool content = false;
  const std::size_t n = body.size();
  for (std::size_t i = 0; i < n; ++i) {
    const char c = body[i];
    if (c == '\r' && i + 1 < n && body[i + 1] == '\n') {
      ++i;
      if (content) {
        line += "\r\n";
        emit(std::string_view(line));
        line.clear();
      } else {
        ++empty_lines;  // written only if a non-empty line follows
      }
      content = space = false;
      continue;
    }
    if (is_wsp(c)) {
      space = true;
      continue;
    }
    if (!content) {
      for (; empty_lines > 0; --empty_lines) line += "\r\n";
      content = true;
    }
    if (space) {
      line += ' ';
      space = false;
    }
    line += c;
    if (line.size() >= kDigestChunk) {
      emit(std::string_view(line));
      line.clear();
    }
  }
  if (content) line += "\r\n";  // a last line without its CRLF gets one
  if (!line.empty()) emit(std::string_view(line));
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  return std::string(reinterpret_cast<const char*>(md), len);
}

// Writes the DKIM-Signature field, folding (CRLF SP) before a tag that would pass kFoldAt, after
// a ':' of h=, or inside b='s base64 value (RFC 6376 3.5 allows FWS in all three places). b= comes
// last, so no ';' has to fit after it.
class TagWriter {
 public:
  TagWriter() {
    out_ = "DKIM-Signature:";
    column_ = out_.size();
  }

  // A value that stays on one line: "; tag=value".
  void tag(std::string_view name, std::string_view value) {
    separator(name.size() + 1 + value.size() + 1);
    put(name);
    put("=");
    put(value);
  }

  // h=: folds only after a ':'.
  void names(std::string_view name, const std::vector<std::string>& list) {
    separator(name.size() + 1 + (list.empty() ? 0 : list.front().size() + 1));
    put(name);
    put("=");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const bool last = i + 1 == list.size();
      // The piece with its ':' (or, for the last, the ';' that will follow it) must fit.
      if (i > 0 && column_ + list[i].size() + 1 > kFoldAt) fold();
      put(list[i]);
      if (!last) put(":");
    }
  }

  // b=: "b=" now, the base64 value (folding anywhere) once the field up to here is signed.
  void start_base64(std::string_view name) {
    separator(name.size() + 2);
    put(name);
    put("=");
  }
  void append_base64(std::string_view value) {
    for (std::size_t i = 0; i < value.size();) {
      if (column_ >= kFoldAt) fold();
      const std::size_t take = std::min(value.size() - i, kFoldAt - column_);
      put(value.substr(i, take));
      i += take;
    }
  }

  const std::string& text() const { return out_; }

 private:
  // "; " (or ":" + " " for the first tag), or a fold when `next` characters would not fit.
  void separator(std::size_t next) {
    if (!first_) put(";");
    first_ = false;
    if (column_ + 1 + next > kFoldAt) {
      fold();
    } else {
      put(" ");
    }
  }
  void fold() {
    out_ += "\r\n ";
    column_ = 1;
  }
  void put(std::string_view s) {
    out_ += s;
    column_ += s.size();
  }

  std::string out_;
  std::size_t column_ = 0;
  bool first_ = true;
};

std::string read_small_file(const std::string& config_key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config::ConfigError(config_key, "cannot open " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxKeyFileBytes) throw config::ConfigError(config_key, path + " is larger than 1 MiB");
  }
  if (in.bad()) throw config::ConfigError(config_key, "cannot read " + path);
  return text;
}

void add_or_throw(Signer& signer, Signer::Entry entry, const std::string& config_key) {
  const std::string what =
      fmt::format("DKIM: mail from {} is signed with {} ({} {} bits, selector {})", entry.domain, entry.source,
                  to_string(entry.key.algorithm()), entry.key.bits(), entry.selector);
  auto added = signer.add(std::move(entry));
  if (!added) throw config::ConfigError(config_key, added.error().message);
  spdlog::info("{}", what);
}

Signer::Entry load_key(const std::string& config_key, const std::string& path, std::string domain,
                       std::string selector) {
  const std::string text = read_small_file(config_key, path);
  auto key = PrivateKey::from_pem(text);
  if (!key) throw config::ConfigError(config_key, path + ": " + key.error().message);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    spdlog::warn("DKIM private key {} can be read by other users (mode {:o}); chmod 600 it", path, st.st_mode & 0777);
  return Signer::Entry{lower(domain), std::move(selector), std::move(*key), path};
}

std::string sign_with(EVP_PKEY* pkey, Algorithm algorithm, std::string_view data) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return {};
  std::string digest;
  std::string_view input = data;
  const EVP_MD* md = EVP_sha256();
  if (algorithm == Algorithm::kEd25519Sha256) {
    digest = sha256(data);  // RFC 8463 3: Ed25519 signs the SHA-256 hash, not the data
    if (digest.empty()) return {};
    input = digest;
    md = nullptr;  // PureEdDSA takes no digest of its own
  }
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, pkey) != 1) return {};
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) return {};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) != 1) return {};
  sig.resize(len);
  return sig;
}

}  // namespace

// ---- Canonicalization ---------------------------------------------------------------------

std::string relaxed_header(std::string_view field) {
  const std::size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  std::string out = lower(name);
  out += ':';
  if (colon == std::string_view::npos) return out + "\r\n";
  const std::string_view value = field.substr(colon + 1);
  bool space = false;
  bool started = false;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
      ++i;  // unfolding: the CRLF goes, the WSP after it is a WSP like any other
      continue;
    }
    if (is_wsp(c)) {
      space = started;  // WSP before the value is dropped
      continue;
    }
    if (space) out += ' ';
    space = false;
    started = true;
    out += c;
  }
  out += "\r\n";
  return out;
}

std::string relaxed_body(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  canonicalize_body(body, [&](std::string_view piece) { out += piece; });
  return out;
}

std::string body_hash(std::string_view body) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  canonicalize_body(
      body, [&](std::string_view piece) { ok = ok && EVP_DigestUpdate(ctx.get(), piece.data(), piece.size()) == 1; });
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ok || EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) return {};
  return base64_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

// ---- The message's header -----------------------------------------------------------------

SplitMessage split_message(std::string_view message) {
  SplitMessage out;
  std::size_t pos = 0;
  while (pos < message.size()) {
    std::size_t eol = message.find("\r\n", pos);
    const std::size_t next = eol == std::string_view::npos ? message.size() : eol + 2;
    if (eol == pos) {  // the empty line: the body follows
      out.body = message.substr(next);
      return out;
    }
    const std::string_view text = message.substr(pos, next - pos);
    if (is_wsp(text.front()) && !out.fields.empty()) {
      Field& last = out.fields.back();
      last.text = std::string_view(last.text.data(), last.text.size() + text.size());
    } else {
      const std::size_t colon = text.find(':');
      std::string_view name = colon == std::string_view::npos ? std::string_view() : text.substr(0, colon);
      while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
      out.fields.push_back(Field{name, text});
    }
    pos = next;
  }
  return out;
}

std::vector<std::string> signed_header_names(const std::vector<Field>& fields) {
  std::vector<std::string> names;
  std::vector<const SignedField*> present;
  for (const auto& f : fields) {
    const SignedField* s = f.name.empty() ? nullptr : signed_field(f.name);
    if (!s) continue;
    names.emplace_back(s->name);
    if (std::find(present.begin(), present.end(), s) == present.end()) present.push_back(s);
  }
  for (const auto& s : kSignedFields) {
    const bool here = std::find(present.begin(), present.end(), &s) != present.end();
    if (s.policy == Policy::kAlways || (s.policy == Policy::kIfPresent && here)) names.emplace_back(s.name);
  }
  return names;
}

std::string header_hash_input(const std::vector<Field>& fields, const std::vector<std::string>& names,
                              std::string_view own_field) {
  std::vector<bool> used(fields.size(), false);
  std::string input;
  input.reserve(1024);
  for (const auto& name : names) {
    for (std::size_t i = fields.size(); i-- > 0;) {
      if (used[i] || !iequals(fields[i].name, name)) continue;
      used[i] = true;
      input += relaxed_header(fields[i].text);
      break;
    }
  }
  std::string own = relaxed_header(own_field);
  own.resize(own.size() - 2);  // the signature's own field is hashed without its CRLF
  input += own;
  return input;
}

// ---- Keys ---------------------------------------------------------------------------------

const char* to_string(Algorithm a) { return a == Algorithm::kEd25519Sha256 ? "ed25519-sha256" : "rsa-sha256"; }

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  auto refuse = [](std::string why) {
    ERR_clear_error();  // OpenSSL's reasons are in `why`; none may linger for the next TLS call
    return fail(ErrorKind::kInvalid, "invalid_dkim_key", std::move(why));
  };
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  // The callback refuses to prompt for a passphrase: an encrypted key fails instead of
  // blocking a daemon on its terminal.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  EVP_PKEY* raw = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr;
  if (!raw) {
    if (pem.find("ENCRYPTED") != std::string_view::npos)
      return refuse("is an encrypted private key; DKIM keys must be stored unencrypted (mode 0600)");
    return refuse("holds no PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)");
  }
  PrivateKey key;
  key.pkey_.reset(raw, EVP_PKEY_free);
  if (EVP_PKEY_is_a(raw, "RSA")) {
    key.algorithm_ = Algorithm::kRsaSha256;
    key.bits_ = EVP_PKEY_get_bits(raw);
    if (key.bits_ < kMinRsaBits)
      return refuse("is an RSA key of " + std::to_string(key.bits_) + " bits; DKIM needs at least " +
                    std::to_string(kMinRsaBits) + " (2048 recommended)");
  } else if (EVP_PKEY_is_a(raw, "ED25519")) {
    key.algorithm_ = Algorithm::kEd25519Sha256;
    key.bits_ = EVP_PKEY_get_bits(raw);
  } else {
    return refuse("is neither an RSA nor an Ed25519 private key");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!ctx || EVP_PKEY_check(ctx.get()) != 1) return refuse("fails OpenSSL's private key check");
  return key;
}

std::string PrivateKey::sign(std::string_view data) const {
  std::string sig = sign_with(pkey_.get(), algorithm_, data);
  if (sig.empty()) ERR_clear_error();
  return sig;
}

std::string PrivateKey::public_key_base64() const {
  if (algorithm_ == Algorithm::kEd25519Sha256) {
    unsigned char raw[64];
    std::size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(pkey_.get(), raw, &len) != 1) return {};
    return base64_encode(std::string_view(reinterpret_cast<const char*>(raw), len));
  }
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey_.get(), &der);
  if (len <= 0) return {};
  std::string out = base64_encode(std::string_view(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  return out;
}

std::string PrivateKey::dns_record() const {
  return std::string("v=DKIM1; k=") + (algorithm_ == Algorithm::kEd25519Sha256 ? "ed25519" : "rsa") +
         "; p=" + public_key_base64();
}

// ---- Signing ------------------------------------------------------------------------------

std::string signature_field(std::string_view message, const PrivateKey& key, const SignOptions& options) {
  const SplitMessage split = split_message(message);
  const std::vector<std::string> names = signed_header_names(split.fields);
  const std::string bh = body_hash(split.body);
  if (bh.empty()) return {};

  TagWriter w;
  w.tag("v", "1");
  w.tag("a", to_string(key.algorithm()));
  w.tag("c", "relaxed/relaxed");
  w.tag("d", options.domain);
  w.tag("s", options.selector);
  w.tag("t", std::to_string(options.time));
  w.names("h", names);
  w.tag("bh", bh);  // 47 characters: kept whole, it reads better and always fits a line
  w.start_base64("b");

  const std::string signature = key.sign(header_hash_input(split.fields, names, w.text()));
  if (signature.empty()) return {};
  w.append_base64(base64_encode(signature));
  return w.text() + "\r\n";
}

Result<bool> Signer::add(Entry entry) {
  entry.domain = lower(entry.domain);
  auto& list = by_domain_[entry.domain];
  for (const auto& e : list)
    if (e.key.algorithm() == entry.key.algorithm())
      return fail(ErrorKind::kInvalid, "duplicate_dkim_key",
                  "two " + std::string(to_string(e.key.algorithm())) + " keys for " + entry.domain + ": " + e.source +
                      " and " + entry.source + "; keep one (a domain is signed once per algorithm)");
  list.push_back(std::move(entry));
  // RSA first: the signature verifiers that know only rsa-sha256 look at comes out on top.
  std::stable_sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) {
    return a.key.algorithm() == Algorithm::kRsaSha256 && b.key.algorithm() != Algorithm::kRsaSha256;
  });
  return true;
}

const std::vector<Signer::Entry>* Signer::keys_for(std::string_view domain) const {
  auto it = by_domain_.find(lower(domain));
  return it == by_domain_.end() ? nullptr : &it->second;
}

std::size_t Signer::size() const {
  std::size_t n = 0;
  for (const auto& [domain, list] : by_domain_) n += list.size();
  return n;
}

int Signer::sign(std::string& message, std::string_view from_address, std::int64_t now_s) const {
  const std::size_t at = from_address.rfind('@');
  if (at == std::string_view::npos || by_domain_.empty()) return 0;
  const auto* keys = keys_for(from_address.substr(at + 1));
  if (!keys) return 0;
  std::string fields;
  int added = 0;
  for (const auto& e : *keys) {
    std::string field = signature_field(message, e.key, SignOptions{e.domain, e.selector, now_s});
    if (field.empty()) {
      // Not expected with a key that passed its check at start; the message still goes out.
      spdlog::error("DKIM: signing with {} failed; the message goes out without that signature", e.source);
      continue;
    }
    fields += field;
    ++added;
  }
  if (!fields.empty()) message.insert(0, fields);
  return added;
}

bool parse_key_file_name(std::string_view file_name, std::string& selector, std::string& domain) {
  static constexpr std::string_view kSuffix = ".pem";
  static constexpr std::string_view kMiddle = "._domainkey.";
  if (file_name.size() <= kSuffix.size() || file_name.substr(file_name.size() - kSuffix.size()) != kSuffix)
    return false;
  file_name.remove_suffix(kSuffix.size());
  const std::size_t mid = file_name.find(kMiddle);
  if (mid == std::string_view::npos) return false;
  const std::string_view sel = file_name.substr(0, mid);
  const std::string_view dom = file_name.substr(mid + kMiddle.size());
  if (!is_dns_name(sel) || !is_dns_name(dom) || dom.find('.') == std::string_view::npos) return false;
  selector = lower(sel);
  domain = lower(dom);
  return true;
}

std::string key_file_name(std::string_view selector, std::string_view domain) {
  return std::string(selector) + "._domainkey." + std::string(domain) + ".pem";
}

Signer load_signer(const config::Config& c) {
  Signer signer;
  if (!c.dkim_keys_dir.empty()) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(c.dkim_keys_dir, ec);
    if (ec) throw config::ConfigError("DKIM_KEYS_DIR", "cannot read " + c.dkim_keys_dir + ": " + ec.message());
    std::vector<fs::path> files;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->path().extension() == ".pem") files.push_back(it->path());
    }
    if (ec) throw config::ConfigError("DKIM_KEYS_DIR", "cannot read " + c.dkim_keys_dir + ": " + ec.message());
    std::sort(files.begin(), files.end());  // the same error first on every start
    for (const auto& path : files) {
      std::string selector, domain;
      if (!parse_key_file_name(path.filename().string(), selector, domain))
        throw config::ConfigError("DKIM_KEYS_DIR", path.string() +
                                                       " is not named <selector>._domainkey.<domain>.pem (rename "
                                                       "it, or move it out of the directory)");
      add_or_throw(signer, load_key("DKIM_KEYS_DIR", path.string(), domain, selector), "DKIM_KEYS_DIR");
    }
    if (files.empty()) spdlog::warn("DKIM_KEYS_DIR {} holds no <selector>._domainkey.<domain>.pem", c.dkim_keys_dir);
  }
  if (!c.dkim_key_file.empty()) {
    // An internationalised DKIM_DOMAIN signs as its A-labels: d= is a DNS name, and the sender's
    // domain is matched in that form (the envelope and the From header carry it).
    const std::string domain =
        has_non_ascii(c.dkim_domain) ? to_ascii_domain(c.dkim_domain).value_or(c.dkim_domain) : c.dkim_domain;
    if (!is_dns_name(domain) || domain.find('.') == std::string::npos)
      throw config::ConfigError("DKIM_DOMAIN", "'" + c.dkim_domain + "' is not a domain name");
    if (!is_dns_name(c.dkim_selector))
      throw config::ConfigError("DKIM_SELECTOR", "'" + c.dkim_selector + "' is not a selector (letters, digits, -, .)");
    add_or_throw(signer, load_key("DKIM_KEY_FILE", c.dkim_key_file, domain, lower(c.dkim_selector)), "DKIM_KEY_FILE");
  }
  return signer;
}

}  // namespace websmtp::message::dkim
