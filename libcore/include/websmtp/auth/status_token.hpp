#pragma once
// Status tokens: with authentication on, a job's status is private to its submitter, or to
// whoever holds the job's status_token (a capability the submitter may pass on, e.g. to the
// browser that follows the job). A token is an HMAC of the ref under a secret kept in DATA_DIR,
// so nothing per job is stored and tokens survive restarts.
#include <string>
#include <string_view>

namespace websmtp::auth {

class StatusTokens {
 public:
  explicit StatusTokens(std::string secret) : secret_(std::move(secret)) {}
  // Reads DATA_DIR/status-token.key, creating it (32 random bytes, mode 0600) if absent.
  static StatusTokens from_dir(const std::string& data_dir);

  std::string token(std::string_view ref) const;
  bool valid(std::string_view ref, std::string_view token) const;

 private:
  std::string secret_;
};

}  // namespace websmtp::auth
