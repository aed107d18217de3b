#!/usr/bin/env bash
# What the browser test needs besides the Python packages of the "e2e" extra: Debian's chromium.
# Playwright drives it directly (no browser download). Without root or apt the test is skipped.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/e2e-setup.log 2>&1 \
    || echo "could not install chromium (see /tmp/e2e-setup.log); the browser test will be skipped" >&2
else
  echo "chromium is not installed and cannot be installed here; the browser test will be skipped" >&2
fi
exit 0
