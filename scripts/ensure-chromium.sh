#!/usr/bin/env bash
# Make sure Debian's chromium and chromium-driver are installed.
#
# The dashboard's browser tests (tests/dashboard/test_browser.py) drive /usr/bin/chromium
# through /usr/bin/chromedriver with selenium, which is told both paths and never
# downloads a browser or a driver; without them those tests fail (they never skip).
# Idempotent: when both are there it exits at once without touching apt.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    echo "ensure-chromium: found $CHROMIUM and $CHROMEDRIVER"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "ensure-chromium: chromium or chromium-driver is not installed and this is not root (no sudo either)." >&2
    echo "ensure-chromium: install the Debian packages 'chromium' and 'chromium-driver' and re-run." >&2
    exit 1
fi

echo "ensure-chromium: installing the 'chromium' and 'chromium-driver' packages"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
# With the recommended packages (fonts among them), as on the machines the tests ran on.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver

for binary in "$CHROMIUM" "$CHROMEDRIVER"; do
    if [[ ! -x "$binary" ]]; then
        echo "ensure-chromium: the packages are installed but $binary is missing" >&2
        exit 1
    fi
done
echo "ensure-chromium: installed $("$CHROMEDRIVER" --version)"
