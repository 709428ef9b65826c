# Sourced by the bench scripts (run from the repository root).

# Builds the release binaries and sets root, bin, a scratch dir wd and the
# pids array; every pid in it is killed on exit.
bench_setup() {
  root=$(pwd)
  cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
  bin=$root/target/release
  wd=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

# A free loopback TCP port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$wd"
}

# origin_protocol TABLE: with ORIGIN=h2c, ours reaches the origin over
# HTTP/2 without TLS (the demo backend speaks both), so requests share h2
# connections and their flow-control windows; H2_WINDOW_BYTES=N sets the
# table's h2_window_bytes (a build that knows it).
origin_protocol() {
  [ "${ORIGIN:-h1}" = h2c ] || return 0
  printf '\n[upstream]\nalpn = ["h2c"]\n' >> "$1"
  [ -z "${H2_WINDOW_BYTES:-}" ] || printf 'h2_window_bytes = %s\n' "$H2_WINDOW_BYTES" >> "$1"
}

# covergen_table DST UPSTREAM LIMITS [MAX_KEYS]
# The covergen table with every region's backends replaced by UPSTREAM, so
# routing, zones and pins are production's. LIMITS: keep (the covergen
# policies, with MAX_KEYS if given), strip (none: a one-address load run
# would be refused), or price (only the per-IP policy, at a limit no run
# reaches, so every request is checked and passes).
covergen_table() {
  python3 - "$(pwd)/examples/covergen.toml" "$@" <<'PY'
import re, sys
src, dst, upstream, limits = sys.argv[1:5]
max_keys = sys.argv[5] if len(sys.argv) > 5 else ""
text = open(src).read()
if limits != "keep":
    text = text.split("# --- rate limits")[0]
if limits == "price":
    text += '\n[[rate_limits]]\nname = "per-ip"\nkey = "client_ip"\nrate = 10000000\nburst = 10000000\n'
if max_keys:
    for key in ('key = "client_ip"\n', 'key = "header:x-api-key"\n'):
        text = text.replace(key, key + "max_keys = %s\n" % max_keys)
# One plain-HTTP upstream: the example's production TLS settings go.
text = re.sub(r'\[upstream\]\n(?:[^\n]+\n)*', '', text)
text = re.sub(r'backends = \[[^\]]*\]', 'backends = [ { address = "%s", weight = 1 } ]' % upstream, text)
open(dst, "w").write(text)
PY
}

# nginx_conf NAME CPU BODY: an nginx with one worker on CPU, serving BODY
# (the http block's inside), started in the background; its pid file is
# $wd/NAME.pid (needs $wd/tmp, $wd and pids).
nginx_conf() {
  cat > "$wd/$1.conf" <<EOF2
worker_processes 1;
daemon off;
error_log $wd/$1.err warn;
pid $wd/$1.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $wd/tmp; proxy_temp_path $wd/tmp; fastcgi_temp_path $wd/tmp;
  uwsgi_temp_path $wd/tmp; scgi_temp_path $wd/tmp;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
$3
}
EOF2
  taskset -c "$2" nginx -p "$wd" -c "$wd/$1.conf" &
  pids+=($!)
}

# nginx_upstream CPU: the origin of the paired and allocation runs, an nginx
# answering every request with 100 bytes on 127.0.0.1:$up.
nginx_upstream() {
  nginx_conf upstream "$1" "  server {
    listen 127.0.0.1:$up backlog=4096;
    location / { default_type text/plain; return 200 \"$(printf 'x%.0s' $(seq 100))\"; }
  }"
}
