#include "websmtp/smtp/tls.hpp"

namespace websmtp::smtp {

const char* to_string(TlsMode m) {
  switch (m) {
    case TlsMode::kOpportunistic:
      return "opportunistic";
    case TlsMode::kNone:
      return "none";
    case TlsMode::kStartTls:
      return "starttls";
    case TlsMode::kImplicit:
      return "tls";
  }
  return "?";
}

std::optional<TlsMode> parse_tls_mode(std::string_view word) {
  for (auto m : {TlsMode::kOpportunistic, TlsMode::kNone, TlsMode::kStartTls, TlsMode::kImplicit})
    if (word == to_string(m)) return m;
  return std::nullopt;
}

}  // namespace websmtp::smtp
