#!/usr/bin/env python3
"""Print Kamailio evapi events (netstring framing) as JSON lines.

    infra/kamailio/evapi_tail.py [--port 8448] [--host 127.0.0.1] [--seconds N] [--hello]

Each netstring "<len>:<payload>," is decoded; the payload (one JSON object) is printed on
its own line, unchanged. Exits after --seconds (default: never) or when Kamailio closes
the connection. --hello sends the netstring "hello" once connected (Kamailio answers with
a hello event; one is also sent unasked on every connect). Reconnects are not attempted:
evapi drops events while no client is connected.
"""
import argparse
import json
import socket
import sys
import time


def netstrings(sock, deadline):
    buf = b""
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return
        if not chunk:
            return
        buf += chunk
        while True:
            colon = buf.find(b":")
            if colon < 0:
                break
            length = int(buf[:colon])
            end = colon + 1 + length
            if len(buf) < end + 1:
                break
            if buf[end:end + 1] != b",":
                raise ValueError("bad netstring terminator at %r" % buf[:end + 1])
            yield buf[colon + 1:end]
            buf = buf[end + 1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8448)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--hello", action="store_true")
    args = ap.parse_args()
    sock = socket.create_connection((args.host, args.port))
    if args.hello:
        sock.sendall(b"5:hello,")
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    for payload in netstrings(sock, deadline):
        text = payload.decode("utf-8")
        json.loads(text)  # every payload must be one valid JSON document
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
