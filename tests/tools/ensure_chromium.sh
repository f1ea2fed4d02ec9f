#!/usr/bin/env bash
# Test set-up: install Debian's headless Chromium for the report screenshot test when it is missing.
# Never fails: without root or apt, the test that needs Chromium skips and says why.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the report screenshot test (apt-get)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "could not install chromium; the screenshot test will be skipped"
fi
exit 0
