#pragma once
// Non-cryptographic hashing: request fingerprints for Idempotency-Key, retry jitter seeds.
#include <cstdint>
#include <string>
#include <string_view>

namespace websmtp {

// 64-bit FNV-1a.
std::uint64_t fnv1a64(std::string_view s);
// 16 lower-case hex digits.
std::string hex64(std::uint64_t v);

}  // namespace websmtp
