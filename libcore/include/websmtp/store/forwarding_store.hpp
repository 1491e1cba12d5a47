#pragma once
// A Store that passes every call to another one: the base of decorators (fault injection in
// tests, timing) that override only what they change.
#include <memory>
#include <utility>

#include "websmtp/store/store.hpp"

namespace websmtp::store {

class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}

  void commit(const Commit& c) override { inner_->commit(c); }
  Counts purge_finished(std::int64_t before_s) override { return inner_->purge_finished(before_s); }
  std::vector<job::Job> claim_due(std::string_view owner, std::int64_t now_ms, std::int64_t lease_ms,
                                  std::size_t limit) override {
    return inner_->claim_due(owner, now_ms, lease_ms, limit);
  }
  std::size_t renew(std::string_view owner, std::int64_t now_ms, std::int64_t lease_ms) override {
    return inner_->renew(owner, now_ms, lease_ms);
  }
  void release(std::string_view owner, std::span<const std::int64_t> seqs) override { inner_->release(owner, seqs); }
  std::optional<job::Job> find(std::string_view ref) override { return inner_->find(ref); }
  std::optional<job::Job> find_seq(std::int64_t seq) override { return inner_->find_seq(seq); }
  std::vector<std::int64_t> due(std::int64_t now_ms, std::size_t limit) override { return inner_->due(now_ms, limit); }
  std::vector<job::Job> load(std::span<const std::int64_t> seqs, std::int64_t now_ms) override {
    return inner_->load(seqs, now_ms);
  }
  std::optional<std::int64_t> next_due_after(std::int64_t now_ms) override { return inner_->next_due_after(now_ms); }
  Counts counts() override { return inner_->counts(); }
  std::function<Counts()> counts_as_of_now() override { return inner_->counts_as_of_now(); }
  std::optional<std::int64_t> oldest_queued_submitted(std::span<const std::int64_t> attempting = {}) override {
    return inner_->oldest_queued_submitted(attempting);
  }
  void insert_key(const ApiKeyRecord& key) override { inner_->insert_key(key); }
  bool revoke_key(std::string_view id, std::int64_t now_s) override { return inner_->revoke_key(id, now_s); }
  void note_keys_used(std::span<const std::pair<std::string, std::int64_t>> used) override {
    inner_->note_keys_used(used);
  }
  std::vector<ApiKeyRecord> list_keys() override { return inner_->list_keys(); }
  std::optional<IdempotencyHit> find_idempotency(std::string_view key) override {
    return inner_->find_idempotency(key);
  }

  std::vector<job::Job> list_jobs(JobFilter f, std::int64_t before_seq, std::size_t limit) override {
    return inner_->list_jobs(f, before_seq, limit);
  }
  std::optional<std::string> find_message(std::int64_t seq) override { return inner_->find_message(seq); }
  std::vector<AttemptRecord> attempts(std::int64_t seq) override { return inner_->attempts(seq); }
  std::vector<SuppressionRecord> list_suppressions() override { return inner_->list_suppressions(); }
  bool add_suppression(const SuppressionRecord& s) override { return inner_->add_suppression(s); }
  bool remove_suppression(std::string_view address) override { return inner_->remove_suppression(address); }
  std::optional<std::string> setting(std::string_view key) override { return inner_->setting(key); }
  void put_setting(std::string_view key, std::string_view value) override { inner_->put_setting(key, value); }
  bool has_webhook_outbox() const override { return inner_->has_webhook_outbox(); }
  std::vector<WebhookEvent> webhook_due(std::int64_t now_ms, std::size_t limit, std::int64_t claim_ms) override {
    return inner_->webhook_due(now_ms, limit, claim_ms);
  }
  std::optional<std::int64_t> webhook_next_at() override { return inner_->webhook_next_at(); }
  void webhook_delivered(std::string_view id) override { inner_->webhook_delivered(id); }
  void webhook_failed(std::string_view id, int attempts, std::int64_t next_at_ms) override {
    inner_->webhook_failed(id, attempts, next_at_ms);
  }

  Store& inner() { return *inner_; }

 private:
  std::unique_ptr<Store> inner_;
};

}  // namespace websmtp::store
