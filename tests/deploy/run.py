#!/usr/bin/env python3
"""Runs the deployment tests (tests/deploy/test_*.py) and prints one closing
line, "test-deploy: N passed, N failed[, N skipped]".

Run by `make test-deploy`, with the virtualenv it makes (helm-sdkpy,
kubernetes-validate). The tests start processes and make temporary
directories; each test class stops and removes what it made, also when it
fails or when this runner gets SIGTERM or SIGINT.
"""

import os
import signal
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    # No __pycache__ in the source tree.
    sys.dont_write_bytecode = True
    # SIGTERM (make being stopped, a CI timeout) unwinds like Ctrl-C, so the
    # tests' cleanups still stop their processes and remove their files.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if len(argv) > 1:  # run.py test_chart [test_prometheus ...]: a subset
        suite = loader.loadTestsFromNames(argv[1:])
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # An error in a class or module set-up counts as a failure but not as a
    # test run.
    passed = max(result.testsRun - failed - skipped, 0)
    line = "test-deploy: %d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
