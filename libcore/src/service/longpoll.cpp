#include "websmtp/service/longpoll.hpp"

#include <algorithm>

#include "websmtp/common/thread.hpp"

namespace websmtp::service {

LongPollRegistry::LongPollRegistry(StatusService& status) : status_(status) {}

LongPollRegistry::~LongPollRegistry() { stop(); }

void LongPollRegistry::set_max_waiters(std::size_t max) {
  std::lock_guard lock(mu_);
  max_waiters_ = max;
}

std::size_t LongPollRegistry::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

void LongPollRegistry::start() {
  thread_ = std::thread([this] {
    name_this_thread("ws-longpoll");
    deadline_loop();
  });
}

void LongPollRegistry::stop() {
  release_all();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

bool LongPollRegistry::watching(const std::string& ref) const {
  std::lock_guard lock(mu_);
  return waiters_.contains(ref);
}

std::uint64_t LongPollRegistry::watch(const Caller& caller, std::string_view ref, std::string since,
                                      std::chrono::milliseconds wait, Done done) {
  auto j = status_.lookup(caller, ref);
  if (!j) {
    done(tl::unexpected(std::move(j.error())));
    return 0;
  }
  std::string word = job::job_status(*j);
  if (since.empty()) since = word;
  std::uint64_t id = 0;
  if (word != since || word == "completed" || wait.count() <= 0) {
    done(status_text(*j));
    return 0;
  }
  {
    std::lock_guard lock(mu_);
    // Stopping, or over MAX_LONGPOLLS: answered below, now, like a zero wait.
    if (!stopping_ && waiting_ < max_waiters_) {
      auto deadline = std::chrono::steady_clock::now() + wait;
      id = ++next_id_;
      waiters_[j->ref].push_back(Waiter{id, since, caller, std::move(done)});
      ++waiting_;
      deadlines_.emplace(deadline, std::make_pair(j->ref, id));
      cv_.notify_one();
    }
  }
  if (id == 0) {
    done(status_text(*j));
    return 0;
  }
  // The status may have moved on between the read above and the registration.
  auto again = status_.lookup(caller, ref);
  if (again && job::job_status(*again) != since) {
    std::string body = status_text(*again);
    for (auto& w : take_changed(again->ref, job::job_status(*again))) w.done(body);
  }
  return id;
}

std::vector<LongPollRegistry::Waiter> LongPollRegistry::take_changed(const std::string& ref, std::string_view word) {
  std::vector<Waiter> out;
  std::lock_guard lock(mu_);
  auto it = waiters_.find(ref);
  if (it == waiters_.end()) return out;
  auto& list = it->second;
  for (auto w = list.begin(); w != list.end();) {
    if (w->since != word) {
      out.push_back(std::move(*w));
      w = list.erase(w);
      --waiting_;
    } else {
      ++w;
    }
  }
  if (list.empty()) waiters_.erase(it);
  return out;
}

std::optional<LongPollRegistry::Waiter> LongPollRegistry::take_locked(const std::string& ref, std::uint64_t id) {
  auto it = waiters_.find(ref);
  if (it == waiters_.end()) return std::nullopt;
  auto& list = it->second;
  std::optional<Waiter> out;
  for (auto w = list.begin(); w != list.end(); ++w) {
    if (w->id != id) continue;
    out = std::move(*w);
    list.erase(w);
    --waiting_;
    break;
  }
  if (list.empty()) waiters_.erase(it);
  return out;
}

void LongPollRegistry::release(const std::string& ref_in, std::uint64_t id) {
  std::string ref = ref_in;
  std::transform(ref.begin(), ref.end(), ref.begin(), [](unsigned char c) { return std::tolower(c); });
  std::optional<Waiter> fire;
  {
    std::lock_guard lock(mu_);
    fire = take_locked(ref, id);
  }
  // Its deadline entry finds nothing later and is dropped.
  if (fire) fire->done(status_.status(fire->caller, ref));
}

void LongPollRegistry::release_all() {
  std::unordered_map<std::string, std::vector<Waiter>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(waiters_);
    deadlines_.clear();
    waiting_ = 0;
  }
  for (auto& [ref, list] : all)
    for (auto& w : list) w.done(status_.status(w.caller, ref));
}

void LongPollRegistry::status_changed(const std::string& ref, std::string_view word,
                                      const std::function<std::string()>& body) {
  auto fire = take_changed(ref, word);
  if (fire.empty()) return;
  std::string text = body();
  for (auto& w : fire) w.done(text);
}

void LongPollRegistry::deadline_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (deadlines_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = deadlines_.begin()->first;
    if (std::chrono::steady_clock::now() < first) {
      cv_.wait_until(lock, first);
      continue;
    }
    std::vector<std::pair<std::string, Waiter>> fire;
    auto now = std::chrono::steady_clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto [ref, id] = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      if (auto w = take_locked(ref, id)) fire.emplace_back(ref, std::move(*w));
    }
    lock.unlock();
    // A purged ref answers 404, as a plain read would.
    for (auto& [ref, w] : fire) w.done(status_.status(w.caller, ref));
    lock.lock();
  }
}

}  // namespace websmtp::service
