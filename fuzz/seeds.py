#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from the captures in fuzz/captures/ and a few
hand-written inputs (Koha-like SQL, config files).

A capture is one client connection to MariaDB 10.11, recorded by a forwarding proxy:
records of a direction byte (b"c" client to server, b"s" server to client), a 4-byte
little-endian length and the bytes, in arrival order. They were made against a
`kohaproxy sandbox up` master with the mariadb command-line client (text protocol, LOAD
DATA LOCAL) and Perl DBD::mysql with server-side prepare (COM_STMT_*), with and without
session tracking.

    python3 fuzz/seeds.py    # from the repository root; rewrites only seed-* files
"""
import hashlib
import os
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DEPRECATE_EOF = 1 << 24
SESSION_STATE_CHANGED = 0x4000


def records(path):
    b = path.read_bytes()
    i = 0
    while i < len(b):
        d, n = chr(b[i]), int.from_bytes(b[i + 1 : i + 5], "little")
        yield d, b[i + 5 : i + 5 + n]
        i += 5 + n


def packets(stream):
    """(seq, payload, raw) for each whole packet in stream."""
    i, out = 0, []
    while i + 4 <= len(stream):
        n = int.from_bytes(stream[i : i + 3], "little")
        out.append((stream[i + 3], stream[i + 4 : i + 4 + n], stream[i : i + 4 + n]))
        i += 4 + n
    return out


def conversation(path):
    """Splits a capture into the greeting, the login, the auth-phase server bytes, and a list
    of (command payload, server response bytes)."""
    client, server = b"", b""
    commands = []  # (payload, server bytes from here on)
    seen_client = 0
    events = list(records(path))
    # client packets in order, each tagged with how many server bytes came before it
    timeline = []
    for d, data in events:
        if d == "c":
            client += data
            for seq, payload, raw in packets(client[seen_client:]):
                timeline.append((seq, payload, len(server)))
                seen_client += len(raw)
        else:
            server += data
    greeting = packets(server)[0][1]
    login = timeline[0][1]
    cmds = [(p, at) for seq, p, at in timeline[1:] if seq == 0]
    for k, (payload, at) in enumerate(cmds):
        end = cmds[k + 1][1] if k + 1 < len(cmds) else len(server)
        commands.append((payload, server[at:end]))
    return greeting, login, commands, server


def write(target, data, name=None):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    name = name or "seed-" + hashlib.sha1(data).hexdigest()[:12]
    (d / name).write_bytes(data)


KOHA_SQL = [
    b"SELECT * FROM biblio WHERE biblionumber = 42",
    b"SELECT biblio.*, biblioitems.* FROM biblio LEFT JOIN biblioitems USING (biblionumber) WHERE biblio.biblionumber = ?",
    b"SELECT COUNT(*) FROM issues WHERE borrowernumber = 7 AND returndate IS NULL",
    b"SELECT SQL_CALC_FOUND_ROWS * FROM items LIMIT 20",
    b"SELECT FOUND_ROWS()",
    b"INSERT INTO action_logs (timestamp, user, module, action, object, info) VALUES (NOW(), 1, 'CIRCULATION', 'ISSUE', 7, '')",
    b"UPDATE items SET onloan = '2026-12-24', datelastseen = NOW() WHERE itemnumber = 961",
    b"DELETE FROM sessions WHERE id = 'abc'",
    b"SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
    b"SET @x = 'it''s', @y = 3.5, @z = NULL",
    b"SET @n := (SELECT MAX(itemnumber) FROM items)",
    b"SET SESSION sql_mode = 'STRICT_TRANS_TABLES'",
    b"SET autocommit=0",
    b"START TRANSACTION READ ONLY",
    b"BEGIN WORK",
    b"COMMIT",
    b"ROLLBACK",
    b"SHOW WARNINGS",
    b"SELECT @@warning_count, @@session.tx_isolation",
    b"/* kohaproxy:master */ SELECT * FROM borrowers WHERE cardnumber = '23529000035676'",
    b"/* kohaproxy:replica */ SELECT 1",
    b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */",
    b"SELECT * FROM borrowers FOR UPDATE",
    b"SELECT * FROM items LOCK IN SHARE MODE",
    b"SELECT GET_LOCK('koha', 10)",
    b"CREATE TEMPORARY TABLE tmp_hold AS SELECT * FROM reserves",
    b"LOCK TABLES items WRITE",
    b"WITH RECURSIVE c AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT * FROM c",
    b"SELECT 'a\\'b', \"c\\\"d\", `e``f` FROM t -- comment\n",
    b"SELECT 1; DELETE FROM t",
    b"SELECT x INTO @v FROM t",
    b"PREPARE s FROM 'SELECT 1'",
    b"HANDLER items OPEN",
    b"CALL refresh_stats()",
    b"SELECT LAST_INSERT_ID()",
    b"SELECT NEXTVAL(seq)",
    b"(SELECT 1) UNION (SELECT 2)",
    b"EXPLAIN SELECT * FROM biblio",
    b"DO SLEEP(1)",
]

CONFIGS = {
    "seed-minimal.toml": b"""[proxy]
