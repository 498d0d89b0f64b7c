# Shared by scripts/*: cache locations and installers for the tools Ferry's tests need.
# Tool installs live in a cache outside the repository, keyed by version, so a warm
# machine (and CI's fresh clone on it) skips them.

FERRY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export FERRY_CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
# Cargo's target dir is cached outside the clone so a fresh clone reuses the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$FERRY_CACHE/target}"
# Incremental caches in a long-lived target dir grow without bound (tens of GiB), and the
# RocketMQ broker refuses to start on a fullish disk (services/testkit/PEER-NOTES.md §7).
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
BUF_VERSION="${BUF_VERSION:-1.75.0}"
BUF_BIN="$FERRY_CACHE/tools/buf-$BUF_VERSION/node_modules/.bin/buf"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_updated=""
apt_install() {
  # apt_install BINARY PACKAGE: installs PACKAGE unless BINARY is on PATH.
  local bin="$1" pkg="$2"
  command -v "$bin" >/dev/null 2>&1 && return 0
  log "installing $pkg (for $bin)"
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    die "$bin is missing and this user cannot install $pkg; run: apt-get install $pkg"
  fi
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  if [[ -z "$apt_updated" ]]; then $sudo apt-get update -qq >&2 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >&2 \
    || die "could not install Debian package $pkg (needed for $bin)"
  command -v "$bin" >/dev/null 2>&1 || die "$pkg installed but $bin is still not on PATH"
}

ensure_buf() {
  if [[ ! -x "$BUF_BIN" ]]; then
    command -v npm >/dev/null || die "npm is needed to install buf (@bufbuild/buf)"
    log "installing buf $BUF_VERSION (npm @bufbuild/buf)"
    mkdir -p "$(dirname "$(dirname "$(dirname "$BUF_BIN")")")"
    (cd "$FERRY_CACHE/tools/buf-$BUF_VERSION" \
      && npm install --silent --no-audit --no-fund "@bufbuild/buf@$BUF_VERSION" >&2) \
      || die "could not install @bufbuild/buf@$BUF_VERSION from npm"
  fi
  "$BUF_BIN" --version >/dev/null || die "buf at $BUF_BIN does not run"
}

ensure_base_tools() {
  apt_install etcd etcd-server
  apt_install protoc protobuf-compiler
  ensure_buf
}

# The RocketMQ broker refuses writes once the disk holding its store is ~90% used, counting
# blocks reserved for root as used (services/testkit/PEER-NOTES.md §7): sends then fail with
# "broker.operation.failed". Cargo's incremental caches are the usual culprit; drop them when
# room runs short, and stop with a clear message when that is not enough.
ensure_disk_room() {
  local dir="${TMPDIR:-/tmp}" pct
  used_pct() { df --output=size,avail -B1 "$1" | awk 'NR==2 { printf "%d", ($1-$2)*100/$1 }'; }
  pct=$(used_pct "$dir")
  if (( pct >= 80 )) && [[ -d "$CARGO_TARGET_DIR/debug/incremental" ]]; then
    log "disk holding $dir is ${pct}% used; removing cargo's incremental caches ($CARGO_TARGET_DIR/debug/incremental)"
    rm -rf "$CARGO_TARGET_DIR/debug/incremental"
    pct=$(used_pct "$dir")
  fi
  if (( pct >= 88 )); then
    die "the disk holding $dir is ${pct}% used (reserved blocks count as used): the RocketMQ broker refuses writes at 90%, so the tests and the demo would fail; free some space (e.g. an old $CARGO_TARGET_DIR)"
  fi
}

