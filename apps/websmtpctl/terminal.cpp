#include "terminal.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>

namespace websmtp::ctl {
namespace {

volatile std::sig_atomic_t g_quit = 0;
volatile std::sig_atomic_t g_resized = 0;

extern "C" void on_quit_signal(int) { g_quit = 1; }
extern "C" void on_resize_signal(int) { g_resized = 1; }

// Every byte goes out with write(2): the frame is one write, and no stdio buffer can hold a
// half-restored terminal back when the process ends.
void write_all(const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the terminal went away; nothing more to show it
    done += static_cast<std::size_t>(n);
  }
}

constexpr const char* kEnter = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";  // alternate screen, hide cursor
constexpr const char* kLeave = "\x1b[0m\x1b[?25h\x1b[?1049l";        // attributes off, cursor, main screen

}  // namespace

struct FullScreen::Saved {
  termios modes{};
  struct sigaction old_int{}, old_term{}, old_hup{}, old_winch{};
};

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

FullScreen::FullScreen() : saved_(std::make_unique<Saved>()) {
  g_quit = 0;
  g_resized = 0;
  struct sigaction quit{};
  quit.sa_handler = on_quit_signal;
  sigemptyset(&quit.sa_mask);
  quit.sa_flags = 0;  // no SA_RESTART: poll() must wake up at once
  ::sigaction(SIGINT, &quit, &saved_->old_int);
  ::sigaction(SIGTERM, &quit, &saved_->old_term);
  ::sigaction(SIGHUP, &quit, &saved_->old_hup);
  struct sigaction resize = quit;
  resize.sa_handler = on_resize_signal;
  ::sigaction(SIGWINCH, &resize, &saved_->old_winch);

  if (::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &saved_->modes) == 0) {
    have_saved_modes_ = true;
    termios raw = saved_->modes;
    // Keys one by one, unechoed; ISIG stays on so that Ctrl-C arrives as SIGINT (handled above).
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    keys_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  write_all(kEnter);
}

FullScreen::~FullScreen() {
  write_all(kLeave);
  if (have_saved_modes_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_->modes);
  ::sigaction(SIGINT, &saved_->old_int, nullptr);
  ::sigaction(SIGTERM, &saved_->old_term, nullptr);
  ::sigaction(SIGHUP, &saved_->old_hup, nullptr);
  ::sigaction(SIGWINCH, &saved_->old_winch, nullptr);
}

TerminalSize FullScreen::size() const {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
    return {ws.ws_col, ws.ws_row};
  }
  return {};
}

void FullScreen::draw(const std::vector<std::string>& lines) {
  std::string frame = "\x1b[H";
  for (std::size_t i = 0; i < lines.size(); ++i) {
    frame += lines[i];
    frame += "\x1b[K";  // the rest of the old line
    if (i + 1 < lines.size()) frame += "\r\n";
  }
  frame += "\x1b[J";  // and every old line below
  write_all(frame);
}

std::optional<char> FullScreen::read_key(std::chrono::milliseconds timeout) {
  if (g_quit) return std::nullopt;
  pollfd fds{};
  fds.fd = STDIN_FILENO;
  fds.events = POLLIN;
  const int n = ::poll(keys_ ? &fds : nullptr, keys_ ? 1 : 0, static_cast<int>(timeout.count()));
  if (n <= 0) return std::nullopt;  // timeout or a signal
  if ((fds.revents & POLLIN) == 0) {
    // The keyboard is gone (hang-up): stop listening to it rather than spin on it.
    keys_ = false;
    return std::nullopt;
  }
  char c = 0;
  const auto got = ::read(STDIN_FILENO, &c, 1);
  if (got <= 0) {
    if (got == 0) keys_ = false;
    return std::nullopt;
  }
  return c;
}

bool FullScreen::quit_requested() const { return g_quit != 0; }

bool FullScreen::take_resized() {
  if (!g_resized) return false;
  g_resized = 0;
  return true;
}

}  // namespace websmtp::ctl
