#!/usr/bin/env bash
# What the browser test needs besides the Python packages of the "e2e" extra: Debian's chromium.
# Playwright drives it directly (no browser download). Without root or apt the browser test is skipped,
# except in CI (CI=true) or with WORKBENCH_E2E_REQUIRED=1: there a missing chromium is an error, here
# and in the test, so the browser test cannot silently not run.
set -u
required=0
case "${CI:-}" in true|TRUE|True|1) required=1 ;; esac
case "${WORKBENCH_E2E_REQUIRED:-}" in ""|0) ;; *) required=1 ;; esac
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
if have_chromium; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/e2e-setup.log 2>&1 \
    || echo "could not install chromium (see /tmp/e2e-setup.log)" >&2
else
  echo "chromium is not installed and cannot be installed here (needs root and apt-get)" >&2
fi
if have_chromium; then
  exit 0
fi
if [ "$required" = "1" ]; then
  echo "the browser test is required in CI (CI=true / WORKBENCH_E2E_REQUIRED=1): install chromium" >&2
  exit 1
fi
echo "the browser test will be skipped" >&2
exit 0
