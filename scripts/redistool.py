#!/usr/bin/env python3
"""Helpers for scripts/load_redis.sh, standard library only.

  redistool.py wait-tcp HOST:PORT [SECONDS]     wait until HOST:PORT accepts a connection
  redistool.py preload HOST:PORT PREFIX COUNT VALUE_BYTES [TTL] [CONNS]
        PUT /keys/PREFIX0 .. PREFIX(COUNT-1) over CONNS connections (16),
        64 requests pipelined per write; fails unless every answer is 200/201
  redistool.py dbsize HOST:PORT ...             print each Redis server's DBSIZE, then their sum
  redistool.py relocate HTTP add HOST:PORT [SECONDS]
  redistool.py relocate HTTP remove INDEX [SECONDS]
        POST /nodes {"redis": HOST:PORT} (or DELETE /nodes/INDEX) to ringcache
        at HTTP, poll GET /rebalance every 10 ms until the run it started is
        over (SECONDS: 300); print one JSON line
  redistool.py check-moved HOST:PORT PREFIX TTL [SAMPLE]
        on one Redis server: keys matching PREFIX* must have 0 < PTTL <= TTL s
  redistool.py baseline SRC DST COUNT VALUE_BYTES TTL
        load COUNT keys into Redis SRC, then move them to DST one at a time
        (SCAN, then per key DUMP, PTTL, RESTORE on DST, DEL on SRC: four
        round trips, nothing pipelined); print one JSON line

Every loop is bounded by a count or a deadline; only 127.0.0.1 is contacted.
"""
import json
import socket
import sys
import threading
import time


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        sys.exit(f"redistool: refusing non-loopback address {addr}")
    return host, int(port)


def connect(addr, timeout=30.0):
    s = socket.create_connection(split_addr(addr), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wait_tcp(addr, seconds=15.0):
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        try:
            connect(addr, 1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"redistool: {addr} accepted no connection within {seconds}s")


# --- a minimal RESP client ---------------------------------------------------


class RespError(Exception):
    pass


class Redis:
    def __init__(self, addr):
        self.sock = connect(addr)
        self.f = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = str(a).encode()
            elif isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"unexpected RESP line {line!r}")

    def cmd(self, *args):
        self.sock.sendall(self.encode(*args))
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(self.encode(*c) for c in cmds))
        out = [self.read() for _ in cmds]
        for r in out:
            if isinstance(r, RespError):
                raise r
        return out


# --- HTTP preload, pipelined ---------------------------------------------------


def read_response(f):
    """Reads one HTTP/1.1 response; returns its status and whether the server
    closes the connection after it."""
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length, close = 0, False
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        f.read(length)
    return status, close


def preload(addr, prefix, count, value_bytes, ttl="", conns="16", deadline_s="600"):
    count, conns = int(count), int(conns)
    value = b"v" * int(value_bytes)
    query = f"?ttl={ttl}" if ttl else ""
    deadline = time.time() + float(deadline_s)
    failures = []
    window = 64

    def worker(lo, hi):
        try:
            s = connect(addr)
            f = s.makefile("rb")
            i = lo
            while i < hi:
                if time.time() > deadline:
                    failures.append(f"deadline of {deadline_s}s passed at key {i}")
                    return
                n = min(window, hi - i)
                reqs = b"".join(
                    b"PUT /keys/%s%d%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                    % (prefix.encode(), k, query.encode(), len(value), value)
                    for k in range(i, i + n)
                )
                s.sendall(reqs)
                for k in range(i, i + n):
                    st, close = read_response(f)
                    if st not in (200, 201):
                        failures.append(f"PUT /keys/{prefix}{k} answered {st}")
                        return
                    if close:  # e.g. nginx's keepalive_requests: resume on a new connection
                        s.close()
                        s = connect(addr)
                        f = s.makefile("rb")
                        n = k + 1 - i
                        break
                i += n
            s.close()
        except OSError as e:
            failures.append(f"connection error: {e}")

    t0 = time.time()
    step = (count + conns - 1) // conns
    threads = [threading.Thread(target=worker, args=(lo, min(lo + step, count))) for lo in range(0, count, step)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"redistool: preload of {addr} failed: {failures[0]}")
    took = time.time() - t0
    print(f"preloaded {count} keys ({prefix}*, {len(value)} B) into {addr} in {took:.1f}s ({count / took:,.0f}/s)", file=sys.stderr)


# --- Redis checks -------------------------------------------------------------


def dbsize(*addrs):
    sizes = [Redis(a).cmd("DBSIZE") for a in addrs]
    print(" ".join(map(str, sizes)), sum(sizes))


