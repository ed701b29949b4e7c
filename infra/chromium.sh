#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the wallboard's browser test
# (tests/e2e_wallboard.rs drives the page headless over WebDriver).
#
#   infra/chromium.sh install   install the Debian packages chromium and chromium-driver
#                               unless /usr/bin/chromium and /usr/bin/chromedriver are there
#   infra/chromium.sh status    print both versions (exit 1 when one is missing)
set -euo pipefail

packages=(chromium chromium-driver)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

versions() {
  echo "$(chromium --version 2>/dev/null | head -n1); $(chromedriver --version 2>/dev/null | awk '{print $1, $2}')"
}

case "${1:-}" in
  install)
    if installed; then
      echo "$(versions) are installed"
      exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "chromium is missing and this machine has no apt-get: install ${packages[*]} by hand" >&2
      exit 1
    fi
    echo "installing ${packages[*]} (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    installed || { echo "install finished but chromium or chromedriver is still missing" >&2; exit 1; }
    echo "installed $(versions)"
    ;;
  status)
    installed || { echo "chromium or chromedriver is not installed (infra/chromium.sh install)" >&2; exit 1; }
    versions
    ;;
  *)
    echo "usage: $0 install|status" >&2
    exit 2
    ;;
esac
