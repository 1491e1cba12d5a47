#pragma once
// Instruments for /metrics: counters and fixed-bucket histograms made of relaxed atomics, so
// that recording one costs an uncontended add on the hot paths (submit, commit, delivery), and
// a writer of the Prometheus text format (0.0.4). Also the few figures recorded below the
// service layer (SMTP sessions, store commits), which the store and smtp code reach here
// rather than through service:: (they never include the layer above them).
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace websmtp::metrics {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Buckets by upper bound (`le`), held per bucket and summed when read: the count is the sum of
// the buckets, so a scrape always has +Inf == _count however observations interleave with it.
template <std::size_t N>
class Histogram {
 public:
  explicit constexpr Histogram(const std::array<double, N>& bounds) : bounds_(bounds) {}
  void observe(double v) {
    std::size_t i = 0;
    while (i < N && v > bounds_[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }
  std::span<const double> bounds() const { return bounds_; }
  // Per-bucket (not cumulative) counts, the last one for values above every bound.
  std::array<std::uint64_t, N + 1> counts() const {
    std::array<std::uint64_t, N + 1> out{};
    for (std::size_t i = 0; i <= N; ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
    return out;
  }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::array<double, N>& bounds_;
  std::array<std::atomic<std::uint64_t>, N + 1> buckets_{};
  std::atomic<double> sum_{0};
};

// Latencies in seconds, from a millisecond to a day (mail may wait hours for a retry).
inline constexpr std::array<double, 16> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                                          0.5,   1,      2.5,   10,   60,    600,  3600, 86400};
using LatencyHistogram = Histogram<kLatencyBounds.size()>;

// Records the time from construction to destruction.
class ScopedTimer {
 public:
  explicit ScopedTimer(LatencyHistogram& h) : h_(h), start_(std::chrono::steady_clock::now()) {}
  ~ScopedTimer() { h_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count()); }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  LatencyHistogram& h_;
  std::chrono::steady_clock::time_point start_;
};

// Figures recorded below the service layer, process-wide.
struct Process {
  Counter smtp_sessions_opened;  // a connection set up (greeting, EHLO, TLS, AUTH) for a transaction
  Counter smtp_sessions_reused;  // a transaction on a session kept from an earlier one
  LatencyHistogram store_commit_seconds{kLatencyBounds};
};
Process& process();

// One-line hooks for the recording points.
inline void smtp_session_used(bool reused) {
  (reused ? process().smtp_sessions_reused : process().smtp_sessions_opened).inc();
}

// The Prometheus text exposition format, version 0.0.4.
class TextWriter {
 public:
  // # HELP and # TYPE lines; `type` is counter, gauge or histogram.
  void family(std::string_view name, std::string_view type, std::string_view help);
  // name{labels} value; `labels` is the inside of the braces (already escaped), or empty.
  void sample(std::string_view name, std::string_view labels, double value);
  void sample(std::string_view name, std::string_view labels, std::uint64_t value);
  void sample(std::string_view name, std::string_view labels, std::int64_t value);
  // _bucket (cumulative, with le="+Inf"), _sum and _count of one histogram's series.
  template <std::size_t N>
  void histogram(std::string_view name, std::string_view labels, const Histogram<N>& h) {
    auto counts = h.counts();
    histogram_series(name, labels, h.bounds(), counts, h.sum());
  }
  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void histogram_series(std::string_view name, std::string_view labels, std::span<const double> bounds,
                        std::span<const std::uint64_t> counts, double sum);
  void name_labels(std::string_view name, std::string_view labels);
  std::string out_;
};

// A label value as the text format writes it (backslash, double quote and newline escaped).
std::string escape_label_value(std::string_view v);

}  // namespace websmtp::metrics
