#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing edgesteer:
#   cmake         - Pingora's build (libz-ng-sys)
#   redis-server  - the shared store of fleet-wide rate limits (tests start their own)
#   etcd-server   - the config service's replicated store (tests start their own clusters)
#   protoc        - etcd-client's build (gRPC stubs), Debian's protobuf-compiler
#   chromium      - the ops console's browser test (chromium + chromium-driver, driven by WebDriver)
#   dig           - the GeoDNS tests ask with it (Debian's bind9-dnsutils)
#   ss            - a slow-reader test reads the proxy's socket buffers with it (iproute2)
# Debian/Ubuntu packages; needs root or sudo. Safe to run again.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "setup: please install: ${need[*]} (no root or sudo here)" >&2; exit 1
fi
echo "setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
