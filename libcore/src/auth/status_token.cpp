#include "websmtp/auth/status_token.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "websmtp/auth/crypto.hpp"

namespace websmtp::auth {

namespace {
constexpr std::size_t kSecretBytes = 32;
constexpr std::size_t kTokenBytes = 18;  // 144 bits, 24 base64url characters
}  // namespace

StatusTokens StatusTokens::from_dir(const std::string& data_dir) {
  std::string path = data_dir + "/status-token.key";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // Written under a temporary name and linked into place: a crash never leaves a short key.
    std::string secret = random_bytes(kSecretBytes);
    std::string tmp = path + ".tmp";
    int w = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w < 0) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
    bool ok = ::write(w, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) && ::fsync(w) == 0;
    ::close(w);
    if (!ok || ::link(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      if (err != EEXIST) throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
    }
    ::unlink(tmp.c_str());
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::string secret(kSecretBytes, '\0');
  ssize_t n = ::read(fd, secret.data(), secret.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(kSecretBytes))
    throw std::runtime_error(path + " is damaged (expected " + std::to_string(kSecretBytes) +
                             " bytes); remove it to make a new one (earlier status tokens stop working)");
  return StatusTokens(std::move(secret));
}

std::string StatusTokens::token(std::string_view ref) const {
  return base64url(hmac_sha256(secret_, ref).substr(0, kTokenBytes));
}

bool StatusTokens::valid(std::string_view ref, std::string_view token) const {
  return equal_constant_time(this->token(ref), token);
}

}  // namespace websmtp::auth
