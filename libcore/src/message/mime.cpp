#include "websmtp/message/mime.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "websmtp/common/base64.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/common/text.hpp"

namespace websmtp::message {
namespace {

constexpr std::size_t kFoldAt = 78;     // RFC 5322 2.1.1: lines SHOULD stay within 78 characters
constexpr std::size_t kMaxLine = 998;   // RFC 5322 2.1.1: lines MUST NOT exceed 998 octets
constexpr std::size_t kQpLine = 76;     // RFC 2045 6.7: quoted-printable lines, soft break included
constexpr std::size_t kBase64Row = 57;  // input bytes per 76-character base64 line (RFC 2045 6.8)
// 39 bytes -> 52 base64 characters -> a 64-character encoded-word: under RFC 2047's 75, and short
// enough that "Subject: " or "Reply-To: " plus one word still fits in 78 columns.
constexpr std::size_t kWordBytes = 39;
// An unencoded run (spaces plus word) longer than this could not be folded under kMaxLine next to
// a field name and a separator, so such display names go out as encoded-words, which fold anywhere.
constexpr std::size_t kMaxPlainRun = 900;

constexpr std::string_view kUpperHex = "0123456789ABCDEF";
constexpr std::string_view kLowerHex = "0123456789abcdef";
constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::mt19937_64& engine() {
  // Seeded once per thread: random_device can be a syscall, too slow to call per message.
  thread_local std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seq{device(), device(), device(), device(), device(), device(), device(), device()};
    return std::mt19937_64(seq);
  }();
  return rng;
}

void append_random_hex(std::string& out, std::size_t digits) {
  auto& rng = engine();
  while (digits > 0) {
    std::uint64_t bits = rng();
    for (int i = 0; i < 16 && digits > 0; ++i, --digits) {
      out += kLowerHex[bits & 0xF];
      bits >>= 4;
    }
  }
}

// "=_" cannot occur in quoted-printable ('=' is always followed by hex or CRLF) nor in base64,
// so only 7bit parts need checking against it.
std::string new_boundary() {
  std::string boundary = "=_";
  append_random_hex(boundary, 24);
  return boundary;
}

bool is_plain_char(unsigned char c) { return (c >= 0x20 && c < 0x7F) || c == '\t'; }

// Printable ASCII that no decoder could mistake for an encoded-word.
bool is_plain_text(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (!is_plain_char(c) || (c == '=' && i + 1 < s.size() && s[i + 1] == '?')) return false;
  }
  return true;
}

// The longest run of spaces followed by non-spaces: what a folder must keep on one line.
std::size_t longest_run(std::string_view s) {
  std::size_t longest = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = i;
    while (j < s.size() && s[j] == ' ') ++j;
    while (j < s.size() && s[j] != ' ') ++j;
    longest = std::max(longest, j - i);
    i = j;
  }
  return longest;
}

bool ends_with_crlf(const std::string& s) { return s.size() >= 2 && s[s.size() - 2] == '\r' && s.back() == '\n'; }

void append_base64_lines(std::string& out, std::string_view data) {
  for (std::size_t pos = 0; pos < data.size(); pos += kBase64Row) {
    base64_append(out, data.substr(pos, kBase64Row));
    out += "\r\n";
  }
}

// Chunks end on UTF-8 character boundaries because RFC 2047 6.3 requires each encoded-word to
// hold whole characters; malformed input with no boundary in reach is cut anyway.
void append_encoded_words(std::string& out, std::string_view utf8) {
  std::size_t start = 0;
  while (start < utf8.size()) {
    std::size_t end = std::min(start + kWordBytes, utf8.size());
    if (end < utf8.size()) {
      std::size_t boundary = end;
      while (boundary > start && (static_cast<unsigned char>(utf8[boundary]) & 0xC0) == 0x80) --boundary;
      if (boundary > start) end = boundary;
    }
    if (start > 0) out += ' ';
    out += "=?UTF-8?B?";
    base64_append(out, utf8.substr(start, end - start));
    out += "?=";
    start = end;
  }
}

// Writes one header field, folding (CRLF before a space) where a line would pass kFoldAt.
class HeaderWriter {
 public:
  explicit HeaderWriter(std::string& out) : out_(out) {}

  void start(std::string_view name) {
    out_ += name;
    out_ += ':';
    column_ = name.size() + 1;
    has_item_ = false;
  }

