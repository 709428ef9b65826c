#!/usr/bin/env python3
"""Helpers of benches/dns.sh (the GeoDNS comparison). Subcommands:

  mmdb SRC DST GEO_CODES_RS   GeoIP2-schema copy of a country mmdb
  configs TABLE MMDB DIR GDNSD_PORT PDNS_PORT
                              gdnsd and PowerDNS configs from the table's [dns]
  queries MMDB GEO_MIX OUT    dnsperf -B query file (ECS from geo-mix.lua)
  check MMDB GEO_MIX NAME=PORT...
                              every server gives the same answers
  latency FILE                mean and p99 (us) of a `dnsperf -v` log

Standard library only (Python >= 3.11, for tomllib).
"""

import ipaddress
import random
import re
import socket
import struct
import sys
import tomllib

# --- MaxMind DB format (https://maxmind.github.io/MaxMind-DB/) -------------

META_MARKER = b"\xab\xcd\xefMaxMind.com"


def _size(buf, off, ctrl):
    size = ctrl & 0x1F
    if size < 29:
        return size, off
    n = size - 28
    v = int.from_bytes(buf[off : off + n], "big")
    return (29, 285, 65821)[n - 1] + v, off + n


def decode(buf, off, base):
    """(value, next offset) of the data field at off; pointers are relative to base."""
    ctrl = buf[off]
    off += 1
    t = ctrl >> 5
    if t == 1:  # pointer
        ss, vvv = (ctrl >> 3) & 3, ctrl & 7
        b = buf[off : off + ss + 1]
        if ss == 0:
            p = (vvv << 8) | b[0]
        elif ss == 1:
            p = ((vvv << 16) | int.from_bytes(b, "big")) + 2048
        elif ss == 2:
            p = ((vvv << 24) | int.from_bytes(b, "big")) + 526336
        else:
            p = int.from_bytes(b, "big")
        return decode(buf, base + p, base)[0], off + ss + 1
    if t == 0:  # extended
        t = 7 + buf[off]
        off += 1
    size, off = _size(buf, off, ctrl)
    if t == 2:
        return buf[off : off + size].decode(), off + size
    if t == 4:
        return bytes(buf[off : off + size]), off + size
    if t == 3:
        return struct.unpack(">d", buf[off : off + 8])[0], off + 8
    if t == 15:
        return struct.unpack(">f", buf[off : off + 4])[0], off + 4
    if t in (5, 6, 9, 10):
        return int.from_bytes(buf[off : off + size], "big"), off + size
    if t == 8:
        return int.from_bytes(buf[off : off + size], "big", signed=True), off + size
    if t == 14:
        return bool(size), off
    if t == 7:
        out = {}
        for _ in range(size):
            k, off = decode(buf, off, base)
            out[k], off = decode(buf, off, base)
        return out, off
    if t == 11:
        out = []
        for _ in range(size):
            v, off = decode(buf, off, base)
            out.append(v)
        return out, off
    raise ValueError("mmdb: unsupported data type %d" % t)


def _ctrl(t, size):
    ext = b""
    if t > 7:
        ext, t = bytes([t - 7]), 0
    if size < 29:
        return bytes([(t << 5) | size]) + ext
    if size < 285:
        return bytes([(t << 5) | 29]) + ext + bytes([size - 29])
    if size < 65821:
        return bytes([(t << 5) | 30]) + ext + (size - 285).to_bytes(2, "big")
    return bytes([(t << 5) | 31]) + ext + (size - 65821).to_bytes(3, "big")


def encode(v, uint_types=None):
    """Encode v; ints take the type named in uint_types[key] (metadata) or uint32."""
    if isinstance(v, str):
        b = v.encode()
        return _ctrl(2, len(b)) + b
    if isinstance(v, dict):
        out = _ctrl(7, len(v))
        for k, x in v.items():
            out += encode(k)
            if isinstance(x, int):
                t = (uint_types or {}).get(k, 6)
                n = (x.bit_length() + 7) // 8
                out += _ctrl(t, n) + (x.to_bytes(n, "big") if n else b"")
            else:
                out += encode(x)
        return out
    if isinstance(v, list):
        return _ctrl(11, len(v)) + b"".join(encode(x) for x in v)
    raise ValueError("mmdb: cannot encode %r" % (v,))