listen = "127.0.0.1:6033"
[[users]]
name = "koha"
password = "koha"
[monitor]
user = "mon"
[[servers]]
name = "db1"
address = "db1.example.org:3306"
""",
    "seed-sketch.toml": b"""[proxy]
listen = "127.0.0.1:6033"
[admin]
socket = "/run/kohaproxy/admin.sock"
[[users]]
name = "koha"
password_hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
[monitor]
user = "kohaproxy_monitor"
password = "..."
interval_ms = 500
failover = "auto"          # or "manual"
[cluster]
kind = "replication"       # or "galera"
[[servers]]
name = "db1"
address = "10.0.0.11:3306"
[[servers]]
name = "db2"
address = "10.0.0.12:3306"
[routing]
read_write_split = true
max_replication_lag_s = 5
[backup]
dir = "/var/backups/kohaproxy"
schedule = "daily 02:30"
keep = 7
""",
    "seed-galera.toml": b"""[proxy]
listen = "[::1]:6033"
threads = 2
[[users]]
name = "koha"
password = "koha"
[monitor]
user = "kohaproxy_monitor"
password = "monitor"
[cluster]
kind = "galera"
[[servers]]
name = "db1"
address = "127.0.0.1:3307"
[[servers]]
name = "db2"
address = "127.0.0.1:3308"
[[servers]]
name = "db3"
address = "127.0.0.1:3309"
[backup]
dir = "backups"
schedule = "weekly sun 03:00"
""",
}


def main():
    for target in ["codec", "relay", "handshake", "classify", "track", "config"]:
        for f in (CORPUS / target).glob("seed-*") if (CORPUS / target).exists() else []:
            f.unlink()
    for path in sorted((HERE / "captures").glob("conn*")):
        greeting, login, commands, server = conversation(path)
        caps = struct.unpack("<I", login[:4])[0] | (struct.unpack("<I", login[28:32])[0] << 32)
        flags = 1 if caps & DEPRECATE_EOF else 0
        write("handshake", b"\x00" + greeting)
        write("handshake", b"\x01" + login)
        for seq, payload, _ in packets(server):
            write("codec", payload[:512])
            if payload[:1] in (b"\x00", b"\xfe") and len(payload) > 5:
                status = None
                try:
                    # affected rows and insert id are small in these captures
                    status = struct.unpack("<H", payload[3:5])[0]
                except struct.error:
                    pass
                if status is not None and status & SESSION_STATE_CHANGED:
                    write("track", b"\x01\x1fautocommit,character_set_client" + payload)
                    write("track", b"\x00\x01*" + payload)
            if payload[:1] == b"\xfe" and seq == 2:
                write("handshake", b"\x02" + payload)
        for payload, response in commands:
            write("codec", payload[:512])
            if payload[:1] == b"\x03":
                write("classify", payload[1:])
            write("relay", bytes([payload[0], flags, 6]) + response)
            write("relay", bytes([payload[0], flags | 2, 63]) + response)
        # COM_CHANGE_USER, built from the login: user, 20-byte response, schema, collation,
        # plugin, attributes.
        user_end = login.index(b"\x00", 32)
        user = login[32:user_end]
        change = (
            b"\x11" + user + b"\x00" + b"\x14" + bytes(range(20)) + b"koha\x00" + b"\x2d\x00"
            + b"mysql_native_password\x00" + b"\x0c\x04_pid\x0512345"
        )
        write("handshake", b"\x03" + struct.pack("<I", caps & 0xFFFFFFFF) + change)
    for sql in KOHA_SQL:
        write("classify", sql)
    for name, text in CONFIGS.items():
        write("config", text, name)
    sandbox = HERE / "captures" / "sandbox.toml"
    write("config", sandbox.read_bytes(), "seed-sandbox.toml")
    # Session-state OKs as MariaDB 10.11 sent them (proxy/src/protocol/track.rs tests).
    for ok in [
        b"\x00\x00\x00\x02\x40\x00\x00\x00\x62\x00\x1d\x14character_set_client\x07utf8mb4\x00\x21\x18character_set_connection\x07utf8mb4\x00\x1e\x15character_set_results\x07utf8mb4",
        b"\x00\x01\x00\x02\x40\x00\x00\x00\x12\x00\x10\x09last_gtid\x050-1-2",
        b"\x00\x00\x00\x02\xc0\x00\x00\x00\x07\x01\x05\x04koha",
    ]:
        write("track", b"\x01\x00" + ok)
        write("track", b"\x00\x01*" + ok)
        write("codec", ok)


if __name__ == "__main__":
    main()