  // Text that must stay on the current line.
  void raw(std::string_view text) {
    out_ += text;
    column_ += text.size();
    if (text.find_first_not_of(' ') != std::string_view::npos) has_item_ = true;
  }

  // The space before an item of `next_length` characters; a fold when the item would not fit.
  // Never folds before the first item: that would leave "Name:" alone on its line.
  void space_or_fold(std::size_t next_length) {
    if (has_item_ && column_ + 1 + next_length > kFoldAt) {
      out_ += "\r\n ";
      column_ = 1;
    } else {
      out_ += ' ';
      ++column_;
    }
  }

  // Text that may fold at any of its spaces. A fold goes before a run of spaces so the
  // continuation line starts with them, and never before trailing spaces alone, since a
  // whitespace-only continuation line is obsolete syntax (RFC 5322 4.2).
  void words(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
      std::size_t word = i;
      while (word < text.size() && text[word] == ' ') ++word;
      std::size_t end = word;
      while (end < text.size() && text[end] != ' ') ++end;
      if (word > i && end > word && has_item_ && column_ + (end - i) > kFoldAt) {
        out_ += "\r\n";
        column_ = 0;
      }
      raw(text.substr(i, end - i));
      i = end;
    }
  }

  void end() { out_ += "\r\n"; }

 private:
  std::string& out_;
  std::size_t column_ = 0;
  bool has_item_ = false;
};

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

bool display_name_needs_quoting(std::string_view name) {
  if (name.front() == ' ' || name.back() == ' ') return true;  // atoms would lose them
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (std::string_view(",;:<>@()[]\\\".\t").find(c) != std::string_view::npos) return true;
    if (c == ' ' && i + 1 < name.size() && name[i + 1] == ' ') return true;
  }
  return false;
}

// The address as a header carries it: with its domain in A-labels, so that a peer without
// SMTPUTF8 gets an ASCII header it can take; as given when its local part is UTF-8, since such a
// header is an RFC 6532 one anyway (it travels only with SMTPUTF8), where a U-label domain is
// allowed and shows what the client wrote.
void append_address(std::string& out, std::string_view address) {
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || !has_non_ascii(address.substr(at + 1)) || has_non_ascii(address.substr(0, at))) {
    out += address;
    return;
  }
  out += ascii_domain_address(address);
}

void append_mailbox(std::string& out, const job::Mailbox& m) {
  const std::string_view name = m.display_name;
  if (name.empty()) {
    append_address(out, m.address);
    return;
  }
  if (!is_plain_text(name)) {
    append_encoded_words(out, name);
  } else if (display_name_needs_quoting(name)) {
    const std::size_t mark = out.size();
    append_quoted(out, name);
    if (longest_run(std::string_view(out).substr(mark)) > kMaxPlainRun) {
      out.resize(mark);
      append_encoded_words(out, name);
    }
  } else if (longest_run(name) > kMaxPlainRun) {
    append_encoded_words(out, name);
  } else {
    out += name;
  }
  out += " <";
  append_address(out, m.address);
  out += '>';
}

void append_address_header(HeaderWriter& h, std::string_view name, std::span<const job::Mailbox> list) {
  h.start(name);
  std::string item;  // reused: thousands of recipients should not mean thousands of allocations
  for (std::size_t i = 0; i < list.size(); ++i) {
    item.clear();
    append_mailbox(item, list[i]);
    if (i > 0) h.raw(",");
    h.space_or_fold(item.size());
    h.words(item);
  }
  h.end();
}

// Unstructured text (Subject, custom header values): as-is when it is printable ASCII that folds
// under kMaxLine, otherwise RFC 2047 encoded-words.
void append_text_header(HeaderWriter& h, std::string_view name, std::string_view value) {
  h.start(name);
  if (!value.empty()) {
    h.raw(" ");
    const std::size_t room = name.size() + 2 < kMaxLine ? kMaxLine - name.size() - 2 : 0;
    if (is_plain_text(value) && longest_run(value) <= room) {
      h.words(value);
    } else {
      std::string encoded;
      encoded.reserve(value.size() * 2 + 16);
      append_encoded_words(encoded, value);
      h.words(encoded);
    }
  }
  h.end();
}

