"""PostgresStore's unit tests (tests/unit/store/postgres_store_test.cpp) against a real
PostgreSQL 15 started here (tests/support/postgres.py): without a database they skip."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import postgres  # noqa: E402

UNIT_TESTS = os.environ.get("UNIT_TESTS")


class PostgresStoreUnitTests(unittest.TestCase):

    def test_store_unit_tests_pass_against_postgresql_15(self):
        if not UNIT_TESTS or not os.access(UNIT_TESTS, os.X_OK):
            raise unittest.SkipTest("UNIT_TESTS is not set to the unit test binary")
        if not postgres.available():
            raise unittest.SkipTest("PostgreSQL 15 is not installed (apt-get install postgresql)")
        with postgres.PostgresServer() as pg:
            env = dict(os.environ, WEBSMTP_TEST_DATABASE_URL=pg.url)
            r = subprocess.run([UNIT_TESTS, "--gtest_filter=PostgresStoreTest.*", "--gtest_brief=0"], env=env,
                               capture_output=True, text=True, timeout=240)
            sys.stderr.write(r.stdout[-6000:] + r.stderr[-3000:])
            self.assertEqual(r.returncode, 0, "PostgresStore unit tests failed")
            self.assertNotIn("SKIPPED", r.stdout)
            self.assertIn("[  PASSED  ]", r.stdout)


if __name__ == "__main__":
    unittest.main()
