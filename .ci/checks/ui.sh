#!/usr/bin/env bash
# The status page at /ui in headless Chromium (Debian's `chromium`): loads the page against a
# real node with registrations, checks the DOM, changes registrations and checks the page
# updates live, checks the token/ACL path, and saves screenshots under target/ui-screenshots/.
# The test itself is directory/tests/ui_page.rs; `cargo test` skips its Chromium cases when
# no browser is installed, so this script installs one and makes its absence a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  need_apt chromium || skip_or_fail "chromium cannot be installed: the status page is not tested in a browser"
fi
DIRECTORY_UI_REQUIRE_CHROMIUM=1 cargo test -p directory --test ui_page -- --nocapture
ls target/ui-screenshots/
