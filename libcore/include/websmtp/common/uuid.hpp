#pragma once
// Job refs and other identifiers.
#include <cstdint>
#include <string>
#include <string_view>

namespace websmtp {

// A random (version 4) UUID in canonical lower-case form.
std::string new_uuid();
// A time-ordered (version 7, RFC 9562) UUID: 48 bits of Unix milliseconds, then 74 random
// bits. Job refs use it so the store's ref index grows at its right edge instead of touching
// a random page per insert (which multiplied the bytes written per commit).
std::string new_uuid_v7(std::int64_t unix_ms);
// True for the canonical 8-4-4-4-12 hex form (either case).
bool is_uuid(std::string_view s);

}  // namespace websmtp
