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
#include "websmtp/common/text.hpp"

namespace websmtp::daemon {

namespace {

constexpr const char* kGateData = "__websmtp_gate";
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::int64_t kMaxDiscardBytes = 1 << 20;

struct GateState {
  enum class Phase { kHead, kBody, kDiscard } phase = Phase::kHead;
  std::shared_ptr<PendingAnswers> pending = std::make_shared<PendingAnswers>();
  std::string head;
  std::int64_t body_left = 0;
  std::int64_t discarded = 0;
};

constexpr std::int64_t kNoLength = -1, kChunked = -2, kBadLength = -3;

// The body length a header block declares: kNoLength, kChunked, kBadLength (a Content-Length
// that is not plain digits, or several that differ: framing we would read differently from
// Pistache, so the request is refused), or the length.
std::int64_t body_length(std::string_view head) {
  std::int64_t length = kNoLength;
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    std::size_t end = head.find("\r\n", pos + 2);
    std::string_view line =
        head.substr(pos + 2, end == std::string_view::npos ? std::string_view::npos : end - pos - 2);
    if (istarts_with(line, "content-length:")) {
      std::string_view v = line.substr(15);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      if (v.empty() || v.size() > 15 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return kBadLength;
      std::int64_t n = std::stoll(std::string(v));
      if (length != kNoLength && length != n) return kBadLength;
      length = n;
    } else if (istarts_with(line, "transfer-encoding:")) {
      return kChunked;  // any transfer coding; we frame by Content-Length only
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

// Blocks (this reactor thread) until the answers owed on the connection are out. Normally
// there are none: a client sends its next request after reading the previous answer. A
// pending long-poll is answered at once instead of being waited for.
void wait_for_answers(PendingAnswers& p) {
  std::function<void()> hurry;
  {
    std::lock_guard lock(p.mu);
    if (p.count == 0) return;
    hurry = p.hurry;
  }
  if (hurry) hurry();
  std::unique_lock lock(p.mu);
  p.cv.wait_for(lock, std::chrono::seconds(30), [&] { return p.count == 0; });
}

}  // namespace

std::shared_ptr<PendingAnswers> pending_answers(const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
  auto data = peer ? peer->tryGetData(kGateData) : nullptr;
  return data ? std::static_pointer_cast<GateState>(data)->pending : std::make_shared<PendingAnswers>();
}

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
  // buffer, so complete requests are handed over one at a time, each only once the answers
  // owed for the earlier ones are out (HTTP/1.1 answers in request order).
  std::size_t pos = 0;
  std::size_t forwarded = 0;
  auto forward_upto = [&](std::size_t upto) {
    if (upto <= forwarded) return;
    wait_for_answers(*st->pending);
    Pistache::Http::Handler::onInput(buffer + forwarded, upto - forwarded, peer);
    forwarded = upto;
  };
  auto refuse = [&](int status, const char* reason, ApiError err) {
    wait_for_answers(*st->pending);  // earlier answers first, then this one and the close
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
    if (length == kBadLength)
      return refuse(400, "Bad Request",
                    ApiError{400, "bad_content_length", "Content-Length must be one decimal number", "Content-Length"});
    if (length == kChunked)
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
