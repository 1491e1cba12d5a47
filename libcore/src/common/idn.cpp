#include "websmtp/common/idn.hpp"

#include <idn2.h>

#include <algorithm>

#include "websmtp/common/text.hpp"

namespace websmtp {

bool has_non_ascii(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::optional<std::string> to_ascii_domain(std::string_view domain, std::string* why) {
  auto refuse = [&](const char* reason) {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (domain.empty()) return refuse("empty domain");
  // libidn2 reads a C string: an embedded NUL would cut the domain short unseen.
  if (domain.find('\0') != std::string_view::npos) return refuse("NUL in the domain");
  std::string out;
  if (!has_non_ascii(domain)) {
    out.assign(domain);
  } else {
    char* converted = nullptr;
    const std::string in(domain);
    const int rc = idn2_to_ascii_8z(in.c_str(), &converted, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    if (rc != IDN2_OK || !converted) {
      idn2_free(converted);
      return refuse(rc != IDN2_OK ? idn2_strerror(rc) : "conversion failed");
    }
    out = converted;
    idn2_free(converted);
  }
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

std::optional<std::string> to_ascii_address(std::string_view address, std::string* why) {
  const std::size_t at = address.rfind('@');
  const std::string_view domain = at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
  if (at == std::string_view::npos || !has_non_ascii(domain)) return std::string(address);
  auto ascii = to_ascii_domain(domain, why);
  if (!ascii) return std::nullopt;
  std::string out(address.substr(0, at + 1));
  out += *ascii;
  return out;
}

std::string ascii_domain_address(std::string_view address) {
  auto ascii = to_ascii_address(address);
  return ascii ? std::move(*ascii) : std::string(address);
}

}  // namespace websmtp
