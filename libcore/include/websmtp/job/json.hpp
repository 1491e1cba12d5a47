#pragma once
// JSON mappings of the job model: the public status document (api.md) and the compact form
// the store keeps recipients in.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "websmtp/job/model.hpp"

namespace websmtp::job {

// GET /mail/status/:ref body.
nlohmann::json status_json(const Job& job);

// The store's recipients column: a compact JSON array.
std::string recipients_to_store(const std::vector<Recipient>& rs);
std::vector<Recipient> recipients_from_store(std::string_view text);

}  // namespace websmtp::job
