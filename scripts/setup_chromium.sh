#!/bin/sh
# Headless Chromium + chromedriver for the HTML report test (tests/test_report.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Debian/Ubuntu only;
# needs root (or sudo). The test skips itself when Chromium is absent.
set -e
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
