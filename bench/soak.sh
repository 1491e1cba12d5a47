#!/usr/bin/env bash
# Long soak: tests/integration/test_soak.py at full size. 10,000 jobs (1-3 recipients each)
# are submitted from 4 threads to websmtpd relaying to the scriptable SMTP peer, whose
# behaviour varies per recipient (ok, deferonce, reject, dropdata, hangdata, defer); the
# daemon is SIGKILLed 3 times (twice during submission, once during delivery) and restarted
# on the same DATA_DIR. Then every job answered 202 must be completed and agree with the
# peer's log: nothing lost, every failure has a reason, every duplicate is flagged
# possible_duplicate. Prints one summary line; exit status 0 when the reconciliation passes.
# Takes several minutes (defer* recipients wait for MAX_LIFETIME=SOAK_LIFETIME to expire).
#
#   ./bench/soak.sh                         # default binary: build/release/apps/websmtpd/websmtpd
#   WEBSMTPD=/path/to/websmtpd ./bench/soak.sh
#   SOAK_JOBS=N SOAK_KILLS=K SOAK_LIFETIME=S SOAK_WORKERS=W SOAK_SEED=X ./bench/soak.sh
#   SOAK_PIPELINING=0 ./bench/soak.sh     # a peer without PIPELINING (default: offered)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
export WEBSMTPD=${WEBSMTPD:-$REPO/build/release/apps/websmtpd/websmtpd}
export WEBSMTPCTL=${WEBSMTPCTL:-$(dirname "$(dirname "$WEBSMTPD")")/websmtpctl/websmtpctl}
export SOAK_JOBS=${SOAK_JOBS:-10000}
export SOAK_KILLS=${SOAK_KILLS:-3}
export SOAK_LIFETIME=${SOAK_LIFETIME:-180}   # long enough for the backlog, then defer* expire
export SOAK_WORKERS=${SOAK_WORKERS:-16}
export PYTHONDONTWRITEBYTECODE=1
if [[ -n ${SOAK_SEED:-} ]]; then export SOAK_SEED; fi

if [[ ! -x $WEBSMTPD ]]; then
  echo "soak: no websmtpd at $WEBSMTPD (build it, or set WEBSMTPD)" >&2
  exit 2
fi
cd "$REPO/tests/integration"
exec /usr/bin/python3 -m unittest -v test_soak
