#pragma once
// The version shown by --version and in User-Agent; CMake passes the project's version.
#ifndef WEBSMTPCTL_VERSION
#define WEBSMTPCTL_VERSION "dev"
#endif

namespace websmtp::ctl {
inline constexpr const char* kWebsmtpctlVersion = WEBSMTPCTL_VERSION;
}  // namespace websmtp::ctl
