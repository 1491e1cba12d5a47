#include "websmtp/common/thread.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace websmtp {

void name_this_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

void set_this_thread_nice(int nice) {
  if (nice > 0) (void)setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), nice);
}

}  // namespace websmtp
