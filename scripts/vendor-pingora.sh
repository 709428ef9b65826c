#!/usr/bin/env bash
# vendor/pingora-{core,http,proxy}: Pingora 0.9.1 as published on crates.io plus
# vendor/patches/pingora-0.9.1.patch (what it changes and why: vendor/README.md).
#
#   scripts/vendor-pingora.sh          # check: vendor/ == crates.io + the patch
#   scripts/vendor-pingora.sh rebuild  # rewrite vendor/ from crates.io + the patch
#   scripts/vendor-pingora.sh diff     # rewrite the patch from vendor/ against crates.io
#
# To change the patch: edit vendor/, run `diff`, then the check. To move to a newer Pingora: rebuild on it, resolve the
# patch's rejects, and drop what upstream now does itself.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.9.1
crates="pingora-core pingora-http pingora-proxy"
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
find_crate() { # the unpacked crate from the registry (cargo fetch unpacks nothing; a build does)
  local dir
  dir=$(ls -d "$registry"/*/"$1-$version" 2>/dev/null | head -1)
  if [ -z "$dir" ]; then
    # Unpack it: a throwaway package that depends on it, fetched and checked.
    local tmp; tmp=$(mktemp -d)
    cargo init -q --vcs none --name unpack "$tmp"
    echo "$1 = { version = \"=$version\", default-features = false }" >> "$tmp/Cargo.toml"
    cargo fetch -q --manifest-path "$tmp/Cargo.toml"
    cargo metadata -q --format-version 1 --manifest-path "$tmp/Cargo.toml" >/dev/null
    rm -rf "$tmp"
    dir=$(ls -d "$registry"/*/"$1-$version" | head -1)
  fi
  echo "$dir"
}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/vendor"
for c in $crates; do cp -r "$(find_crate "$c")" "$work/vendor/$c"; done
patchfile=vendor/patches/pingora-$version.patch
if [ "${1:-check}" = diff ]; then
  # The published crates (a/) against vendor/ (b/), paths as `git diff` writes them.
  mkdir -p "$work/a" "$work/b/vendor"
  mv "$work/vendor" "$work/a/vendor"
  for c in $crates; do cp -r "vendor/$c" "$work/b/vendor/$c"; done
  (cd "$work" && for c in $crates; do diff -ruN "a/vendor/$c" "b/vendor/$c" || [ $? -eq 1 ]; done) \
    | sed -E 's/^(---|\+\+\+) ([^\t]+)\t.*$/\1 \2/' > "$patchfile" # no timestamps: reproducible
  echo "$patchfile: $(grep -c '^+[^+]' "$patchfile") lines added, $(grep -c '^-[^-]' "$patchfile") removed"
  exit 0
fi
(cd "$work" && patch -s -p1 < "$OLDPWD/$patchfile")
case ${1:-check} in
  check)
    for c in $crates; do
      if ! diff -r -q "$work/vendor/$c" "vendor/$c"; then
        echo "vendor/$c differs from crates.io $c $version + vendor/patches/pingora-$version.patch" >&2
        echo "(regenerate the patch, see the header of $0)" >&2
        exit 1
      fi
    done
    echo "vendor/ is crates.io Pingora $version + vendor/patches/pingora-$version.patch" ;;
  rebuild)
    for c in $crates; do rm -rf "vendor/$c"; cp -r "$work/vendor/$c" "vendor/$c"; done
    echo "vendor/ rebuilt" ;;
  *) echo "usage: $0 [check|rebuild|diff]" >&2; exit 2 ;;
esac
