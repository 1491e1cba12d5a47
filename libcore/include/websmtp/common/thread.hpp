#pragma once
// Per-thread settings for the daemon's long-lived threads.

namespace websmtp {

// Names the calling thread (shown by top -H, gdb, perf); at most 15 characters.
void name_this_thread(const char* name);

// Lowers the calling thread's CPU priority to `nice` (Linux: nice is per thread). Best effort.
void set_this_thread_nice(int nice);

}  // namespace websmtp
