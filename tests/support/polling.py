"""The one bounded wait of the test suites: poll something observable until it holds."""

import time

POLL_INTERVAL = 0.05


def wait_until(predicate, timeout, interval=POLL_INTERVAL, what="condition"):
    """Poll `predicate` until it returns a truthy value; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)
