#!/usr/bin/env python3
"""Memory per idle client connection: opens N clients to the proxy, each logs in
(mysql_native_password), runs one small query and then stays idle; prints the proxy's
VmRSS before and after, and the difference per connection.

usage: benches/idle_memory.py PROXY_PID PORT [N=1000] [USER=koha] [PASSWORD=koha]
(the proxy must allow N clients: proxy.max_connections, and `ulimit -n` above N for both)
"""
import hashlib, socket, struct, sys, time

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")

def read_packet(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            raise EOFError
        head += chunk
    n = head[0] | head[1] << 8 | head[2] << 16
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise EOFError
        body += chunk
    return head[3], body

def packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload

def login(port, user, password):
    s = socket.create_connection(("127.0.0.1", port))
    _, g = read_packet(s)
    v_end = g.index(b"\0", 1)
    p = v_end + 1 + 4
    salt = g[p:p + 8]
    p += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
    salt += g[p:p + 12]
    s1 = hashlib.sha1(password.encode()).digest()
    s2 = hashlib.sha1(s1).digest()
    mask = hashlib.sha1(salt + s2).digest()
    auth = bytes(a ^ b for a, b in zip(s1, mask))
    caps = 0x200 | 0x8000 | 0x80000 | 0x1000000 | 0x2  # 4.1, secure conn, plugin auth, deprecate eof, found rows
    body = struct.pack("<IIB", caps, 1 << 24, 45) + b"\0" * 23 + user.encode() + b"\0"
    body += bytes([len(auth)]) + auth + b"mysql_native_password\0"
    s.sendall(packet(1, body))
    _, ok = read_packet(s)
    if ok[0] != 0:
        raise SystemExit(f"login refused: {ok!r}")
    s.sendall(packet(0, b"\x03SELECT 1"))
    while True:  # column count, column def, row, terminator
        _, p = read_packet(s)
        if p[0] == 0xFE and len(p) < 0xFFFFFF:
            break
    return s

def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    user = sys.argv[4] if len(sys.argv) > 4 else "koha"
    password = sys.argv[5] if len(sys.argv) > 5 else "koha"
    conns = [login(port, user, password)]  # warm the proxy up before the baseline
    time.sleep(0.5)
    before = rss_kib(pid)
    for _ in range(n):
        conns.append(login(port, user, password))
    time.sleep(1)
    after = rss_kib(pid)
    print(f"{n} idle connections: proxy RSS {before} KiB -> {after} KiB, "
          f"{(after - before) / n:.1f} KiB per connection")
    for c in conns:
        c.close()

if __name__ == "__main__":
    main()
