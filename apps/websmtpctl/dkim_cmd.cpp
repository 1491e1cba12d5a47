// `websmtpctl dkim keygen`: makes a DKIM key pair, writes the private key where websmtpd's
// DKIM_KEYS_DIR expects it (<selector>._domainkey.<domain>.pem, mode 0600) and prints the DNS TXT
// record to publish. Local only: no server is involved, and the key never leaves the file.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/common/text.hpp"

namespace websmtp::ctl {

namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string lower(std::string s) {
  for (char& c : s) c = ascii_lower(c);
  return s;
}

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(len > 0 ? static_cast<std::size_t>(len) : 0);
  return out;
}

// p=: base64 of the DER SubjectPublicKeyInfo for RSA, of the raw 32-byte key for Ed25519 (RFC 8463 4.2).
std::string public_key_base64(EVP_PKEY* pkey, bool ed25519) {
  if (ed25519) {
    unsigned char raw[64];
    std::size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1) return {};
    return base64(raw, len);
  }
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) return {};
  std::string out = base64(der, static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

// Creates `path` with mode 0600 (refusing to replace a file: an overwritten key would break
// the signatures of mail already sent under its published record) and writes the PEM.
bool write_private_key(const std::string& path, EVP_PKEY* pkey, std::string& why) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    why = errno == EEXIST ? path + " already exists; remove it first or choose another selector"
                          : "cannot create " + path + ": " + std::strerror(errno);
    return false;
  }
  ::fchmod(fd, 0600);  // whatever the umask
  BioPtr mem(BIO_new(BIO_s_mem()), BIO_free);
  bool ok = mem && PEM_write_bio_PrivateKey(mem.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  char* data = nullptr;
  const long len = ok ? BIO_get_mem_data(mem.get(), &data) : 0;
  for (long off = 0; ok && off < len;) {
    const ssize_t n = ::write(fd, data + off, static_cast<std::size_t>(len - off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    off += n > 0 ? n : 0;
  }
  ok = ::fsync(fd) == 0 && ok;
  ok = ::close(fd) == 0 && ok;
  if (!ok) {
    why = "cannot write " + path + ": " + std::strerror(errno);
    ::unlink(path.c_str());
  }
  return ok;
}

}  // namespace

Subcommand setup_dkim(CLI::App& app, const GlobalOptions& global) {
  auto* dkim = app.add_subcommand("dkim", "DKIM signing keys (local: no server is contacted)");
  dkim->require_subcommand(1);
  auto options = std::make_shared<DkimOptions>();
  options->global = &global;
  auto* keygen = dkim->add_subcommand(
      "keygen",
      "Write a new private key as DIR/<selector>._domainkey.<domain>.pem (mode 0600, the name websmtpd's "
      "DKIM_KEYS_DIR expects) and print the DNS TXT record to publish");
  keygen->add_option("--domain", options->domain, "The From domain the key signs for (d=)")->required();
  keygen->add_option("--selector", options->selector, "The selector (s=), e.g. s2025")->required();
  keygen->add_option("--dir", options->dir, "Directory to write the key to")->capture_default_str();
  keygen->add_option("--bits", options->bits, "RSA key size")->check(CLI::Range(1024, 4096))->capture_default_str();
  keygen->add_option("--algorithm", options->algorithm, "rsa (rsa-sha256) or ed25519 (ed25519-sha256, RFC 8463)")
      ->check(CLI::IsMember({"rsa", "ed25519"}))
      ->capture_default_str();
  return {keygen, [options] { return run_dkim_keygen(*options); }};
}

int run_dkim_keygen(const DkimOptions& options) {
  // A U-label domain (bücher.example) signs as its A-labels (d=, the key file's name), as
  // websmtpd converts it: the same libidn2 conversion (IDNA2008, UTS #46 non-transitional).
  std::string idn_why;
  const auto ascii = to_ascii_domain(options.domain, &idn_why);
  const std::string domain = ascii ? *ascii : lower(options.domain);
  if (!ascii || !is_dns_name(domain) || domain.find('.') == std::string::npos) {
    print_error("--domain '" + options.domain + "' is not a domain name" +
                (ascii ? std::string() : " (IDNA2008: " + idn_why + ")"));
    return kExitUsage;
  }
  const std::string selector = lower(options.selector);
  if (!is_dns_name(selector)) {
    print_error("--selector '" + options.selector + "' is not a selector (letters, digits, '-' and '.')");
    return kExitUsage;
  }
  const bool ed25519 = options.algorithm == "ed25519";
  PkeyPtr pkey(ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                       : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(options.bits)),
               EVP_PKEY_free);
  if (!pkey) {
    print_error("OpenSSL could not generate the key");
    return kExitRefused;
  }
  const std::string file = selector + "._domainkey." + domain + ".pem";
  const std::string path = (options.dir.empty() ? std::string(".") : options.dir) + "/" + file;
  std::string why;
  if (!write_private_key(path, pkey.get(), why)) {
    print_error(why);
    return kExitRefused;
  }
  const std::string name = selector + "._domainkey." + domain;
  const std::string record =
      std::string("v=DKIM1; k=") + (ed25519 ? "ed25519" : "rsa") + "; p=" + public_key_base64(pkey.get(), ed25519);
  const auto strings = txt_strings(record);
  const int bits = EVP_PKEY_get_bits(pkey.get());

  if (options.global->json) {
    nlohmann::json out = {{"domain", domain}, {"selector", selector},
                          {"file", path},     {"algorithm", ed25519 ? "ed25519-sha256" : "rsa-sha256"},
                          {"bits", bits},     {"name", name},
                          {"record", record}, {"strings", strings}};
    std::cout << out.dump() << '\n';
    return kExitOk;
  }
  std::cerr << "Wrote " << path << " (" << (ed25519 ? "Ed25519" : "RSA " + std::to_string(bits) + " bits")
            << ", mode 0600). Publish this TXT record, then put the file in websmtpd's DKIM_KEYS_DIR:\n";
  std::cout << name << ". IN TXT (";
  for (const auto& s : strings) std::cout << " \"" << s << '"';
  std::cout << " )\n";
  return kExitOk;
}

}  // namespace websmtp::ctl
