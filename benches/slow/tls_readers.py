#!/usr/bin/env python3
"""Stalled TLS readers: N connections over TLS with a small receive buffer,
each asking PATH (a large answer) and then reading nothing for SECS seconds.
Prints how many handshakes and requests went through.

    python3 benches/slow/tls_readers.py HOST PORT N SECS PATH
"""
import socket
import ssl
import sys
import time

host, port, n, secs, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conns = []
for _ in range(n):
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    conns.append(s)
print(f"{len(conns)} stalled TLS readers", flush=True)
time.sleep(secs)
