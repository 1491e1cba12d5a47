#!/usr/bin/env bash
# Direct delivery (DELIVERY=mx, 8 domains over 4 smtp-sink MX hosts) against relay delivery
# (one smtp-sink), side by side in one run: drain rate, sessions opened vs reused, load.
# See bench/mx.py and bench/README.md ("Direct MX delivery").
#
#   ./bench/mx.sh                       # 20,000 jobs per mode, 2 rounds (order alternates)
#   ./bench/mx.sh --jobs 2000 --rounds 1  # smoke test
#   WEBSMTPD=/path/to/websmtpd          # binary (default: build/release/apps/websmtpd/websmtpd)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)
exec "$PY" "$HERE/mx.py" "$@"