// The sender's domain when it is usable as a Message-ID right-hand side (a dot-atom or a
// domain literal); "localhost" otherwise, so a malformed sender cannot break the header.
std::string_view sender_domain(std::string_view address) {
  const std::size_t at = address.rfind('@');
  const std::string_view domain = at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
  if (domain.empty()) return "localhost";
  const bool literal = domain.size() >= 2 && domain.front() == '[' && domain.back() == ']';
  const std::string_view body = literal ? domain.substr(1, domain.size() - 2) : domain;
  for (char ch : body) {
    const auto c = static_cast<unsigned char>(ch);
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    const bool ok =
        alnum || std::string_view(literal ? ".:-" : ".-!#$%&'*+/=?^_`{|}~").find(ch) != std::string_view::npos;
    if (!ok) return "localhost";
  }
  return domain;
}

// One pass over a body, gathering what the encoding choice and the size estimate need.
struct TextStats {
  bool ascii = true;             // no NUL, no byte >= 0x80
  std::size_t longest_line = 0;  // octets, line ends excluded
  std::size_t escaped = 0;       // bytes quoted-printable writes as =XX (trailing spaces aside)
  std::size_t normalised_size = 0;
  bool normalised = true;  // already CRLF-only
};

TextStats analyse(std::string_view s) {
  TextStats st;
  std::size_t line = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r' || c == '\n') {
      st.longest_line = std::max(st.longest_line, line);
      line = 0;
      st.normalised_size += 2;
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
        ++i;
      } else {
        st.normalised = false;
      }
      continue;
    }
    ++line;
    ++st.normalised_size;
    if (c == 0 || c >= 0x80) st.ascii = false;
    if ((c < 33 || c > 126 || c == '=') && c != ' ' && c != '\t') ++st.escaped;
  }
  st.longest_line = std::max(st.longest_line, line);
  return st;
}

void append_normalised(std::string& out, std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\r' || c == '\n') {
      out += "\r\n";
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out += c;
    }
  }
}

// RFC 2045 6.7 with any of CRLF, LF or lone CR taken as a hard line break (written as CRLF).
// Lines stay within kQpLine including the soft-break '='; whitespace before a hard break or at
// the end is encoded so transports that strip trailing whitespace cannot change the text.
void append_quoted_printable(std::string& out, std::string_view s) {
  std::size_t column = 0;
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r' || c == '\n') {
      out += "\r\n";
      column = 0;
      if (c == '\r' && i + 1 < n && s[i + 1] == '\n') ++i;
      continue;
    }
    const bool last = i + 1 == n || s[i + 1] == '\r' || s[i + 1] == '\n';
    const bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
    const std::size_t width = literal ? 1 : 3;
    // A character that is not last on its line must leave room for a later soft-break '='.
    if (column + width > (last ? kQpLine : kQpLine - 1)) {
      out += "=\r\n";
      column = 0;
    }
    if (literal) {
      out += static_cast<char>(c);
    } else {
      out += '=';
      out += kUpperHex[c >> 4];
      out += kUpperHex[c & 0xF];
    }
    column += width;
  }
}

struct TextPart {
  std::string_view content;
  std::string_view subtype;  // "plain" or "html"
  TextStats stats;
  bool seven_bit = false;
};

TextPart plan_text_part(std::string_view content, std::string_view subtype, std::span<const std::string> boundaries) {
  TextPart part{content, subtype, analyse(content)};
  part.seven_bit = part.stats.ascii && part.stats.longest_line <= kMaxLine;
  for (const auto& boundary : boundaries) {
    if (part.seven_bit && content.find(boundary) != std::string_view::npos) part.seven_bit = false;
  }
  return part;
}

std::size_t estimated_size(const TextPart& part) {
  if (part.seven_bit) return part.stats.normalised_size + 128;
  const std::size_t encoded = part.stats.normalised_size + 2 * part.stats.escaped;
  return encoded + encoded / (kQpLine - 1) * 3 + 128;
}

// The part's headers, blank line and content. A `nested` part always gets one more CRLF: the CRLF
// before a boundary delimiter belongs to the delimiter (RFC 2046 5.1.1), so without it a body's
// final line break would be lost. The message body itself must end with CRLF for SMTP anyway.
void append_text_part(std::string& out, const TextPart& part, bool nested) {
  out += "Content-Type: text/";
  out += part.subtype;
  out += "; charset=utf-8\r\nContent-Transfer-Encoding: ";
  out += part.seven_bit ? "7bit" : "quoted-printable";
  out += "\r\n\r\n";
  const std::size_t body_start = out.size();
  if (part.seven_bit) {
    if (part.stats.normalised) {
      out += part.content;
    } else {
      append_normalised(out, part.content);
    }
  } else {
    append_quoted_printable(out, part.content);
  }
  if (nested || (out.size() > body_start && !ends_with_crlf(out))) out += "\r\n";
}