def continents(geo_codes_rs):
    """ISO country -> continent, from config/src/geo_codes.rs (the proxy's own table)."""
    text = open(geo_codes_rs).read()
    names = {"Africa": "AF", "Antarctica": "AN", "Asia": "AS", "Europe": "EU",
             "NorthAmerica": "NA", "Oceania": "OC", "SouthAmerica": "SA"}
    out = {}
    for name, body in re.findall(r"\(\s*Continent::(\w+),\s*((?:\"[^\"]*\"\s*)+),?\s*\)", text):
        members = "".join(re.findall(r'"([^"]*)"', body)).replace("\\", " ")
        for cc in members.split():
            out[cc] = names[name]
    if len(out) < 240:
        sys.exit("dnsbench: could not read the continent table of %s" % geo_codes_rs)
    return out


def _records(tree, rs):
    """Every record of the search tree, in order (left, right, left, ...)."""
    if rs == 24:
        return [int.from_bytes(tree[i : i + 3], "big") for i in range(0, len(tree), 3)]
    if rs == 32:
        return list(struct.unpack(">%dI" % (len(tree) // 4), tree))
    out = []
    for i in range(0, len(tree), 7):
        n = tree[i : i + 7]
        out.append(((n[3] & 0xF0) << 20) | int.from_bytes(n[0:3], "big"))
        out.append(((n[3] & 0x0F) << 24) | int.from_bytes(n[4:7], "big"))
    return out


def _tree(recs, rs):
    if rs == 24:
        return b"".join(r.to_bytes(3, "big") for r in recs)
    if rs == 32:
        return struct.pack(">%dI" % len(recs), *recs)
    out = bytearray()
    for i in range(0, len(recs), 2):
        l, r = recs[i], recs[i + 1]
        out += (l & 0xFFFFFF).to_bytes(3, "big") + bytes([((l >> 20) & 0xF0) | (r >> 24)])
        out += (r & 0xFFFFFF).to_bytes(3, "big")
    return bytes(out)


class Reader:
    """Minimal MaxMind DB reader: (record, prefix length) of an address."""

    def __init__(self, path):
        self.buf = open(path, "rb").read()
        m = self.buf.rfind(META_MARKER)
        self.meta = decode(self.buf, m + len(META_MARKER), m + len(META_MARKER))[0]
        self.nc, self.rs = self.meta["node_count"], self.meta["record_size"]
        self.base = self.nc * self.rs // 4 + 16

    def _rec(self, node, bit):
        b, rs = self.buf, self.rs
        if rs == 28:
            o = node * 7
            if bit:
                return ((b[o + 3] & 0x0F) << 24) | int.from_bytes(b[o + 4 : o + 7], "big")
            return ((b[o + 3] & 0xF0) << 20) | int.from_bytes(b[o : o + 3], "big")
        n = rs // 8
        o = node * 2 * n + bit * n
        return int.from_bytes(b[o : o + n], "big")

    def get_with_prefix_len(self, ip):
        a = ipaddress.ip_address(ip)
        value = int(a)  # IPv4 lives at ::a.b.c.d (::/96)
        skip = 96 if a.version == 4 else 0
        node, depth = 0, 0
        while depth < 128 and node < self.nc:
            node = self._rec(node, (value >> (127 - depth)) & 1)
            depth += 1
        rec = None
        if node > self.nc:
            rec = decode(self.buf, self.base + node - self.nc - 16, self.base)[0]
        return rec, depth - skip


# Addresses edgesteer never looks up (geo/src/address_class.rs,
# is_non_routable): private, loopback, link-local, shared, documentation,
# benchmarking, multicast, reserved. The copy leaves them unplaced, so every
# server answers them with the default region, as edgesteer does.
NON_ROUTABLE = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32",
]
EMPTY = -1


def _unplace(recs, net):
    """Make net "not found" in a tree of tagged records (node >= 0, EMPTY,
    data < -1), splitting data leaves on the way down (v4 lives at ::/96)."""
    n = ipaddress.ip_network(net)
    bits = n.prefixlen + (96 if n.version == 4 else 0)
    value = int(n.network_address)
    node = 0
    for depth in range(bits):
        bit = (value >> (127 - depth)) & 1
        i = node * 2 + bit
        if depth == bits - 1:
            recs[i] = EMPTY
            return
        r = recs[i]
        if r == EMPTY:
            return
        if r < EMPTY:  # a data leaf covering net: split it
            recs.extend((r, r))
            recs[i] = r = len(recs) // 2 - 1
        node = r


def cmd_mmdb(src, dst, geo_codes_rs):
    """Same search tree (so every network of SRC, aliases included), new data:
    {country: {iso_code}, continent: {code}} in place of {country_code};
    NON_ROUTABLE left unplaced."""
    import os
    cont = continents(geo_codes_rs)
    buf = open(src, "rb").read()
    m = buf.rfind(META_MARKER)
    meta = decode(buf, m + len(META_MARKER), m + len(META_MARKER))[0]
    nc, rs = meta["node_count"], meta["record_size"]
    if meta["ip_version"] != 6:
        sys.exit("dnsbench: %s is not an IPv6 (v4 and v6) database" % src)
    tree_len = nc * rs // 4
    base = tree_len + 16
    recs = _records(buf[:tree_len], rs)
    # Distinct data pointers -> country -> tag (-2 - index of its new data).
    data, at, tag = [], {}, {nc: EMPTY}
    for p in set(r for r in recs if r > nc):
        rec = decode(buf, base + p - nc - 16, base)[0]
        cc = rec.get("country_code") or (rec.get("country") or {}).get("iso_code")
        if not cc:
            tag[p] = EMPTY  # no country: "not found", as before
            continue
        cc = cc.upper()
        if cc not in at:
            value = {"country": {"iso_code": cc}}
            if cc in cont:
                value = {"continent": {"code": cont[cc]}, **value}
            at[cc] = len(data)
            data.append(encode(value))
        tag[p] = -2 - at[cc]
    recs = [tag.get(r, r) if r >= nc else r for r in recs]
    for net in NON_ROUTABLE:
        _unplace(recs, net)
    nc = len(recs) // 2
    offsets, o = [], 0
    for d in data:
        offsets.append(o)
        o += len(d)
    out_rs = next(s for s in (24, 28, 32) if nc + 16 + o < (1 << s))
    recs = [r if r >= 0 else (nc if r == EMPTY else nc + 16 + offsets[-2 - r]) for r in recs]
    meta_out = {
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "build_epoch": meta.get("build_epoch", 0),
        "database_type": "GeoIP2-Country",
        "description": {"en": "benches/dns: GeoIP2-schema copy of %s" % os.path.basename(src)},
        "ip_version": 6,
        "languages": ["en"],
        "node_count": nc,
        "record_size": out_rs,
    }
    types = {"binary_format_major_version": 5, "binary_format_minor_version": 5,
             "build_epoch": 9, "ip_version": 5, "node_count": 6, "record_size": 5}
    with open(dst + ".tmp", "wb") as f:
        f.write(_tree(recs, out_rs))
        f.write(b"\0" * 16)
        f.write(b"".join(data))
        f.write(META_MARKER)
        f.write(encode(meta_out, types))
    os.replace(dst + ".tmp", dst)
    print("mmdb: %d nodes, %d countries (%d without a continent) -> %s"
          % (nc, len(at), len([c for c in at if c not in cont]), dst), file=sys.stderr)


# --- the table's regions ----------------------------------------------------


def table_regions(table_path):
    t = tomllib.load(open(table_path, "rb"))
    dns = t["dns"]
    geo = t.get("geo", {})
    regions = {}
    for name, r in dns["regions"].items():
        v4 = [a for a in r["addresses"] if ":" not in a]
        v6 = [a for a in r["addresses"] if ":" in a]
        regions[name] = (v4, v6)
    return {
        "zone": dns["zone"],
        "names": dns["names"],
        "ns": dns["ns"],
        "glue": [(r["name"], r["value"]) for r in dns.get("records", []) if r["type"] == "A"],
        "ttl": (dns.get("ttl") or {}).get("normal", 60),
        "regions": regions,
        "continents": geo.get("continents", {}),
        "countries": geo.get("countries", {}),
        "default": t["default_region"],
    }


def cmd_configs(table_path, mmdb, outdir, gdnsd_port, pdns_port):
    import os
    t = table_regions(table_path)
    cont = continents(os.path.join(os.path.dirname(table_path), "..", "config", "src", "geo_codes.rs"))
    zone, ttl = t["zone"], t["ttl"]
    name = t["names"][0]
    label = name[: -len(zone) - 1]
    regions = sorted(t["regions"])

    # gdnsd: plugin_geoip map continent -> {default, country overrides}.
    g = os.path.join(outdir, "gdnsd")
    os.makedirs(os.path.join(g, "zones"), exist_ok=True)
    tree = {}
    for c, r in t["continents"].items():
        tree.setdefault(c, {})["default"] = r
    for cc, r in t["countries"].items():
        if cc not in cont:
            sys.exit("dnsbench: country %s of [geo.countries] has no continent" % cc)
        tree.setdefault(cont[cc], {})[cc] = r
    lines = []
    for c in sorted(tree):
        inner = ", ".join("%s => [%s]" % (k, v) for k, v in sorted(tree[c].items()))
        lines.append("          %s => { %s }" % (c, inner))
    def fam(key, addrs):
        return " %s => [ %s ]" % (key, ", ".join(addrs)) if addrs else ""
    dcmap = "\n".join("          %s => {%s%s }" % (r, fam("addrs_v4", t["regions"][r][0]),
                                                   fam("addrs_v6", t["regions"][r][1]))
                      for r in regions)
    open(os.path.join(g, "config"), "w").write(f"""# generated by benches/dns/dnsbench.py from {table_path}
options => {{
  listen => [ 127.0.0.1:{gdnsd_port} ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => {os.path.abspath(g)}/run
  state_dir => {os.path.abspath(g)}/state
}}
plugins => {{ geoip => {{
  maps => {{
    covergen => {{
      geoip2_db => {os.path.abspath(mmdb)}
      datacenters => [ {", ".join(regions)} ]
      map => {{
          default => [{t["default"]}]
{chr(10).join(lines)}
      }}
    }}
  }}
  resources => {{
    api => {{
      map => covergen
      service_types => up
      dcmap => {{
{dcmap}
      }}
    }}
  }}
}}}}
""")
    ns = "\n".join("@ NS %s." % n for n in t["ns"])
    glue = "\n".join("%s. A %s" % g_ for g_ in t["glue"])
    open(os.path.join(g, "zones", zone), "w").write(f"""$TTL 3600
@ 60 SOA {t["ns"][0]}. hostmaster.{zone}. 1 3600 600 604800 60
{ns}
{glue}
{label} {ttl} DYNA geoip!api
""")

    # PowerDNS: geoip backend, %cc then continent through custom_mapping.
    p = os.path.join(outdir, "pdns")
    os.makedirs(p, exist_ok=True)
    mapping = {cc.lower(): r for cc, r in t["countries"].items()}
    mapping.update({"continent-" + c.lower(): r for c, r in t["continents"].items()})
    y = [f"# generated by benches/dns/dnsbench.py from {table_path}", "domains:",
         f"- domain: {zone}", f"  ttl: {ttl}", "  records:", f"    {zone}:",
         f"      - soa: {t['ns'][0]} hostmaster.{zone} 1 3600 600 604800 60"]
    y += [f"      - ns: {n}" for n in t["ns"]]
    for n, a in t["glue"]:
        y += [f"    {n}:", f"      - a: {a}"]
    for r in regions:
        v4, v6 = t["regions"][r]
        y += [f"    {r}.{name}:"] + [f"      - a: {a}" for a in v4] + [f"      - aaaa: {a}" for a in v6]
    y += ["  services:",
          f"    {name}: [ '%mp.{name}', '{t['default']}.{name}' ]",
          "  mapping_lookup_formats: [ '%cc', 'continent-%cn' ]",
          "  custom_mapping:"]
    y += [f"    '{k}': {v}" for k, v in sorted(mapping.items())]
    open(os.path.join(p, "zones.yaml"), "w").write("\n".join(y) + "\n")
    open(os.path.join(p, "pdns.conf"), "w").write(f"""# generated by benches/dns/dnsbench.py
launch=geoip
geoip-database-files={os.path.abspath(mmdb)}
geoip-zones-file={os.path.abspath(p)}/zones.yaml
edns-subnet-processing=yes
local-address=127.0.0.1:{pdns_port}
receiver-threads=1
distributor-threads=1
socket-dir={os.path.abspath(p)}
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
webserver=no
""")


# --- queries -----------------------------------------------------------------


def geo_mix_ips(path):
    m = re.search(r"local ips = \{(.*?)\}", open(path).read(), re.S)
    ips = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    if len(ips) < 10:
        sys.exit("dnsbench: no client addresses in %s" % path)
    return ips


def subnets(mmdb, ips, per=25):
    """For each client: its /24 (v4) or /56 (v6), then up to per-1 sibling
    subnets inside the same database network (same country, other clients)."""
    r = Reader(mmdb)
    out = []
    for i, ip in enumerate(ips):
        a = ipaddress.ip_address(ip)
        src = 24 if a.version == 4 else 56
        net = ipaddress.ip_network("%s/%d" % (ip, src), strict=False)
        _, plen = r.get_with_prefix_len(ip)
        free = max(0, src - plen)  # bits between the db network and our prefix
        seen, group = set(), []
        for j in range(per):
            k = (j * 7 + i) % (1 << free) if free else 0
            s = ipaddress.ip_network((int(net.network_address) ^ (k << (net.max_prefixlen - src)), src))
            if s not in seen:
                seen.add(s)
                group.append(s)
        out.append(group)
    return out


def query(qname, qtype, subnet, qid=0):
    msg = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1)
    for label in qname.rstrip(".").split("."):
        msg += bytes([len(label)]) + label.encode()
    msg += b"\0" + struct.pack(">HH", qtype, 1)
    fam = 1 if subnet.version == 4 else 2
    addr = subnet.network_address.packed[: (subnet.prefixlen + 7) // 8]
    ecs = struct.pack(">HBB", fam, subnet.prefixlen, 0) + addr
    opt = struct.pack(">HH", 8, len(ecs)) + ecs
    msg += b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(opt)) + opt
    return msg


def cmd_queries(table_path, mmdb, geo_mix, out):
    name = table_regions(table_path)["names"][0]
    msgs = []
    for group in subnets(mmdb, geo_mix_ips(geo_mix)):
        for s in group:
            msgs.append(s)
    random.Random(27).shuffle(msgs)
    with open(out, "wb") as f:
        for n, s in enumerate(msgs):
            m = query(name, 28 if n % 5 == 4 else 1, s)  # 20% AAAA
            f.write(struct.pack(">H", len(m)) + m)
    print("queries: %d messages (%d clients) -> %s" % (len(msgs), len(geo_mix_ips(geo_mix)), out),
          file=sys.stderr)


# --- answers -----------------------------------------------------------------


def _skip_name(m, off):
    while True:
        n = m[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += n + 1


def ask(port, qname, qtype, subnet):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        qid = random.randrange(65536)
        s.sendto(query(qname, qtype, subnet, qid), ("127.0.0.1", port))
        m = s.recv(4096)
    finally:
        s.close()
    rid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", m[:12])
    if rid != qid:
        raise ValueError("id mismatch")
    off = 12
    for _ in range(qd):
        off = _skip_name(m, off) + 4
    answers, scope = [], None
    for i in range(an + ns + ar):
        off = _skip_name(m, off)
        rtype, _, ttl, rdlen = struct.unpack(">HHIH", m[off : off + 10])
        rd = m[off + 10 : off + 10 + rdlen]
        off += 10 + rdlen
        if i < an and rtype in (1, 28):
            answers.append((str(ipaddress.ip_address(rd)), ttl))
        if rtype == 41:
            o = 0
            while o + 4 <= len(rd):
                code, ln = struct.unpack(">HH", rd[o : o + 4])
                if code == 8:
                    scope = rd[o + 7]
                o += 4 + ln
    return flags & 0xF, sorted(answers), scope


def cmd_check(table_path, mmdb, geo_mix, servers):
    t = table_regions(table_path)
    name = t["names"][0]
    by_addr = {a: r for r, (v4, v6) in t["regions"].items() for a in v4 + v6}
    ips = geo_mix_ips(geo_mix)
    bad, scopes, per_region = 0, {}, {}
    for ip, group in zip(ips, subnets(mmdb, ips, per=2)):
        for s in group:
            for qtype in (1, 28):
                got = {}
                for srv in servers:
                    label, port = srv.split("=")
                    rcode, ans, scope = ask(int(port), name, qtype, s)
                    got[label] = (rcode, [a for a, _ in ans], sorted(set(ttl for _, ttl in ans)))
                    scopes.setdefault(label, []).append((scope, s.prefixlen))
                first = next(iter(got.values()))
                if any(v != first for v in got.values()) or first[0] != 0:
                    bad += 1
                    print("check: %s %s %s differ: %s" % (ip, s, "A" if qtype == 1 else "AAAA", got),
                          file=sys.stderr)
                elif qtype == 1:
                    regs = sorted(set(by_addr[a] for a in first[1]))
                    per_region[",".join(regs) or "-"] = per_region.get(",".join(regs) or "-", 0) + 1
    print("check: A answers by region: %s" % per_region, file=sys.stderr)
    for label, sc in scopes.items():
        v = sorted(x for x, _ in sc if x is not None)
        print("check: %s ECS scope: /%d../%d, median /%d; %d answers scope 0, %d longer than the source,"
              " %d without ECS" % (label, v[0], v[-1], v[len(v) // 2], v.count(0),
                                   len([1 for x, src in sc if x is not None and x > src]),
                                   len([1 for x, _ in sc if x is None])), file=sys.stderr)
    if bad:
        sys.exit("check: %d answers differ between servers" % bad)


def cmd_latency(path):
    lat = []
    for line in open(path, errors="replace"):
        f = line.split()
        # dnsperf -v: "> NOERROR api.covergen.ai A 0.000123" (or "> T ..." on a timeout)
        if len(f) >= 3 and f[0] == ">" and f[1] != "T" and f[1] != "I":
            try:
                lat.append(float(f[-1]))
            except ValueError:
                pass
    if not lat:
        sys.exit("latency: no per-query lines in %s" % path)
    lat.sort()
    mean = sum(lat) / len(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print("%.0f %.0f %d" % (mean * 1e6, p99 * 1e6, len(lat)))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "mmdb":
        cmd_mmdb(*args)
    elif cmd == "configs":
        cmd_configs(*args)
    elif cmd == "queries":
        cmd_queries(*args)
    elif cmd == "check":
        cmd_check(args[0], args[1], args[2], args[3:])
    elif cmd == "latency":
        cmd_latency(*args)
    else:
        sys.exit("dnsbench: unknown command %s" % cmd)
