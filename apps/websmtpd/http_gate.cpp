// The body-size gate. Compiled with -fno-access-control (see CMakeLists.txt): it forwards to
// Pistache's private Http::Handler::onInput/onConnection after its own checks.
//
// Pistache 0.0.5 answers an over-long request with 413 and then parses the rest of the body
// as new requests. This gate follows the request framing itself (header block, then
// Content-Length bytes), answers 413 as soon as the declared length is over MAX_BODY_BYTES
// (before the body is even sent), half-closes the connection and drops what follows.
#include <sys/socket.h>

#include <pistache/peer.h>

#include <algorithm>
#include <cstring>

#include "http_api.hpp"

namespace websmtp::daemon {

namespace {

constexpr const char* kGateData = "__websmtp_gate";
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::int64_t kMaxDiscardBytes = 1 << 20;

struct GateState {
  enum class Phase { kHead, kBody, kDiscard } phase = Phase::kHead;
  std::string head;
  std::int64_t body_left = 0;
  std::int64_t discarded = 0;
};

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(line[i])) != std::tolower(static_cast<unsigned char>(name[i])))
      return false;
  return true;
}

// Content-Length of a header block (-1: none), or -2 when the body is chunked.
std::int64_t body_length(std::string_view head) {
  std::int64_t length = -1;
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    std::size_t end = head.find("\r\n", pos + 2);
    std::string_view line =
        head.substr(pos + 2, end == std::string_view::npos ? std::string_view::npos : end - pos - 2);
    if (iequals_prefix(line, "content-length:")) {
      std::int64_t v = 0;
      bool digits = false;
      for (char c : line.substr(15)) {
        if (c >= '0' && c <= '9') {
          digits = true;
          v = v > (INT64_MAX / 10 - 10) ? INT64_MAX / 2 : v * 10 + (c - '0');
        } else if (c != ' ' && c != '\t') {
          break;
        }
      }
      if (digits) length = v;
    } else if (iequals_prefix(line, "transfer-encoding:")) {
      std::string value(line.substr(18));
      std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
      if (value.find("chunked") != std::string::npos) return -2;
    }
    pos = end;
  }
  return length;
}

void reject(int fd, int status, const char* reason, const ApiError& err) {
  std::string body = error_body(err);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                    "\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  // Small enough for the socket buffer; the connection is being closed either way.
  (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
}

}  // namespace

void GatedHandler::onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
  peer->putData(kGateData, std::make_shared<GateState>());
  Pistache::Http::Handler::onConnection(peer);
}

void GatedHandler::onInput(const char* buffer, size_t len, const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
  auto st = std::static_pointer_cast<GateState>(peer->getData(kGateData));
  using Phase = GateState::Phase;
  if (st->phase == Phase::kDiscard) {
    st->discarded += static_cast<std::int64_t>(len);
    if (st->discarded > kMaxDiscardBytes) ::shutdown(peer->fd(), SHUT_RDWR);
    return;
  }
  // Pistache 0.0.5 parses one request per read and drops whatever follows it in the same
  // buffer, so complete requests are handed over one at a time.
  std::size_t pos = 0;
  std::size_t forwarded = 0;
  auto forward_upto = [&](std::size_t upto) {
    if (upto <= forwarded) return;
    t_pipelined_follow = upto < len;  // more requests wait behind this one
    Pistache::Http::Handler::onInput(buffer + forwarded, upto - forwarded, peer);
    t_pipelined_follow = false;
    forwarded = upto;
  };
  auto refuse = [&](int status, const char* reason, ApiError err) {
    st->phase = Phase::kDiscard;
    reject(peer->fd(), status, reason, err);
  };
  while (pos < len) {
    if (st->phase == Phase::kBody) {
      auto take = static_cast<std::size_t>(std::min<std::int64_t>(st->body_left, static_cast<std::int64_t>(len - pos)));
      st->body_left -= static_cast<std::int64_t>(take);
      pos += take;
      if (st->body_left == 0) {
        st->phase = Phase::kHead;
        forward_upto(pos);
      }
      continue;
    }
    std::size_t old = st->head.size();
    std::size_t chunk = std::min(len - pos, kMaxHeaderBytes + 4 - old);
    st->head.append(buffer + pos, chunk);
    std::size_t end = st->head.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
    if (end == std::string::npos) {
      pos += chunk;
      if (st->head.size() > kMaxHeaderBytes)
        return refuse(431, "Request Header Fields Too Large",
                      ApiError{431, "headers_too_large", "the request headers are larger than 64 KiB", ""});
      continue;
    }
    std::size_t consumed = end + 4 - old;
    std::int64_t length = body_length(std::string_view(st->head).substr(0, end + 2));
    st->head.clear();
    pos += consumed;
    if (length == -2)
      return refuse(411, "Length Required",
                    ApiError{411, "length_required",
                             "send the body with a Content-Length (chunked bodies are not accepted)", ""});
    if (length > ctx_->max_body_bytes)
      return refuse(413, "Payload Too Large",
                    ApiError{413, "body_too_large",
                             "the request body (" + std::to_string(length) + " bytes) is larger than MAX_BODY_BYTES (" +
                                 std::to_string(ctx_->max_body_bytes) + " bytes)",
                             ""});
    if (length > 0) {
      st->body_left = length;
      st->phase = Phase::kBody;
    } else {
      forward_upto(pos);
    }
  }
  forward_upto(len);  // a request still arriving: Pistache buffers it
}

}  // namespace websmtp::daemon