bool is_attr_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         std::string_view("!#$&+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Printable ASCII that no decoder could mistake for an encoded-word: Python's email package and
// others decode "=?...?=" even inside a quoted parameter value, which would change the name.
bool is_plain_param_value(std::string_view value) {
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c >= 0x7F || (c == '=' && i + 1 < value.size() && value[i + 1] == '?')) return false;
  }
  return true;
}

// `name="value"` (quoted, with '"' and '\' escaped) when that is plain and fits on one line.
bool append_plain_param(HeaderWriter& h, std::string_view name, std::string_view value) {
  if (!is_plain_param_value(value)) return false;
  const std::size_t escapes =
      static_cast<std::size_t>(std::count_if(value.begin(), value.end(), [](char c) { return c == '"' || c == '\\'; }));
  if (name.size() + 3 + value.size() + escapes >= kFoldAt) return false;
  std::string param(name);
  param += '=';
  append_quoted(param, value);
  h.space_or_fold(param.size());
  h.raw(param);
  return true;
}

// `; name="value"` when the value is plain and fits a line, otherwise RFC 2231
// `name*=UTF-8''percent-encoded`, split into numbered continuations `name*0*=`, `name*1*=`, ...
// (on character boundaries) so that long names still fold under kFoldAt.
void append_rfc2231_param(HeaderWriter& h, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  h.raw(";");
  if (append_plain_param(h, name, value)) return;
  const std::size_t budget = kFoldAt > name.size() + 18 ? kFoldAt - name.size() - 10 : 8;
  std::vector<std::string> chunks(1, "UTF-8''");
  std::size_t i = 0;
  while (i < value.size()) {
    std::size_t end = i + 1;
    while (end < value.size() && (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) ++end;
    std::string encoded;
    for (std::size_t k = i; k < end; ++k) {
      const auto c = static_cast<unsigned char>(value[k]);
      if (is_attr_char(c)) {
        encoded += static_cast<char>(c);
      } else {
        encoded += '%';
        encoded += kUpperHex[c >> 4];
        encoded += kUpperHex[c & 0xF];
      }
    }
    if (chunks.back().size() + encoded.size() > budget && chunks.back() != "UTF-8''") chunks.emplace_back();
    chunks.back() += encoded;
    i = end;
  }
  for (std::size_t k = 0; k < chunks.size(); ++k) {
    std::string param(name);
    if (chunks.size() > 1) {
      param += '*';
      param += std::to_string(k);
    }
    param += "*=";
    param += chunks[k];
    if (k > 0) h.raw(";");
    h.space_or_fold(param.size());
    h.raw(param);
  }
}

// `; name="value"` when plain, otherwise `name="=?UTF-8?B?...?= =?UTF-8?B?...?="`: RFC 2047
// encoded-words inside the quotes, folded between words. RFC 2047 5 does not allow encoded-words
// in a quoted-string, but clients that predate RFC 2231 read names this way, and Thunderbird
// writes them so for their sake; newer clients take the Content-Disposition filename first.
// A fold inside a quoted-string is FWS, and the space it leaves between two encoded-words is
// dropped by decoders (RFC 2047 6.2).
void append_rfc2047_param(HeaderWriter& h, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  h.raw(";");
  if (append_plain_param(h, name, value)) return;
  std::string words;
  append_encoded_words(words, value);
  std::string item(name);
  item += "=\"";
  std::size_t start = 0;
  while (start <= words.size()) {
    std::size_t end = words.find(' ', start);
    if (end == std::string::npos) end = words.size();
    item.append(words, start, end - start);
    if (end == words.size()) item += '"';
    h.space_or_fold(item.size());
    h.raw(item);
    item.clear();
    start = end + 1;
  }
}

void append_attachment(std::string& out, const job::Attachment& a, bool as_inline) {
  HeaderWriter h(out);
  h.start("Content-Type");
  h.raw(" ");
  h.raw(a.content_type.empty() ? std::string_view("application/octet-stream") : a.content_type);
  append_rfc2047_param(h, "name", a.filename);
  h.end();
  h.start("Content-Disposition");
  h.raw(as_inline ? " inline" : " attachment");
  append_rfc2231_param(h, "filename", a.filename);
  h.end();
  if (as_inline) {
    // Validation keeps the id to msg-id characters within kMaxContentIdBytes: one short line.
    out += "Content-ID: <";
    out += a.content_id;
    out += ">\r\n";
  }
  out += "Content-Transfer-Encoding: base64\r\n\r\n";
  append_base64_lines(out, a.content);
  if (a.content.empty()) out += "\r\n";
}

// `type` is multipart/related's required root type (RFC 2387 3.1); empty for other subtypes.
void append_multipart_header(std::string& out, std::string_view subtype, const std::string& boundary,
                             std::string_view type = {}) {
  out += "Content-Type: multipart/";
  out += subtype;
  if (!type.empty()) {
    out += "; type=\"";
    out += type;
    out += '"';
  }
  out += ";\r\n boundary=\"";  // '=' is a tspecial (RFC 2045 5.1), so the boundary is quoted
  out += boundary;
  out += "\"\r\n\r\n";
}

void append_delimiter(std::string& out, const std::string& boundary, bool close = false) {
  out += "--";
  out += boundary;
  out += close ? "--\r\n" : "\r\n";
}

}  // namespace

