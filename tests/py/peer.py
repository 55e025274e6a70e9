"""A CPython multiprocessing.connection peer for tests/python_interop.rs.

    peer.py client ADDRESS KEY_HEX SIZES    connect to a procwire Listener
    peer.py listen WHERE KEY_HEX SIZES      listen for a procwire Client; WHERE is tcp (127.0.0.1,
                                            an OS-chosen port) or unix:DIR (a socket in DIR)
    peer.py version                         print the major and minor version, e.g. "3 11"

ADDRESS is procwire's string form (unix:/path or tcp:127.0.0.1:port); SIZES is a comma-separated
list of message lengths. A listener prints its own address, in the same form, as its first line.

After the handshake the peer prints CONNECTED, then, for each size in turn, receives a message,
checks it against pattern(size, index) and sends it back unchanged; then it sends
pattern(size, 100 + index) for each size, prints OK and closes. Every outcome is one line on
stdout and an exit code the Rust test asserts on.
"""

import os
import signal
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_MISMATCH = 3
EXIT_TIMEOUT = 4
EXIT_AUTH = 5
EXIT_PEER_CLOSED = 7

# Nothing here may outlive a stuck test: every blocking call is cut short by this alarm.
TIME_LIMIT_SECONDS = 30


class Timeout(Exception):
    pass


def on_alarm(_signum, _frame):
    raise Timeout()


def pattern(n, seed):
    """Byte i is (i + 7 * seed) % 251, as pattern() in python_interop.rs."""
    off = (7 * seed) % 251
    rep = bytes(range(251)) * (n // 251 + 2)
    return rep[off:off + n]


def parse_address(s):
    scheme, _, rest = s.partition(":")
    if scheme == "unix" and rest and not rest.startswith("@"):
        return rest, "AF_UNIX"
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return (host, int(port)), "AF_INET"
    raise ValueError("unsupported address %r" % s)


def session(conn, sizes):
    print("CONNECTED", flush=True)
    for i, n in enumerate(sizes):
        data = conn.recv_bytes()
        want = pattern(n, i)
        if data != want:
            first = next((j for j, (a, b) in enumerate(zip(data, want)) if a != b), min(len(data), n))
            print("MISMATCH message %d: got %d bytes, want %d, first difference at %d"
                  % (i, len(data), n, first), flush=True)
            return EXIT_MISMATCH
        conn.send_bytes(data)
    for i, n in enumerate(sizes):
        conn.send_bytes(pattern(n, 100 + i))
    conn.close()
    print("OK", flush=True)
    return EXIT_OK


def run(argv):
    if argv[1:] == ["version"]:
        print("%d %d" % sys.version_info[:2], flush=True)
        return EXIT_OK
    if len(argv) != 5 or argv[1] not in ("client", "listen"):
        print("USAGE peer.py client ADDRESS KEY_HEX SIZES | listen WHERE KEY_HEX SIZES | version", flush=True)
        return EXIT_USAGE
    mode, where, key = argv[1], argv[2], bytes.fromhex(argv[3])
    sizes = [int(s) for s in argv[4].split(",") if s]
    if mode == "client":
        address, family = parse_address(where)
        conn = Client(address, family=family, authkey=key)
        return session(conn, sizes)
    if where.startswith("unix:"):
        path = os.path.join(where[len("unix:"):], "python.sock")
        listener = Listener(path, family="AF_UNIX", authkey=key)
        print("unix:%s" % listener.address, flush=True)
    elif where == "tcp":
        listener = Listener(("127.0.0.1", 0), family="AF_INET", authkey=key)
        host, port = listener.address
        print("tcp:%s:%d" % (host, port), flush=True)
    else:
        print("USAGE unknown listening place %r" % where, flush=True)
        return EXIT_USAGE
    with listener:
        conn = listener.accept()
        return session(conn, sizes)


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIME_LIMIT_SECONDS)
    try:
        code = run(sys.argv)
    except AuthenticationError as e:
        print("AUTH_ERROR %s" % e, flush=True)
        code = EXIT_AUTH
    except (EOFError, ConnectionResetError, BrokenPipeError) as e:
        print("PEER_CLOSED %s" % type(e).__name__, flush=True)
        code = EXIT_PEER_CLOSED
    except Timeout:
        print("TIMEOUT after %d s" % TIME_LIMIT_SECONDS, flush=True)
        code = EXIT_TIMEOUT
    finally:
        signal.alarm(0)
    sys.exit(code)


if __name__ == "__main__":
    main()
