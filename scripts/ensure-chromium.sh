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

# shellcheck source=lib/as-root.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/as-root.sh"
as_root_or_explain ensure-chromium "chromium or chromium-driver" "packages 'chromium' and 'chromium-driver'"

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
