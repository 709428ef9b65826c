#!/usr/bin/env python3
"""Slowloris variants the intake must hold to its head deadline.

Opens CONNS connections to HOST:PORT and trickles a request head one header
line every INTERVAL seconds for SECS seconds, never finishing it. VARIANT:
  empty  the head starts with empty lines (CRLF CRLF, then the request line)
  space  the request target holds a space ("GET /a b HTTP/1.1")
Prints one line: variant, connections opened, closed by the server, and the
slowest close in seconds after the connection opened ("-" if none closed).
"""
import asyncio
import sys
import time

HOST, PORT, VARIANT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
CONNS, SECS, INTERVAL = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
FIRST = {
    "empty": b"\r\n\r\nGET /v1/covers HTTP/1.1\r\nHost: api.covergen.ai\r\n",
    "space": b"GET /v1/a b HTTP/1.1\r\nHost: api.covergen.ai\r\n",
}[VARIANT]


async def one(closed):
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
    except OSError:
        return False
    try:
        writer.write(FIRST)
        await writer.drain()
        n = 0
        while time.monotonic() - start < SECS:
            try:
                data = await asyncio.wait_for(reader.read(4096), INTERVAL)
                if not data:  # closed by the server
                    closed.append(time.monotonic() - start)
                    return True
            except asyncio.TimeoutError:
                pass
            n += 1
            writer.write(b"X-Trickle-%d: %s\r\n" % (n, b"a" * 16))
            await writer.drain()
    except (ConnectionError, OSError):
        closed.append(time.monotonic() - start)
    finally:
        writer.close()
    return True


async def main():
    closed = []
    opened = await asyncio.gather(*(one(closed) for _ in range(CONNS)))
    slowest = "%.1f" % max(closed) if closed else "-"
    print(VARIANT, sum(opened), len(closed), slowest)


asyncio.run(main())
