#!/usr/bin/env bash
# Several websmtpd nodes on one throwaway PostgreSQL 15 (1, 2 and 3 nodes) and one node on SQLite,
# side by side in one run: submit rate and end-to-end delivery rate into Postfix smtp-sink, CPU
# of the nodes and of PostgreSQL, load. See bench/cluster.py and bench/README.md
# ("Several nodes on PostgreSQL").
#
#   ./bench/cluster.sh                          # 5,000 jobs per measurement, 2 rounds (ABBA)
#   ./bench/cluster.sh --jobs 500 --rounds 1    # smoke test
#   WEBSMTPD=/path/to/websmtpd                  # binary (default: build/release/apps/websmtpd/websmtpd)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)
exec "$PY" "$HERE/cluster.py" "$@"
