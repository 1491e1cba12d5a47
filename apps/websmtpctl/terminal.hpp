#pragma once
// The terminal for full-screen commands (`websmtpctl top`), in plain ANSI/VT100 sequences that
// every terminal emulator of the last decades understands: no curses library needed.
// FullScreen is RAII: whatever way the command ends (a key, Ctrl-C, SIGTERM, an exception), the
// terminal gets its modes, its cursor and its main screen back.
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace websmtp::ctl {

bool stdout_is_terminal();

struct TerminalSize {
  std::size_t columns = 80;
  std::size_t rows = 24;
};

class FullScreen {
 public:
  // Enters the alternate screen, hides the cursor and (when stdin is a terminal) reads keys
  // one at a time without echo. SIGINT, SIGTERM and SIGHUP become a quit request and SIGWINCH
  // a redraw, instead of killing the process with the terminal left raw.
  FullScreen();
  ~FullScreen();
  FullScreen(const FullScreen&) = delete;
  FullScreen& operator=(const FullScreen&) = delete;

  TerminalSize size() const;

  // Draws `lines` from the top-left corner, clearing what is left of the old frame.
  void draw(const std::vector<std::string>& lines);

  // Waits up to `timeout` for a key; nullopt on timeout, on a signal or when there is no
  // keyboard. Check quit_requested() and take_resized() after it.
  std::optional<char> read_key(std::chrono::milliseconds timeout);

  bool quit_requested() const;
  // True once after each SIGWINCH.
  bool take_resized();

 private:
  bool keys_ = false;
  bool have_saved_modes_ = false;
  struct Saved;
  std::unique_ptr<Saved> saved_;
};

}  // namespace websmtp::ctl
