#pragma once
// The few cryptographic primitives authentication needs (OpenSSL underneath).
#include <string>
#include <string_view>

namespace websmtp::auth {

// `n` bytes from the operating system's CSPRNG (throws std::runtime_error if it fails).
std::string random_bytes(std::size_t n);
// Lower-case hex of SHA-256(data).
std::string sha256_hex(std::string_view data);
// Raw HMAC-SHA256(key, data), 32 bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);
// Lower-case hex of the bytes.
std::string to_hex(std::string_view bytes);
// base64url without padding (RFC 4648 5).
std::string base64url(std::string_view bytes);
// Compares in time independent of where the strings differ (their lengths are not secret).
bool equal_constant_time(std::string_view a, std::string_view b);

}  // namespace websmtp::auth
