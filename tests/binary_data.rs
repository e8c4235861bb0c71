//! Binary and utf8mb4 data cross the proxy byte-exact: every byte value, a 20 MiB random
//! BLOB (multi-packet queries, rows and COM_STMT_SEND_LONG_DATA), packets of exactly
//! 0xFFFFFF bytes, and text in every plane, through mysql_async (text and binary protocol)
//! and Perl DBI + DBD::mysql (escaped literals inside COM_QUERY, as Koha sends them).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::Env;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Value};
use rand::RngCore;
use sha1::{Digest, Sha1};

/// One row of the per-byte table: n, then its five binary columns.
type ByteRow = (u8, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);
/// The five binary columns of the whole-row table.
type WholeRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

const BIG: usize = 20 * 1024 * 1024;
/// Largest payload of one protocol packet.
const MAX_PAYLOAD: usize = 0xff_ffff;

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// Escapes bytes for a quoted SQL literal the way mysql_real_escape_string (and so
/// DBD::mysql's placeholder substitution) does.
fn escape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    for &b in data {
        match b {
            0 => out.extend_from_slice(b"\\0"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'"' => out.extend_from_slice(b"\\\""),
            0x1a => out.extend_from_slice(b"\\Z"),
            b => out.push(b),
        }
    }
    out
}

/// `prefix` + `_binary'<escaped data>'` + `suffix`, as one query text.
fn with_literal(prefix: &str, data: &[u8], suffix: &str) -> Vec<u8> {
    let mut q = prefix.as_bytes().to_vec();
    q.extend_from_slice(b"_binary'");
    q.extend_from_slice(&escape(data));
    q.extend_from_slice(b"'");
    q.extend_from_slice(suffix.as_bytes());
    q
}

/// Panics with a short description of where two byte strings differ.
fn assert_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes read, {} written, first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

async fn connect(opts: mysql_async::Opts) -> Conn {
    let opts = OptsBuilder::from_opts(opts).max_allowed_packet(Some(256 * 1024 * 1024));
    Conn::new(opts).await.unwrap()
}

/// Reads one BLOB back with the text protocol and with the binary protocol.
async fn read_back(conn: &mut Conn, table: &str, id: i64) -> (Vec<u8>, Vec<u8>) {
    let text: Vec<u8> = conn
        .query_first(format!("SELECT b FROM {table} WHERE id = {id}"))
        .await
        .unwrap()
        .unwrap();
    let binary: Vec<u8> = conn
        .exec_first(format!("SELECT b FROM {table} WHERE id = ?"), (id,))
        .await
        .unwrap()
        .unwrap();
    (text, binary)
}

