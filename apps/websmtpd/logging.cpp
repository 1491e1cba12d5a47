#include "logging.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <mutex>

namespace websmtp::daemon {

namespace {

class BufferedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    buffer_.append(formatted.data(), formatted.size());
    if (buffer_.size() >= kFlushBytes) flush_();
  }
  void flush_() override {
    std::size_t off = 0;
    while (off < buffer_.size()) {
      ssize_t n = ::write(STDERR_FILENO, buffer_.data() + off, buffer_.size() - off);
      if (n <= 0) break;  // stderr closed or failing: logging must never stop the daemon
      off += static_cast<std::size_t>(n);
    }
    buffer_.clear();
  }

 private:
  static constexpr std::size_t kFlushBytes = 64 * 1024;
  std::string buffer_;
};

}  // namespace

void setup_logging(const std::string& level) {
  auto logger = std::make_shared<spdlog::logger>("websmtpd", std::make_shared<BufferedStderrSink>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  spdlog::flush_every(std::chrono::seconds(1));
}

void flush_logs() { spdlog::default_logger()->flush(); }

}  // namespace websmtp::daemon