std::string encode_word(std::string_view utf8) {
  if (is_plain_text(utf8)) return std::string(utf8);
  std::string out;
  out.reserve(utf8.size() * 2 + 16);
  append_encoded_words(out, utf8);
  return out;
}

std::string format_mailbox(const job::Mailbox& m) {
  std::string out;
  out.reserve(m.address.size() + m.display_name.size() * 2 + 8);
  append_mailbox(out, m);
  return out;
}

std::string format_date(std::int64_t unix_seconds) {
  // Floor division so that times before 1970 land on the right day.
  std::int64_t days = unix_seconds / 86400;
  std::int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  const std::int64_t weekday = ((days % 7) + 7 + 4) % 7;  // 1970-01-01 was a Thursday
  // Howard Hinnant's civil_from_days: proleptic Gregorian calendar without a time-zone database.
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);

  auto two = [](std::string& out, std::int64_t v) {
    out += static_cast<char>('0' + v / 10);
    out += static_cast<char>('0' + v % 10);
  };
  std::string out;
  out.reserve(32);
  out += kDays[static_cast<std::size_t>(weekday)];
  out += ", ";
  two(out, day);
  out += ' ';
  out += kMonths[static_cast<std::size_t>(month - 1)];
  out += ' ';
  std::string y = std::to_string(year);
  if (year >= 0 && y.size() < 4) y.insert(0, 4 - y.size(), '0');
  out += y;
  out += ' ';
  two(out, secs / 3600);
  out += ':';
  two(out, secs / 60 % 60);
  out += ':';
  two(out, secs % 60);
  out += " +0000";
  return out;
}

std::string random_message_id(std::string_view domain) {
  if (domain.empty()) domain = "localhost";
  std::string out;
  out.reserve(domain.size() + 36);
  out += '<';
  append_random_hex(out, 32);
  out += '@';
  out += domain;
  out += '>';
  return out;
}

