#!/usr/bin/env python3
"""Helpers for scripts/load.sh, standard library only.

  loadtool.py free-port                     print a free 127.0.0.1 port
  loadtool.py wait HOST:PORT [SECONDS]      wait until GET /health answers 200
  loadtool.py preload HOST:PORT KEYS        PUT key-0..key-(KEYS-1), 64-byte values
  loadtool.py churn HOST:PORT SECONDS       add, re-weight and remove nodes until SECONDS pass
  loadtool.py wait-idle HOST:PORT [SECONDS] wait until GET /rebalance says active=false

Every loop is bounded by a count or a deadline; only 127.0.0.1 is contacted.
"""
import http.client
import json
import random
import socket
import sys
import time


def conn(addr):
    host, port = addr.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        sys.exit(f"loadtool: refusing non-loopback address {addr}")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def call(c, method, path, body=None):
    headers = {"Content-Length": str(len(body))} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def wait(addr, seconds=15.0):
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        try:
            if call(conn(addr), "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"loadtool: {addr} did not answer GET /health within {seconds}s")


def preload(addr, keys):
    c = conn(addr)
    value = b"v" * 64
    for i in range(int(keys)):
        status, _ = call(c, "PUT", f"/keys/key-{i}", value)
        if status not in (200, 201):
            sys.exit(f"loadtool: preload PUT key-{i} answered {status}")


def wait_idle(addr, seconds=60.0):
    deadline = time.time() + float(seconds)
    c = conn(addr)
    while time.time() < deadline:
        status, data = call(c, "GET", "/rebalance")
        if status == 200 and not json.loads(data)["active"]:
            return
        time.sleep(0.05)
    sys.exit(f"loadtool: relocation still active after {seconds}s")


def churn(addr, seconds):
    """Adds a node, re-weights a node, removes the added node, repeatedly."""
    deadline = time.time() + float(seconds)
    c = conn(addr)
    rng = random.Random(7)
    changes, n = 0, 0
    while time.time() < deadline and changes < 10_000:
        n += 1
        status, data = call(c, "POST", "/nodes", json.dumps({"name": f"churn-{n}", "vnodes": 160}).encode())
        if status != 201:
            sys.exit(f"loadtool: POST /nodes answered {status}: {data!r}")
        added = json.loads(data)["index"]
        time.sleep(0.1)
        status, data = call(c, "GET", "/nodes")
        nodes = [x for x in json.loads(data) if x["state"] == "serving"]
        target = rng.choice(nodes)["index"]
        status, data = call(c, "PUT", f"/nodes/{target}", json.dumps({"vnodes": rng.randint(40, 400)}).encode())
        if status != 202:
            sys.exit(f"loadtool: PUT /nodes/{target} answered {status}: {data!r}")
        time.sleep(0.1)
        status, data = call(c, "DELETE", f"/nodes/{added}")
        if status != 202:
            sys.exit(f"loadtool: DELETE /nodes/{added} answered {status}: {data!r}")
        changes += 3
        time.sleep(0.1)
    print(f"membership changes: {changes}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"free-port": free_port, "wait": wait, "preload": preload, "churn": churn, "wait-idle": wait_idle}[cmd](*args)
