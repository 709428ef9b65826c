#!/usr/bin/env bash
# Refreshes geo/data/geo-whois-asn-country.mmdb from the npm registry.
# Usage: scripts/update-geo-db.sh [version]   (default: latest)
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="@ip-location-db/geo-whois-asn-country-mmdb${1:+@$1}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
install -m 0644 "$tmp/package/geo-whois-asn-country.mmdb" geo/data/geo-whois-asn-country.mmdb
install -m 0644 "$tmp/package/NRO_LICENSE" geo/data/NRO_LICENSE
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$tmp/package/package.json")
sed -i -E "s/version \`[0-9.]+\`/version \`$version\`/" geo/data/README.md
echo "bundled geo database is now $pkg $version; run the geo tests: cargo test -p edgesteer-geo"
