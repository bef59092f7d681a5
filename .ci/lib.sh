# Shared by .ci/run and the scripts in .ci/checks/: install what a check needs, or say why not.
#
#   need_apt PACKAGE... : installs Debian packages that are missing (as root, non-interactive);
#                         returns 1 with a message when they cannot be installed.
#   need_venv NAME PKG...: a virtualenv under target/ci-venv/NAME with the PyPI packages;
#                         prints its bin directory; returns 1 when it cannot be made.
#   skip_or_fail MESSAGE: a check that cannot run. Under CI=true on a machine where the tool
#                         should be installable (apt-get present) it fails; elsewhere it skips.

need_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get to install ${missing[*]}" >&2; return 1; }
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if [ ! -f /tmp/.ci-apt-updated ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >/dev/null 2>&1 || true
    touch /tmp/.ci-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { echo "apt-get could not install ${missing[*]}" >&2; return 1; }
}

need_venv() {
  local name=$1; shift
  local dir="${CARGO_TARGET_DIR:-target}/ci-venv/$name"
  if [ ! -x "$dir/bin/python" ]; then
    need_apt python3-venv python3-pip >/dev/null || true
    python3 -m venv "$dir" >/dev/null 2>&1 || { echo "python3 -m venv failed" >&2; return 1; }
  fi
  "$dir/bin/python" -m pip install -q "$@" >/dev/null 2>&1 || { echo "pip could not install $*" >&2; return 1; }
  echo "$dir/bin"
}

skip_or_fail() {
  if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1; then
    echo "FAIL - $1" >&2
    exit 1
  fi
  echo "SKIPPED - $1"
  exit 0
}
