#pragma once
// Durations and sizes as configuration values spell them.
#include <cstdint>
#include <optional>
#include <string_view>

namespace websmtp {

// Parses "300", "300s", "5m", "2h", "5d" into seconds; nullopt when malformed or negative.
std::optional<std::int64_t> parse_duration_s(std::string_view s);
// Parses "10485760", "10MiB", "512KiB", "1GiB", "10MB" into bytes.
std::optional<std::int64_t> parse_size_bytes(std::string_view s);

}  // namespace websmtp
