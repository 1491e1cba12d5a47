#pragma once
// API keys: secret keys (sk_...) for servers, publishable keys (pk_...) that a web page may
// carry, honoured only from the key's origins. The store keeps a SHA-256 of each key, never the
// key: the full key exists once, in the answer that creates it. Lookups are in memory (a map
// from hash to key), so a request costs no store read and a revocation takes effect at once.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "websmtp/common/clock.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::auth {

enum class KeyType { kSecret, kPublishable };

// Every field optional: absent means no restriction (except that a publishable key must name
// its origins).
struct KeyPolicy {
  std::vector<std::string> senders;            // addresses or *@domain, matched against `from`
  std::vector<std::string> recipients;         // a fixed list: every to/cc/bcc must be one of them
  std::vector<std::string> recipient_domains;  // every recipient's domain must be one of them
  std::vector<std::string> origins;            // scheme://host[:port] (publishable keys)
  std::optional<std::int64_t> max_recipients;
  std::optional<std::int64_t> max_message_bytes;
  std::optional<std::int64_t> rate_per_minute;  // jobs submitted
  std::optional<std::int64_t> rate_per_day;
};

// Reads a policy from a key-creation body (unknown fields refused; `field` names the culprit).
Result<KeyPolicy> policy_from_json(const nlohmann::json& body, KeyType type);
nlohmann::json policy_to_json(const KeyPolicy& p);

struct ApiKey {
  std::string id;
  std::string name;
  KeyType type = KeyType::kSecret;
  std::string prefix;
  KeyPolicy policy;
  std::int64_t created = 0;
  std::int64_t revoked = 0;
  mutable std::atomic<std::int64_t> last_used{0};
};

// GET /admin/keys entry: everything but the key.
nlohmann::json key_json(const ApiKey& k);

class KeyRegistry {
 public:
  // Loads every key from the store.
  KeyRegistry(store::Store& store, const Clock& clock);
  ~KeyRegistry();

  struct Created {
    std::shared_ptr<const ApiKey> key;
    std::string secret;  // the full key, to show once
  };
  // Body: {"name", "type": "secret"|"publishable", policy fields...}.
  Result<Created> create(const nlohmann::json& body);
  std::vector<std::shared_ptr<const ApiKey>> list() const;
  // kNotFound for an unknown or already revoked id.
  Result<void> revoke(std::string_view id);
  // The live key that `presented` is, or nullptr. Notes its use.
  std::shared_ptr<const ApiKey> find(std::string_view presented) const;
  // True when `presented` looks like one of our keys (sk_/pk_ prefix), valid or not.
  static bool looks_like_key(std::string_view presented);
  // Origins of every live publishable key (for CORS).
  bool origin_allowed(std::string_view origin) const;
  // Writes noted last-use times to the store (called now and then, and at exit).
  void flush_last_used();

 private:
  void rebuild_origins_locked();
  store::Store& store_;
  const Clock& clock_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const ApiKey>> by_hash_;  // live keys
  std::vector<std::shared_ptr<const ApiKey>> all_;                           // creation order
  std::vector<std::string> origins_;                                         // sorted, unique
  mutable std::unordered_map<std::string, std::int64_t> flushed_;            // id -> last_used written
};

}  // namespace websmtp::auth
