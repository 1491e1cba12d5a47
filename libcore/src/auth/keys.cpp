#include "websmtp/auth/keys.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>

#include "websmtp/auth/crypto.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/job/validation.hpp"

namespace websmtp::auth {

namespace {

using nlohmann::json;

constexpr std::size_t kPrefixChars = 12;  // "sk_" and 9 characters of the key

tl::unexpected<Error> invalid(std::string code, std::string message, std::string field) {
  return fail(ErrorKind::kInvalid, std::move(code), std::move(message), std::move(field));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool valid_domain(std::string_view d) { return !d.empty() && job::is_valid_address("x@" + std::string(d)); }

// scheme://host[:port], nothing after it (what a browser sends as Origin).
bool valid_origin(std::string_view o) {
  std::string_view rest;
  if (o.rfind("https://", 0) == 0)
    rest = o.substr(8);
  else if (o.rfind("http://", 0) == 0)
    rest = o.substr(7);
  else
    return false;
  if (rest.empty() || rest.size() > 260) return false;
  for (char c : rest)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
      return false;
  return true;
}

Result<std::vector<std::string>> string_list(const json& body, const char* key, bool (*valid)(std::string_view),
                                             const char* what) {
  std::vector<std::string> out;
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_array()) return invalid("invalid_type", std::string(key) + " must be an array of strings", key);
  if (it->size() > 1000) return invalid("invalid_value", std::string(key) + " may hold at most 1000 entries", key);
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    std::string field = std::string(key) + "[" + std::to_string(i) + "]";
    if (!v.is_string()) return invalid("invalid_type", field + " must be a string", field);
    std::string s = lower(v.get<std::string>());
    if (!valid(s)) return invalid("invalid_value", field + " is not " + what, field);
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<std::optional<std::int64_t>> positive(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::int64_t>{};
  if (!it->is_number_integer() || it->get<std::int64_t>() <= 0)
    return invalid("invalid_type", std::string(key) + " must be a positive whole number", key);
  return std::optional<std::int64_t>{it->get<std::int64_t>()};
}

std::shared_ptr<ApiKey> from_record(const store::ApiKeyRecord& r) {
  auto k = std::make_shared<ApiKey>();
  k->id = r.id;
  k->name = r.name;
  k->type = r.type == "publishable" ? KeyType::kPublishable : KeyType::kSecret;
  k->prefix = r.prefix;
  k->created = r.created;
  k->revoked = r.revoked;
  k->last_used.store(r.last_used, std::memory_order_relaxed);
  json policy = json::parse(r.policy_json, nullptr, false);
  if (policy.is_object()) {
    if (auto p = policy_from_json(policy, k->type))
      k->policy = std::move(*p);
    else
      spdlog::error("API key {}: its stored policy is unreadable ({}); the key refuses every request", r.id,
                    p.error().message);
  }
  return k;
}

}  // namespace

Result<KeyPolicy> policy_from_json(const json& body, KeyType type) {
  KeyPolicy p;
  auto address = [](std::string_view s) { return job::is_valid_address(s); };
  auto sender = [](std::string_view s) {
    return s.rfind("*@", 0) == 0 ? valid_domain(s.substr(2)) : job::is_valid_address(s);
  };
  auto senders = string_list(body, "senders", +sender, "an address or *@domain");
  if (!senders) return tl::unexpected(senders.error());
  p.senders = std::move(*senders);
  auto recipients = string_list(body, "recipients", +address, "an address");
  if (!recipients) return tl::unexpected(recipients.error());
  p.recipients = std::move(*recipients);
  auto domains = string_list(body, "recipient_domains", &valid_domain, "a domain");
  if (!domains) return tl::unexpected(domains.error());
  p.recipient_domains = std::move(*domains);
  auto origins = string_list(body, "origins", &valid_origin, "an origin like https://example.org");
  if (!origins) return tl::unexpected(origins.error());
  p.origins = std::move(*origins);
  for (auto [key, out] : {std::pair{"max_recipients", &p.max_recipients}, {"max_message_bytes", &p.max_message_bytes},
                          {"rate_per_minute", &p.rate_per_minute}, {"rate_per_day", &p.rate_per_day}}) {
    auto v = positive(body, key);
    if (!v) return tl::unexpected(v.error());
    *out = *v;
  }
  if (type == KeyType::kPublishable && p.origins.empty())
    return invalid("missing_field", "a publishable key must name its origins (the web pages allowed to use it)",
                   "origins");
  if (type == KeyType::kSecret && !p.origins.empty())
    return invalid("invalid_value", "origins are for publishable keys; a secret key must not be used in a browser",
                   "origins");
  return p;
}

json policy_to_json(const KeyPolicy& p) {
  json j = json::object();
  if (!p.senders.empty()) j["senders"] = p.senders;
  if (!p.recipients.empty()) j["recipients"] = p.recipients;
  if (!p.recipient_domains.empty()) j["recipient_domains"] = p.recipient_domains;
  if (!p.origins.empty()) j["origins"] = p.origins;
  if (p.max_recipients) j["max_recipients"] = *p.max_recipients;
  if (p.max_message_bytes) j["max_message_bytes"] = *p.max_message_bytes;
  if (p.rate_per_minute) j["rate_per_minute"] = *p.rate_per_minute;
  if (p.rate_per_day) j["rate_per_day"] = *p.rate_per_day;
  return j;
}

json key_json(const ApiKey& k) {
  json j = {{"id", k.id},
            {"name", k.name},
            {"type", k.type == KeyType::kPublishable ? "publishable" : "secret"},
            {"prefix", k.prefix},
            {"created", k.created},
            {"last_used", k.last_used.load(std::memory_order_relaxed)},
            {"revoked", k.revoked != 0}};
  if (k.revoked) j["revoked_at"] = k.revoked;
  j.update(policy_to_json(k.policy));
  return j;
}

KeyRegistry::KeyRegistry(store::Store& store, const Clock& clock) : store_(store), clock_(clock) {
  for (const auto& r : store_.list_keys()) {
    auto k = from_record(r);
    flushed_[k->id] = r.last_used;
    if (!k->revoked) by_hash_.emplace(r.hash, k);
    all_.push_back(std::move(k));
  }
  rebuild_origins_locked();
}

KeyRegistry::~KeyRegistry() {
  try {
    flush_last_used();
  } catch (const std::exception& e) {
    spdlog::warn("API keys: last-use times not saved: {}", e.what());
  }
}

bool KeyRegistry::looks_like_key(std::string_view presented) {
  return presented.rfind("sk_", 0) == 0 || presented.rfind("pk_", 0) == 0;
}

Result<KeyRegistry::Created> KeyRegistry::create(const json& body) {
  if (!body.is_object()) return invalid("invalid_json", "the body must be a JSON object", "");
  static const char* kKnown[] = {"name",    "type",           "senders",           "recipients",
                                 "origins", "recipient_domains", "max_recipients", "max_message_bytes",
                                 "rate_per_minute", "rate_per_day"};
  for (auto it = body.begin(); it != body.end(); ++it)
    if (std::find_if(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return it.key() == k; }) ==
        std::end(kKnown))
      return invalid("unknown_field", "a key has no field \"" + it.key() + "\"", it.key());
  auto name = body.find("name");
  if (name == body.end() || !name->is_string() || name->get_ref<const std::string&>().empty() ||
      name->get_ref<const std::string&>().size() > 200)
    return invalid("missing_field", "name is required: a string of 1 to 200 characters", "name");
  for (unsigned char c : name->get_ref<const std::string&>())
    if (c < 0x20 || c == 0x7f) return invalid("invalid_value", "name must not hold control characters", "name");
  KeyType type = KeyType::kSecret;
  if (auto t = body.find("type"); t != body.end() && !t->is_null()) {
    if (*t == "publishable")
      type = KeyType::kPublishable;
    else if (*t != "secret")
      return invalid("invalid_value", "type must be \"secret\" or \"publishable\"", "type");
  }
  auto policy = policy_from_json(body, type);
  if (!policy) return tl::unexpected(policy.error());

