#include "websmtp/smtp/capabilities.hpp"

#include <algorithm>
#include <sstream>

#include "websmtp/common/text.hpp"

namespace websmtp::smtp {

namespace {

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; });
  return s;
}

bool contains(const std::vector<std::string>& words, std::string_view word) {
  return std::any_of(words.begin(), words.end(), [&](const std::string& w) { return iequals(w, word); });
}

}  // namespace

Capabilities Capabilities::from_ehlo(const std::vector<std::string>& lines) {
  Capabilities c;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::string line = upper(lines[i]);
    auto end = line.find_first_of(" =");
    std::string keyword = line.substr(0, end);
    if (keyword.empty()) continue;
    if (keyword == "AUTH" && end != std::string::npos) {
      std::istringstream mechanisms(line.substr(end + 1));
      for (std::string m; mechanisms >> m;)
        if (!contains(c.auth_, m)) c.auth_.push_back(m);
    }
    // "AUTH=..." is the pre-standard spelling of AUTH: it announces the mechanisms, not the keyword.
    if (end == std::string::npos || line[end] == ' ') c.keywords_.push_back(std::move(keyword));
  }
  return c;
}

bool Capabilities::has(std::string_view keyword) const { return contains(keywords_, keyword); }

bool Capabilities::offers_auth(std::string_view mechanism) const { return contains(auth_, mechanism); }

std::optional<AuthMechanism> choose_auth(const Capabilities& c) {
  if (c.offers_auth("PLAIN")) return AuthMechanism::kPlain;
  if (c.offers_auth("LOGIN")) return AuthMechanism::kLogin;
  return std::nullopt;
}

}  // namespace websmtp::smtp
