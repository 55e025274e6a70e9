"""One side of a `procwire bench` run in CPython's multiprocessing.connection (the python column).

    python3 -c SCRIPT ROLE SIZE DURATION_NS ENDPOINT

Same roles, endpoints and stdout lines as procwire's own worker (src/bench/worker.rs): ADDR,
READY, RESULT <json>, ERROR <text>; the active side starts on GO from stdin, and the process
exits when stdin closes. The authkey (hex) is in PROCWIRE_BENCH_KEY; an inherited pipe end is
named in PROCWIRE_BENCH_CONN as FD:KIND:PARENT_PID. Messages travel with send_bytes/recv_bytes,
as a Python program that wants speed would use them (no pickling).
"""

import json
import math
import os
import sys
import threading
import time
from multiprocessing.connection import Client, Connection, Listener

PING_WARMUP = 10


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


GO = threading.Event()


def watch_stdin():
    for line in sys.stdin:
        if line.strip() == "GO":
            GO.set()
    os._exit(0)


def address(s):
    """procwire's address form to (address, family)."""
    scheme, _, rest = s.partition(":")
    if scheme == "unix":
        return ("\0" + rest[1:] if rest.startswith("@") else rest), "AF_UNIX"
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return (host, int(port)), "AF_INET"
    if scheme == "pipe":
        return "\\\\.\\pipe\\" + rest, "AF_PIPE"
    raise ValueError("unsupported address %r" % s)


def shown(given, listener):
    """The address a listener is reachable at, in procwire's form."""
    if given.startswith("tcp:"):
        host, port = listener.address
        return "tcp:%s:%d" % (host, port)
    return given


def report(count, secs, **extra):
    out = {"count": count, "secs": secs}
    out.update(extra)
    say("RESULT " + json.dumps(out))


def burst(size):
    return max(1, min(4096, (64 << 10) // (size + 4)))


def main():
    role, size, duration_ns, endpoint = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    duration = duration_ns / 1e9
    key = bytes.fromhex(os.environ["PROCWIRE_BENCH_KEY"])
    threading.Thread(target=watch_stdin, daemon=True).start()
    kind, _, given = endpoint.partition(":")

    if role == "accept":
        addr, family = address(given)
        listener = Listener(addr, family, authkey=key)
        say("ADDR " + shown(given, listener))
        say("READY")
        while True:
            try:
                listener.accept().close()
            except Exception:
                pass
    if role == "connect":
        addr, family = address(given)
        say("READY")
        GO.wait()
        count = 0
        start = time.perf_counter()
        end = start + duration
        while time.perf_counter() < end:
            Client(addr, family, authkey=key).close()
            count += 1
        report(count, time.perf_counter() - start)
        return

    if kind == "listen":
        addr, family = address(given)
        listener = Listener(addr, family, authkey=key)
        say("ADDR " + shown(given, listener))
        conn = listener.accept()
    elif kind == "connect":
        addr, family = address(given)
        conn = Client(addr, family, authkey=key)
    else:
        fd, fd_kind, _ = os.environ["PROCWIRE_BENCH_CONN"].split(":")
        conn = Connection(int(fd), readable=fd_kind != "pipe-w", writable=fd_kind != "pipe-r")
    say("READY")

    if role in ("stream-recv", "batched-recv"):
        recv = conn.recv_bytes
        if len(recv()) != size:
            raise ValueError("wrong size")
        count = 0
        start = time.perf_counter()
        try:
            while True:
                if len(recv()) != size:
                    raise ValueError("wrong size")
                count += 1
        except EOFError:
            pass
        report(count, time.perf_counter() - start)
    elif role in ("stream-send", "batched-send"):
        # CPython has no batched mode: both roles send one write per message.
        send = conn.send_bytes
        msg = b"\xa5" * size
        n = burst(size)
        GO.wait()
        count = 0
        start = time.perf_counter()
        end = start + duration
        while time.perf_counter() < end:
            for _ in range(n):
                send(msg)
            count += n
        conn.close()
        report(count, time.perf_counter() - start)
    elif role == "echo":
        count = 0
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
                count += 1
        except EOFError:
            pass
        report(count, 0.0)
    elif role == "ping":
        send, recv, now = conn.send_bytes, conn.recv_bytes, time.perf_counter_ns
        msg = b"\xa5" * size
        samples = []
        GO.wait()
        start = time.perf_counter()
        end = start + duration
        while time.perf_counter() < end:
            t = now()
            send(msg)
            got = recv()
            samples.append(now() - t)
            if len(got) != size:
                raise ValueError("wrong size")
        secs = time.perf_counter() - start
        conn.close()
        if len(samples) > 2 * PING_WARMUP:
            samples = samples[PING_WARMUP:]
        if not samples:
            report(0, secs)
            return
        samples.sort()

        def at(q):
            rank = min(max(math.ceil(q * len(samples)), 1), len(samples))
            return samples[rank - 1] / 1e3

        report(len(samples), secs, median_us=at(0.5), p99_us=at(0.99))
    else:
        raise ValueError("unknown role %r" % role)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        say("ERROR python: %s: %s" % (type(e).__name__, e))
        sys.exit(1)