std::string build_message(const job::MailRequest& req, const BuildOptions& opts) {
  // Inline parts belong to the html; without html (validation refuses that) they are sent as
  // regular attachments rather than dropped.
  std::vector<const job::Attachment*> inline_parts;
  std::vector<const job::Attachment*> regular;
  for (const auto& a : req.attachments) {
    (req.html && !a.content_id.empty() ? inline_parts : regular).push_back(&a);
  }
  const bool mixed = !regular.empty();
  const bool alternative = req.text.has_value() && req.html.has_value();
  const bool related = !inline_parts.empty();
  std::vector<std::string> boundaries;
  auto fresh_boundary = [&boundaries] {
    std::string b;
    do {
      b = new_boundary();
    } while (std::find(boundaries.begin(), boundaries.end(), b) != boundaries.end());
    boundaries.push_back(b);
    return b;
  };
  const std::string mixed_boundary = mixed ? fresh_boundary() : std::string();
  const std::string alternative_boundary = alternative ? fresh_boundary() : std::string();
  const std::string related_boundary = related ? fresh_boundary() : std::string();

  // Neither body: an empty text/plain part keeps the message well-formed (validation rejects it anyway).
  std::optional<TextPart> plain;
  std::optional<TextPart> html;
  if (req.text || !req.html) {
    plain = plan_text_part(req.text ? std::string_view(*req.text) : std::string_view(), "plain", boundaries);
  }
  if (req.html) html = plan_text_part(*req.html, "html", boundaries);

  // One allocation for the common case: headers, parts and base64 (4/3 plus CRLF every 76).
  std::size_t estimate = 1024 + req.subject.size() * 2;
  for (const auto* list : {&req.to, &req.cc}) {
    for (const auto& m : *list) estimate += m.address.size() + m.display_name.size() * 2 + 8;
  }
  for (const auto& [name, value] : req.headers) estimate += name.size() + value.size() * 2 + 8;
  if (plain) estimate += estimated_size(*plain);
  if (html) estimate += estimated_size(*html);
  for (const auto& a : req.attachments) {
    estimate += (a.content.size() + 2) / 3 * 4 * 78 / 76 + a.filename.size() * 12 + a.content_id.size() + 320;
  }
  std::string out;
  out.reserve(estimate);

  HeaderWriter h(out);
  h.start("Date");
  h.raw(" ");
  h.raw(format_date(opts.date_unix));
  h.end();
  append_address_header(h, "From", std::span<const job::Mailbox>(&req.from, 1));
  if (!req.to.empty()) append_address_header(h, "To", req.to);
  if (!req.cc.empty()) append_address_header(h, "Cc", req.cc);
  if (req.reply_to && !req.reply_to->address.empty()) {
    append_address_header(h, "Reply-To", std::span<const job::Mailbox>(&*req.reply_to, 1));
  }
  append_text_header(h, "Subject", req.subject);
  out += "Message-ID: ";
  if (opts.message_id.empty()) {
    // The From domain in A-labels: a U-label one would not be a valid id-right.
    const std::string from = ascii_domain_address(req.from.address);
    out += random_message_id(opts.message_id_domain.empty() ? sender_domain(from)
                                                            : std::string_view(opts.message_id_domain));
  } else if (opts.message_id.front() != '<') {  // a bare id-left@id-right is still usable
    out += '<';
    out += opts.message_id;
    out += '>';
  } else {
    out += opts.message_id;
  }
  out += "\r\nMIME-Version: 1.0\r\n";
  for (const auto& [name, value] : req.headers) {
    if (!is_reserved_header(name)) append_text_header(h, name, value);
  }

  // mixed( alternative( plain, related( html, inline... ) ), attachment... ), each level only
  // when it has more than one part: a level with a single part would only add nesting.
  if (mixed) {
    append_multipart_header(out, "mixed", mixed_boundary);
    append_delimiter(out, mixed_boundary);
  }
  if (alternative) {
    append_multipart_header(out, "alternative", alternative_boundary);
    append_delimiter(out, alternative_boundary);
    append_text_part(out, *plain, true);
    append_delimiter(out, alternative_boundary);
  }
  if (related) {
    append_multipart_header(out, "related", related_boundary, "text/html");
    append_delimiter(out, related_boundary);
    append_text_part(out, *html, true);
    for (const auto* a : inline_parts) {
      append_delimiter(out, related_boundary);
      append_attachment(out, *a, true);
    }
    append_delimiter(out, related_boundary, true);
  } else {
    append_text_part(out, html ? *html : *plain, alternative || mixed);
  }
  if (alternative) append_delimiter(out, alternative_boundary, true);
  if (mixed) {
    for (const auto* a : regular) {
      append_delimiter(out, mixed_boundary);
      append_attachment(out, *a, false);
    }
    append_delimiter(out, mixed_boundary, true);
  }
  return out;
}

bool is_reserved_header(std::string_view name) {
  // Every header the gateway writes itself or that belongs to the envelope or the MIME
  // structure: one list, so validation refuses exactly what building would have to drop.
  static constexpr std::string_view kReserved[] = {
      "from",   "to",          "cc",         "bcc",    "subject", "date", "message-id", "mime-version",
      "reply-to", "sender", "return-path", "dkim-signature"};
  if (istarts_with(name, "content-")) return true;
  for (auto r : kReserved)
    if (iequals(r, name)) return true;
  return false;
}

}  // namespace websmtp::message