  std::string secret = (type == KeyType::kPublishable ? "pk_" : "sk_") + base64url(random_bytes(32));
  auto key = std::make_shared<ApiKey>();
  key->id = "key_" + to_hex(random_bytes(8));
  key->name = name->get<std::string>();
  key->type = type;
  key->prefix = secret.substr(0, kPrefixChars);
  key->policy = std::move(*policy);
  key->created = clock_.now_ms() / 1000;

  store::ApiKeyRecord r;
  r.id = key->id;
  r.name = key->name;
  r.type = type == KeyType::kPublishable ? "publishable" : "secret";
  r.prefix = key->prefix;
  r.hash = sha256_hex(secret);
  r.policy_json = policy_to_json(key->policy).dump();
  r.created = key->created;
  try {
    store_.insert_key(r);
  } catch (const std::exception& e) {
    spdlog::error("API key not created: {}", e.what());
    return fail(ErrorKind::kUnavailable, "store_unavailable", "the key could not be stored; retry shortly");
  }
  {
    std::unique_lock lock(mu_);
    by_hash_.emplace(r.hash, key);
    all_.push_back(key);
    flushed_[key->id] = 0;
    rebuild_origins_locked();
  }
  spdlog::info("API key {} ({}, {}) created", key->id, r.type, key->name);
  return Created{std::move(key), std::move(secret)};
}

std::vector<std::shared_ptr<const ApiKey>> KeyRegistry::list() const {
  std::shared_lock lock(mu_);
  return all_;
}

Result<void> KeyRegistry::revoke(std::string_view id) {
  std::int64_t now_s = std::max<std::int64_t>(1, clock_.now_ms() / 1000);
  std::unique_lock lock(mu_);
  auto it = std::find_if(all_.begin(), all_.end(), [&](const auto& k) { return k->id == id; });
  if (it == all_.end() || (*it)->revoked)
    return fail(ErrorKind::kNotFound, "unknown_key", "no live key with this id", "id");
  try {
    store_.revoke_key(id, now_s);
  } catch (const std::exception& e) {
    spdlog::error("API key {} not revoked: {}", id, e.what());
    return fail(ErrorKind::kUnavailable, "store_unavailable", "the key could not be revoked; retry shortly");
  }
  // Replaced by a revoked copy: holders of the old pointer finish their request, no new one
  // finds it.
  auto copy = std::make_shared<ApiKey>();
  copy->id = (*it)->id;
  copy->name = (*it)->name;
  copy->type = (*it)->type;
  copy->prefix = (*it)->prefix;
  copy->policy = (*it)->policy;
  copy->created = (*it)->created;
  copy->revoked = now_s;
  copy->last_used.store((*it)->last_used.load(std::memory_order_relaxed), std::memory_order_relaxed);
  std::erase_if(by_hash_, [&](const auto& kv) { return kv.second.get() == it->get(); });
  *it = std::move(copy);
  rebuild_origins_locked();
  spdlog::info("API key {} revoked", id);
  return {};
}

std::shared_ptr<const ApiKey> KeyRegistry::find(std::string_view presented) const {
  if (!looks_like_key(presented) || presented.size() > 200) return nullptr;
  std::string hash = sha256_hex(presented);
  std::shared_ptr<const ApiKey> k;
  {
    std::shared_lock lock(mu_);
    auto it = by_hash_.find(hash);
    if (it == by_hash_.end()) return nullptr;
    k = it->second;
  }
  k->last_used.store(clock_.now_ms() / 1000, std::memory_order_relaxed);
  return k;
}

bool KeyRegistry::origin_allowed(std::string_view origin) const {
  std::string o(origin);
  std::transform(o.begin(), o.end(), o.begin(), [](unsigned char c) { return std::tolower(c); });
  std::shared_lock lock(mu_);
  return std::binary_search(origins_.begin(), origins_.end(), o);
}

void KeyRegistry::rebuild_origins_locked() {
  origins_.clear();
  for (const auto& [_, k] : by_hash_)
    if (k->type == KeyType::kPublishable) origins_.insert(origins_.end(), k->policy.origins.begin(), k->policy.origins.end());
  std::sort(origins_.begin(), origins_.end());
  origins_.erase(std::unique(origins_.begin(), origins_.end()), origins_.end());
}

void KeyRegistry::flush_last_used() {
  std::vector<std::pair<std::string, std::int64_t>> changed;
  {
    std::unique_lock lock(mu_);  // flushed_ is written here
    for (const auto& k : all_) {
      std::int64_t t = k->last_used.load(std::memory_order_relaxed);
      auto& written = flushed_[k->id];
      if (t > written) {
        changed.emplace_back(k->id, t);
        written = t;
      }
    }
  }
  if (!changed.empty()) store_.note_keys_used(changed);
}

}  // namespace websmtp::auth
