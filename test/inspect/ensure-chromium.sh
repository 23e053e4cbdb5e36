#!/usr/bin/env bash
# Installs Debian's chromium for the visualizer's end-to-end test (test/inspect/visualizer-e2e.test.ts),
# which drives it with playwright-core. Never `npx playwright install`: it downloads a browser build,
# which cannot be fetched here. Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
