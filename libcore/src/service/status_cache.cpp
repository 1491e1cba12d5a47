#include "websmtp/service/status_cache.hpp"

namespace websmtp::service {

std::optional<job::Job> StatusCache::get(const std::string& ref, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto it = map_.find(ref);
  if (it == map_.end()) return std::nullopt;
  if (it->second.expires_ms <= now_ms) {
    lru_.erase(it->second.lru);
    map_.erase(it);
    return std::nullopt;
  }
  touch(it->second);
  return it->second.job;
}

std::uint64_t StatusCache::generation(const std::string& ref) const {
  std::lock_guard lock(mu_);
  return generations_[stripe(ref)];
}

void StatusCache::put(const job::Job& job, std::int64_t expires_ms, std::uint64_t generation) {
  if (capacity_ == 0) return;
  std::lock_guard lock(mu_);
  if (generations_[stripe(job.ref)] != generation) return;
  auto it = map_.find(job.ref);
  if (it != map_.end()) {
    it->second.job = job;
    it->second.job.message.clear();
    it->second.expires_ms = expires_ms;
    touch(it->second);
    return;
  }
  if (map_.size() >= capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(job.ref);
  Entry e{job, expires_ms, lru_.begin()};
  e.job.message.clear();
  e.job.message.shrink_to_fit();
  map_.emplace(job.ref, std::move(e));
}

void StatusCache::update_if_present(const std::string& ref, const std::vector<job::Recipient>& recipients, bool started,
                                    std::int64_t completed, std::int64_t expires_ms) {
  std::lock_guard lock(mu_);
  ++generations_[stripe(ref)];
  auto it = map_.find(ref);
  if (it == map_.end()) return;
  it->second.job.recipients = recipients;
  it->second.job.started = started;
  it->second.job.completed = completed;
  it->second.expires_ms = expires_ms;
}

void StatusCache::invalidate(const std::string& ref) {
  std::lock_guard lock(mu_);
  ++generations_[stripe(ref)];
  auto it = map_.find(ref);
  if (it == map_.end()) return;
  lru_.erase(it->second.lru);
  map_.erase(it);
}

void StatusCache::invalidate_all() {
  std::lock_guard lock(mu_);
  for (auto& g : generations_) ++g;
  map_.clear();
  lru_.clear();
}

std::size_t StatusCache::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

void StatusCache::touch(Entry& e) { lru_.splice(lru_.begin(), lru_, e.lru); }

}  // namespace websmtp::service
