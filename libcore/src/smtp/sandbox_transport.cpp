#include <cstdio>
#include <filesystem>
#include <fstream>

#include "websmtp/smtp/transport.hpp"

namespace websmtp::smtp {

namespace {

class SandboxTransport final : public Transport {
 public:
  explicit SandboxTransport(std::string dir) : dir_(std::move(dir)) { std::filesystem::create_directories(dir_); }

  std::vector<Reply> deliver(const Envelope& env, std::string_view message) override {
    std::string name = std::string(env.ref) + ".eml";
    std::string path = dir_ + "/" + name;
    std::string tmp = path + ".tmp";
    Reply reply;
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(message.data(), static_cast<std::streamsize>(message.size()));
      out.flush();
      if (!out) {
        reply.code = 451;
        reply.text = "4.3.0 sandbox: cannot write " + path;
      }
    }
    if (reply.code == 0) {
      std::error_code ec;
      std::filesystem::rename(tmp, path, ec);  // readers never see a half-written file
      if (ec) {
        reply.code = 451;
        reply.text = "4.3.0 sandbox: cannot write " + path + ": " + ec.message();
      } else {
        reply.code = 250;
        reply.text = "2.0.0 sandbox: not sent, written to sandbox/" + name;
      }
    }
    return std::vector<Reply>(env.recipients.size(), reply);
  }

 private:
  std::string dir_;
};

}  // namespace

std::unique_ptr<Transport> make_sandbox(std::string dir) { return std::make_unique<SandboxTransport>(std::move(dir)); }

}  // namespace websmtp::smtp
