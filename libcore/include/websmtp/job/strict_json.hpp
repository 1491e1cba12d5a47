#pragma once
// JSON parsing for request bodies: nlohmann's parser, stricter. One pass builds the document
// and refuses what its default parser lets through: nesting deeper than a limit (work and
// memory a client could make every later step pay for) and an object naming a key twice
// (nlohmann keeps the last one silently, so a gate checking the first value and a later step
// using the second would disagree). Invalid UTF-8 stays refused, as by nlohmann's lexer.
#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "websmtp/common/error.hpp"

namespace websmtp::job {

// api.md: "JSON nested deeper than 32 levels gets 400". The outermost object or array is
// level 1; scalars do not count.
inline constexpr std::size_t kMaxJsonDepth = 32;

// Any JSON value. Errors (all ErrorKind::kInvalid):
//   invalid_json   not JSON (syntax, invalid UTF-8, trailing bytes)
//   json_too_deep  more than `max_depth` nested arrays/objects
//   duplicate_key  an object names a key twice; `field` is the duplicate's path as the rest
//                  of validation names fields: `to`, `headers.X-A`, `jobs[2].from`
Result<nlohmann::json> parse_strict_json(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

}  // namespace websmtp::job
