#pragma once
// How an SMTP client uses TLS with its peer (SMTP_TLS). Dependency-free: the configuration
// parses it, the SMTP client acts on it.
#include <optional>
#include <string_view>

namespace websmtp::smtp {

enum class TlsMode {
  kOpportunistic,  // STARTTLS when the peer offers it, else plaintext
  kNone,           // never TLS
  kStartTls,       // STARTTLS required: never plaintext
  kImplicit,       // TLS from the first byte (port 465)
};

// The SMTP_TLS words: opportunistic, none, starttls, tls.
const char* to_string(TlsMode m);
std::optional<TlsMode> parse_tls_mode(std::string_view word);

}  // namespace websmtp::smtp