/// Every check of the mysql_async part, on one route (`tag` names its tables).
async fn mysql_async_round_trips(conn: &mut Conn, tag: &str, big: &[u8]) {
    let all: Vec<u8> = (0..=255u8).collect();
    let all4 = all.repeat(4);
    let reversed: Vec<u8> = all4.iter().rev().copied().collect();
    let ten_mib: Vec<u8> = big[..10 * 1024 * 1024].to_vec();

    // BLOBs written as escaped literals (text protocol) and as Bytes parameters (binary
    // protocol; above 16 MiB mysql_async sends them with COM_STMT_SEND_LONG_DATA).
    let table = format!("blob_{tag}");
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    let cases: Vec<(i64, &[u8])> = vec![
        (1, &all),
        (2, &all4),
        (3, &reversed),
        (4, &[]),
        (5, &ten_mib),
        (6, big),
    ];
    for (id, data) in &cases {
        conn.query_drop(with_literal(
            &format!("INSERT INTO {table} VALUES ({id}, "),
            data,
            ")",
        ))
        .await
        .unwrap_or_else(|e| panic!("{tag}: text insert of blob {id}: {e}"));
        assert_eq!(conn.affected_rows(), 1);
        conn.exec_drop(
            format!("INSERT INTO {table} VALUES (?, ?)"),
            (id + 100, Value::Bytes(data.to_vec())),
        )
        .await
        .unwrap_or_else(|e| panic!("{tag}: prepared insert of blob {id}: {e}"));
        assert_eq!(conn.affected_rows(), 1);
    }
    for (id, data) in &cases {
        for stored in [*id, id + 100] {
            let (text, binary) = read_back(conn, &table, stored).await;
            assert_bytes(
                &format!("{tag}: blob {stored} (text protocol)"),
                &text,
                data,
            );
            assert_bytes(
                &format!("{tag}: blob {stored} (binary protocol)"),
                &binary,
                data,
            );
            let (len, sha): (u64, String) = conn
                .query_first(format!(
                    "SELECT LENGTH(b), SHA1(b) FROM {table} WHERE id = {stored}"
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (len, sha),
                (data.len() as u64, sha1_hex(data)),
                "{tag}: blob {stored} as the server stored it"
            );
        }
    }
    // A blob found by an escaped literal in a WHERE clause.
    let found: Option<i64> = conn
        .query_first(with_literal(
            &format!("SELECT id FROM {table} WHERE id < 100 AND b = "),
            &all4,
            "",
        ))
        .await
        .unwrap();
    assert_eq!(found, Some(2), "{tag}: lookup by an escaped blob");

    // Packets of exactly 0xFFFFFF bytes are followed by an empty packet: a COM_QUERY of
    // that size, and a result row of that size.
    let prefix = "SELECT LENGTH(";
    let suffix = ")";
    let overhead = 1 + prefix.len() + "_binary''".len() + suffix.len();
    let filler = vec![b'x'; MAX_PAYLOAD - overhead];
    let q = with_literal(prefix, &filler, suffix);
    assert_eq!(q.len() + 1, MAX_PAYLOAD, "COM_QUERY payload size");
    let len: u64 = conn.query_first(q).await.unwrap().unwrap();
    assert_eq!(len as usize, filler.len(), "{tag}: 0xFFFFFF-byte COM_QUERY");
    // Row payload: 4-byte length prefix + value.
    let q = format!("SELECT REPEAT('r', {})", MAX_PAYLOAD - 4);
    let row: Vec<u8> = conn.query_first(&q).await.unwrap().unwrap();
    assert_eq!(row.len(), MAX_PAYLOAD - 4, "{tag}: 0xFFFFFF-byte text row");
    assert!(row.iter().all(|&b| b == b'r'));
    let row: Vec<u8> = conn.exec_first(&q, ()).await.unwrap().unwrap();
    assert_eq!(
        row.len(),
        MAX_PAYLOAD - 4,
        "{tag}: 0xFFFFFF-byte binary row"
    );

    // One row per byte value, and one row whose every column holds all byte values.
    let table = format!("bytes_{tag}");
    conn.query_drop(format!(
        "CREATE TABLE {table} (n INT PRIMARY KEY, c BINARY(1), vb VARBINARY(256), \
         bn BINARY(255), tb TINYBLOB, bl BLOB) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    for n in 0..=255u8 {
        let v = |len: usize| vec![n; len];
        let mut q = format!("INSERT INTO {table} VALUES ({n}, ").into_bytes();
        for (i, len) in [1, 3, 255, 5, 6].into_iter().enumerate() {
            if i > 0 {
                q.extend_from_slice(b", ");
            }
            q.extend_from_slice(&with_literal("", &v(len), ""));
        }
        q.extend_from_slice(b")");
        conn.query_drop(q).await.unwrap();
    }
    let rows: Vec<ByteRow> = conn
        .query(format!("SELECT * FROM {table} ORDER BY n"))
        .await
        .unwrap();
    let binary_rows: Vec<ByteRow> = conn
        .exec(format!("SELECT * FROM {table} ORDER BY n"), ())
        .await
        .unwrap();
    assert_eq!(rows, binary_rows, "{tag}: byte rows, text vs binary");
    assert_eq!(rows.len(), 256);
    for (n, c, vb, bn, tb, bl) in rows {
        assert_eq!(
            (c, vb, bn, tb, bl),
            (vec![n], vec![n; 3], vec![n; 255], vec![n; 5], vec![n; 6]),
            "{tag}: byte {n}"
        );
    }
    let table = format!("row_{tag}");
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, vb VARBINARY(256), bn BINARY(255), \
         tb TINYBLOB, bl BLOB, mb MEDIUMBLOB) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    let row = [
        all.clone(),
        all[1..].to_vec(),
        all[..255].to_vec(),
        all4.clone(),
        all.repeat(1000),
    ];
    let mut q = format!("INSERT INTO {table} VALUES (1").into_bytes();
    for col in &row {
        q.extend_from_slice(&with_literal(", ", col, ""));
    }
    q.extend_from_slice(b")");
    conn.query_drop(q).await.unwrap();
    let mut params = vec![Value::Int(2)];
    params.extend(row.iter().map(|c| Value::Bytes(c.clone())));
    conn.exec_drop(
        format!("INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)"),
        params,
    )
    .await
    .unwrap();
    for id in [1, 2] {
        let q = format!("SELECT vb, bn, tb, bl, mb FROM {table} WHERE id = {id}");
        let text: WholeRow = conn.query_first(&q).await.unwrap().unwrap();
        let binary: WholeRow = conn.exec_first(&q, ()).await.unwrap().unwrap();
        let want = (
            row[0].clone(),
            row[1].clone(),
            row[2].clone(),
            row[3].clone(),
            row[4].clone(),
        );
        assert!(text == want, "{tag}: whole row {id} (text protocol)");
        assert!(binary == want, "{tag}: whole row {id} (binary protocol)");
    }

    // utf8mb4 text: emoji, CJK, combining marks, right-to-left, every BMP code point
    // outside the surrogates, and a run of supplementary-plane characters.
    let table = format!("text_{tag}");
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, t LONGTEXT) \
         DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
    ))
    .await
    .unwrap();
    let texts: Vec<String> = vec![
        "📚 図書館 Bibliothèque".into(),
        "e\u{301}\u{302} a\u{30a} n\u{303} \u{212b} \u{c5}".into(),
        "שלום עולם مرحبا 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🧑‍💻 👩🏽‍🔬 🇫🇮".into(),
        "quotes ' \" \\ ` ; -- and a NUL \0 in text".into(),
        (0x20u32..0xfffe)
            .filter(|c| !(0xd800..=0xdfff).contains(c))
            .filter_map(char::from_u32)
            .collect(),
        (0x1f300u32..0x1f650)
            .chain(0x20000..0x20200)
            .filter_map(char::from_u32)
            .collect(),
    ];
    for (i, t) in texts.iter().enumerate() {
        let mut q = format!("INSERT INTO {table} VALUES ({i}, '").into_bytes();
        q.extend_from_slice(&escape(t.as_bytes()));
        q.extend_from_slice(b"')");
        conn.query_drop(q).await.unwrap();
        conn.exec_drop(
            format!("INSERT INTO {table} VALUES (?, ?)"),
            (i + 100, t.as_str()),
        )
        .await
        .unwrap();
    }
    for (i, t) in texts.iter().enumerate() {
        for id in [i, i + 100] {
            let q = format!("SELECT t, CHAR_LENGTH(t) FROM {table} WHERE id = {id}");
            let (text, chars): (String, usize) = conn.query_first(&q).await.unwrap().unwrap();
            let (binary, _): (String, usize) = conn.exec_first(&q, ()).await.unwrap().unwrap();
            assert_bytes(&format!("{tag}: text {id}"), text.as_bytes(), t.as_bytes());
            assert_bytes(
                &format!("{tag}: text {id} (binary protocol)"),
                binary.as_bytes(),
                t.as_bytes(),
            );
            assert_eq!(chars, t.chars().count(), "{tag}: text {id} character count");
        }
    }
    let id: Option<i64> = conn
        .exec_first(
            format!("SELECT id FROM {table} WHERE t = ? ORDER BY id"),
            (texts[0].as_str(),),
        )
        .await
        .unwrap();
    assert_eq!(id, Some(0), "{tag}: lookup by utf8mb4 text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_and_utf8mb4_round_trip_through_mysql_async() {
    let started = Instant::now();
    let env = tokio::task::spawn_blocking(|| Env::start(0)).await.unwrap();
    let mut big = vec![0u8; BIG];
    rand::rng().fill_bytes(&mut big);

    let mut p = connect(env.proxy_opts()).await;
    mysql_async_round_trips(&mut p, "proxy", &big).await;
    let mut d = connect(env.direct_opts()).await;
    mysql_async_round_trips(&mut d, "direct", &big).await;

    // What one route wrote, the other reads identically.
    for (conn, table) in [(&mut p, "blob_direct"), (&mut d, "blob_proxy")] {
        let (text, binary) = read_back(conn, table, 106).await;
        assert_bytes("cross-read (text)", &text, &big);
        assert_bytes("cross-read (binary)", &binary, &big);
    }
    // The proxy is still healthy afterwards.
    let n: i64 = p
        .query_first("SELECT COUNT(*) FROM blob_proxy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 12);
    p.disconnect().await.unwrap();
    d.disconnect().await.unwrap();
    eprintln!("mysql_async binary data: {:?}", started.elapsed());
}

#[test]
fn blobs_and_utf8mb4_round_trip_through_perl_dbi() {
    let started = Instant::now();
    let env = Env::start(0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("random.bin");
    let mut big = vec![0u8; BIG];
    rand::rng().fill_bytes(&mut big);
    std::fs::write(&file, &big).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/perl/blob_roundtrip.pl");

    let run = |port: u16| {
        let out = Command::new("perl")
            .arg(&script)
            .arg(port.to_string())
            .arg(&file)
            .arg("kp_perl_blob")
            .output()
            .expect("cannot run perl");
        let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
        assert!(
            out.status.success(),
            "blob_roundtrip.pl on port {port} failed ({}):\n{stdout}\n{}\n--- proxy log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            env.proxy_log()
        );
        assert!(
            out.stderr.is_empty(),
            "perl warnings on port {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let p = run(env.proxy_port());
    let d = run(env.master_port());
    assert_eq!(p, d, "Perl output through the proxy vs direct");
    let sha = sha1_hex(&big);
    assert!(
        p.contains(&format!("file {BIG} {sha}\n")),
        "the file's digest:\n{p}"
    );
    assert!(
        p.contains(&format!("ok blob 5 {BIG} {sha}\n")),
        "the 20 MiB blob came back different:\n{p}"
    );
    let all: Vec<u8> = (0..=255u8).collect();
    assert!(p.contains(&format!("ok blob 1 256 {}\n", sha1_hex(&all))));
    assert!(p.ends_with("done\n"));
    eprintln!("perl binary data: {:?}", started.elapsed());
}
