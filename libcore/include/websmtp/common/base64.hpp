#pragma once
// Base64 (RFC 4648): the one encoder for MIME parts, encoded-words and SMTP AUTH.
#include <optional>
#include <string>
#include <string_view>

namespace websmtp {

// Appends the encoding of `data` to `out` (no line breaks).
void base64_append(std::string& out, std::string_view data);
std::string base64_encode(std::string_view in);
// Accepts the standard and the URL-safe alphabet and ignores CR, LF, space and tab;
// nullopt for anything else, data after padding or a dangling character.
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace websmtp