def check_moved(addr, prefix, ttl, sample="200"):
    """Every sampled key matching PREFIX* on ADDR must have 0 < PTTL <= TTL s."""
    r = Redis(addr)
    cursor, seen, bad = b"0", 0, []
    for _ in range(100_000):
        cursor, keys = r.cmd("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 500)
        if keys:
            for k, p in zip(keys, r.pipeline([("PTTL", k) for k in keys])):
                seen += 1
                if not 0 < p <= int(ttl) * 1000:
                    bad.append((k.decode(), p))
        if cursor == b"0" or seen >= int(sample):
            break
    if bad:
        sys.exit(f"redistool: {len(bad)} of {seen} keys on {addr} have a PTTL outside (0, {ttl}s]: {bad[:5]}")
    print(f"{seen} moved keys on {addr}: PTTL in (0, {ttl}s]")


# --- relocation through ringcache ---------------------------------------------------


def http_call(addr, method, path, body=None):
    import http.client

    host, port = split_addr(addr)
    c = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def relocate(http_addr, what, arg, seconds="300"):
    status, data = http_call(http_addr, "GET", "/rebalance")
    if status != 200:
        sys.exit(f"redistool: GET /rebalance answered {status}: {data!r}")
    before = json.loads(data)
    if before["active"]:
        sys.exit("redistool: a relocation was already under way")
    t0 = time.monotonic()
    if what == "add":
        status, data = http_call(http_addr, "POST", "/nodes", json.dumps({"redis": arg, "vnodes": 160}).encode())
        if status != 201:
            sys.exit(f"redistool: POST /nodes answered {status}: {data!r}")
    else:
        status, data = http_call(http_addr, "DELETE", f"/nodes/{int(arg)}")
        if status != 202:
            sys.exit(f"redistool: DELETE /nodes/{arg} answered {status}: {data!r}")
    deadline = t0 + float(seconds)
    polls = 0
    while True:
        status, data = http_call(http_addr, "GET", "/rebalance")
        polls += 1
        r = json.loads(data)
        if status == 200 and not r["active"] and r["runs"] > before["runs"]:
            took = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            sys.exit(f"redistool: relocation still active after {seconds}s: {r}")
        time.sleep(0.01)
    server_s = None
    if r.get("started_at") and r.get("finished_at"):
        from datetime import datetime

        parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
        server_s = (parse(r["finished_at"]) - parse(r["started_at"])).total_seconds()
    print(
        json.dumps(
            {
                "keys_moved": r["keys_moved"],
                "keys_scanned": r.get("keys_scanned"),
                "keys_dropped": r.get("keys_dropped"),
                "seconds": round(took, 3),
                "server_seconds": server_s,
                "keys_per_s": round(r["keys_moved"] / took) if took > 0 else None,
            }
        )
    )


# --- the naive baseline ---------------------------------------------------------------


def baseline(src_addr, dst_addr, count, value_bytes, ttl):
    count, ttl_ms = int(count), int(ttl) * 1000
    src, dst = Redis(src_addr), Redis(dst_addr)
    value = b"v" * int(value_bytes)
    for lo in range(0, count, 1000):
        src.pipeline([("SET", f"mv-{i}", value, "PX", ttl_ms) for i in range(lo, min(lo + 1000, count))])
    if src.cmd("DBSIZE") != count:
        sys.exit("redistool: baseline: the source does not hold the keys loaded")
    moved = 0
    t0 = time.monotonic()
    cursor = b"0"
    for _ in range(10 * count + 100):
        cursor, keys = src.cmd("SCAN", cursor, "COUNT", 1000)
        for k in keys:
            payload = src.cmd("DUMP", k)
            if payload is None:
                continue
            pttl = src.cmd("PTTL", k)
            if pttl == -2:
                continue
            dst.cmd("RESTORE", k, max(pttl, 0), payload, "REPLACE")
            src.cmd("DEL", k)
            moved += 1
        if cursor == b"0":
            break
    took = time.monotonic() - t0
    left, arrived = src.cmd("DBSIZE"), dst.cmd("DBSIZE")
    if left != 0 or arrived != count or moved != count:
        sys.exit(f"redistool: baseline moved {moved}, left {left} on the source, {arrived} on the destination")
    print(json.dumps({"keys_moved": moved, "seconds": round(took, 3), "keys_per_s": round(moved / took)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "wait-tcp": wait_tcp,
        "preload": preload,
        "dbsize": dbsize,
        "relocate": relocate,
        "check-moved": check_moved,
        "baseline": baseline,
    }[cmd](*args)
