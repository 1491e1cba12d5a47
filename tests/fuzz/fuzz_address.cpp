// Address parsing: parse_mailbox and is_valid_address on any text, and the way an accepted
// mailbox is written back into a header (format_mailbox, encode_word).
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "websmtp/common/base64.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/job/validation.hpp"
#include "websmtp/message/mime.hpp"

using namespace websmtp;
using websmtp::fuzz::has_cr_lf_nul;
using websmtp::fuzz::is_valid_utf8;

namespace {

// Printable ASCII; with `tab`, also HTAB, which header text may hold (quoted strings, phrases).
bool printable_ascii(std::string_view s, bool tab = false) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 || u > 0x7E) && !(tab && c == '\t')) return false;
  }
  return true;
}

// Valid UTF-8 without control characters: what a UTF-8 local part may hold (RFC 6531 3.3).
bool printable_utf8(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return false;
  }
  return is_valid_utf8(s);
}

// Each "=?UTF-8?B?...?=" word at most 75 characters (RFC 2047 2).
void check_encoded_words(std::string_view s) {
  for (std::size_t at = s.find("=?UTF-8?B?"); at != std::string_view::npos; at = s.find("=?UTF-8?B?", at + 1)) {
    auto end = s.find("?=", at + 10);
    FUZZ_CHECK(end != std::string_view::npos, std::string(s));
    FUZZ_CHECK(end + 2 - at <= 75, std::string(s));
  }
}

// A display name as written by format_mailbox back to its text: a quoted string, a run of
// encoded-words (the spaces between them are not part of the text, RFC 2047 6.2), or an atom
// sequence as it stands.
std::string read_phrase(std::string_view p) {
  if (p.size() >= 2 && p.front() == '"' && p.back() == '"') {
    std::string out;
    for (std::size_t i = 1; i + 1 < p.size(); ++i) {
      if (p[i] == '\\')
        ++i;
      else
        FUZZ_CHECK(p[i] != '"', std::string(p));
      out += p[i];
    }
    return out;
  }
  if (!p.starts_with("=?UTF-8?B?")) {
    FUZZ_CHECK(p.find_first_of(",;:<>@()[]\\\"") == std::string_view::npos, std::string(p));
    return std::string(p);
  }
  std::string out;
  while (!p.empty()) {
    FUZZ_CHECK(p.starts_with("=?UTF-8?B?"), std::string(p));
    auto end = p.find("?=", 10);
    FUZZ_CHECK(end != std::string_view::npos, std::string(p));
    auto bytes = base64_decode(p.substr(10, end - 10));
    FUZZ_CHECK(bytes, std::string(p));
    out += *bytes;
    p.remove_prefix(end + 2);
    if (!p.empty()) {
      FUZZ_CHECK(p.front() == ' ', std::string(p));
      p.remove_prefix(1);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Text reaches parse_mailbox only as a JSON string, i.e. valid UTF-8; is_valid_address
  // sees it raw as well (the CLI, the store), so it gets every input.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = job::is_valid_address(text);
  if (valid) {
    FUZZ_CHECK(text.size() <= 254 && text.find('@') != std::string_view::npos, std::string(text));
    // The domain is ASCII, or U-labels whose A-label form is (and fits 254 octets with the local
    // part: that form is what the envelope carries); the local part printable ASCII or UTF-8 (RFC 6531).
    const std::size_t at = text.rfind('@');
    const auto ascii = to_ascii_address(text);
    FUZZ_CHECK(ascii && ascii->size() <= 254, std::string(text));
    FUZZ_CHECK(printable_ascii(std::string_view(*ascii).substr(at)), std::string(text));
    FUZZ_CHECK(printable_ascii(text.substr(at)) || is_valid_utf8(text.substr(at)), std::string(text));
    FUZZ_CHECK(printable_utf8(text.substr(0, at)), std::string(text));
  }

  auto mb = job::parse_mailbox(text, "to[0]");
  if (!mb) {
    FUZZ_CHECK(mb.error().code == "invalid_address" || mb.error().code == "header_injection", mb.error().code);
    FUZZ_CHECK(mb.error().field == "to[0]", mb.error().field);
    if (is_valid_utf8(text)) FUZZ_CHECK(is_valid_utf8(mb.error().message), mb.error().message);
    FUZZ_CHECK(!valid, "a valid bare address was refused");
    return 0;
  }
  FUZZ_CHECK(job::is_valid_address(mb->address), mb->address);
  FUZZ_CHECK(!has_cr_lf_nul(mb->display_name), mb->display_name);
  FUZZ_CHECK(mb->display_name.size() <= 256, mb->display_name);
  if (valid) FUZZ_CHECK(mb->address.size() <= text.size(), mb->address);

  // Written into a header: printable ASCII (but for a UTF-8 local part, which goes as given: an
  // RFC 6532 header, sent only with SMTPUTF8), encoded words well-formed, the address with its
  // domain in A-labels (as given with a UTF-8 local part) and the display name recoverable from
  // what was written.
  const std::string formatted = message::format_mailbox(*mb);
  const std::size_t at = mb->address.rfind('@');
  const bool utf8_local = !printable_ascii(std::string_view(mb->address).substr(0, at));
  FUZZ_CHECK(printable_ascii(formatted, true) || utf8_local, formatted);
  const std::string written = utf8_local ? mb->address : ascii_domain_address(mb->address);
  if (mb->display_name.empty()) {
    FUZZ_CHECK(formatted == written, formatted);
  } else {
    const std::string tail = " <" + written + ">";
    FUZZ_CHECK(formatted.size() > tail.size() && formatted.ends_with(tail), formatted);
    const std::string_view name(formatted.data(), formatted.size() - tail.size());
    FUZZ_CHECK(printable_ascii(name, true), formatted);
    check_encoded_words(name);
    if (is_valid_utf8(mb->display_name)) FUZZ_CHECK(read_phrase(name) == mb->display_name, formatted);
  }

  const std::string word = message::encode_word(text);
  if (!has_cr_lf_nul(text)) {
    FUZZ_CHECK(printable_ascii(word, true), word);
    check_encoded_words(word);
  }
  return 0;
}
