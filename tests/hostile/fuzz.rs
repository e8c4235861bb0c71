//! The network fuzzer: a corpus of real client traffic, seeded mutations, cases sent
//! through the proxy, replay, and the two hangs it found.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// 1. The network fuzzer.
// ---------------------------------------------------------------------------------------

/// One packet of a client's stream, before it is encoded: a mutation may make its header
/// lie about the payload's length.
#[derive(Debug, Clone)]
pub(super) struct Pkt {
    /// Sequence id.
    pub(super) seq: u8,
    /// Payload.
    pub(super) payload: Vec<u8>,
    /// The length the header announces, when not the payload's.
    pub(super) len: Option<u32>,
}

impl Pkt {
    /// A well-formed packet.
    pub(super) fn new(seq: u8, payload: impl Into<Vec<u8>>) -> Pkt {
        Pkt {
            seq,
            payload: payload.into(),
            len: None,
        }
    }

    /// A one-packet command.
    pub(super) fn command(payload: impl Into<Vec<u8>>) -> Vec<Pkt> {
        vec![Pkt::new(0, payload)]
    }

    /// A one-packet COM_QUERY.
    pub(super) fn query(sql: &str) -> Vec<Pkt> {
        let mut p = vec![command::QUERY];
        p.extend_from_slice(sql.as_bytes());
        Pkt::command(p)
    }
}

/// The bytes of a packet sequence.
pub(super) fn encode(pkts: &[Pkt]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pkts {
        let len = p.len.unwrap_or(p.payload.len() as u32).min(0xff_ffff);
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.push(p.seq);
        out.extend_from_slice(&p.payload);
    }
    out
}

/// Real client commands (after the login) as packet sequences: what drivers send for
/// text queries, prepared statements, LOAD DATA LOCAL INFILE, COM_CHANGE_USER and the
/// small commands. `salt` is the greeting's scramble (COM_CHANGE_USER answers it).
/// Nothing here is expensive for the server, and the hostile user can only touch its own
/// tables (`koha.fuzz_t`).
pub(super) fn corpus(salt: &[u8]) -> Vec<Vec<Pkt>> {
    let stmt = 1u32.to_le_bytes();
    let mut execute = vec![command::STMT_EXECUTE];
    execute.extend_from_slice(&stmt);
    execute.push(0); // no cursor
    execute.extend_from_slice(&1u32.to_le_bytes());
    execute.push(0); // null bitmap (2 parameters)
    execute.push(1); // types follow
    execute.extend_from_slice(&[0x08, 0x00, 0xfd, 0x00]); // LONGLONG, VAR_STRING
    execute.extend_from_slice(&41i64.to_le_bytes());
    execute.extend_from_slice(b"\x03abc");
    let mut cursor = execute.clone();
    cursor[5] = 1; // CURSOR_TYPE_READ_ONLY
    let mut fetch = vec![command::STMT_FETCH];
    fetch.extend_from_slice(&stmt);
    fetch.extend_from_slice(&10u32.to_le_bytes());
    let mut long_data = vec![command::STMT_SEND_LONG_DATA];
    long_data.extend_from_slice(&stmt);
    long_data.extend_from_slice(&1u16.to_le_bytes());
    long_data.extend_from_slice(b"long data chunk");
    let with_stmt = |cmd: u8| {
        let mut p = vec![cmd];
        p.extend_from_slice(&stmt);
        p
    };
    let mut change_user = vec![command::CHANGE_USER];
    change_user.extend_from_slice(b"koha\0");
    change_user.push(20);
    change_user.extend_from_slice(&Credential::from_password("koha").scramble(salt));
    change_user.extend_from_slice(b"koha\0");
    change_user.extend_from_slice(&45u16.to_le_bytes());
    change_user.extend_from_slice(NATIVE_PASSWORD);
    change_user.push(0);
    vec![
        Pkt::query("SELECT 1"),
        Pkt::query("SELECT @@version, CONNECTION_ID(), DATABASE()"),
        Pkt::query("INSERT INTO koha.fuzz_t VALUES (1, 'fuzz')"),
        Pkt::query("SELECT a, b FROM koha.fuzz_t LIMIT 3"),
        Pkt::query("SET @x = 'abc', NAMES utf8mb4"),
        Pkt::query("SHOW WARNINGS"),
        Pkt::query("BEGIN"),
        Pkt::query("COMMIT"),
        Pkt::query("SELECT 1; SELECT 'two', 2"),
        Pkt::query("SELECT * FROM no_such_table"),
        Pkt::command(b"\x02koha".to_vec()),
        Pkt::command(vec![command::PING]),
        Pkt::command(vec![command::STATISTICS]),
        Pkt::command(b"\x04fuzz_t\0".to_vec()),
        Pkt::command(b"\x16SELECT ? + 1, ? FROM DUAL".to_vec()),
        Pkt::command(execute),
        Pkt::command(cursor),
        Pkt::command(fetch),
        Pkt::command(long_data),
        Pkt::command(with_stmt(command::STMT_RESET)),
        Pkt::command(with_stmt(command::STMT_CLOSE)),
        Pkt::command(vec![command::SET_OPTION, 0, 0]),
        Pkt::command(vec![command::RESET_CONNECTION]),
        vec![
            Pkt::new(
                0,
                b"\x03LOAD DATA LOCAL INFILE 'fuzz.tsv' INTO TABLE koha.fuzz_t".to_vec(),
            ),
            Pkt::new(2, b"7\tseven\n8\teight\n".to_vec()),
            Pkt::new(3, Vec::new()),
        ],
        Pkt::command(change_user),
        Pkt::command(vec![command::QUIT]),
    ]
}

/// Applies 1 to 4 random mutations to `pkts`, splicing from `corpus`; returns their names.
pub(super) fn mutate(
    rng: &mut ChaCha8Rng,
    pkts: &mut Vec<Pkt>,
    corpus: &[Vec<Pkt>],
) -> Vec<&'static str> {
    let mut done = Vec::new();
    for _ in 0..rng.random_range(1..=4) {
        if pkts.is_empty() {
            pkts.push(Pkt::new(0, Vec::new()));
        }
        let i = rng.random_range(0..pkts.len());
        let p = &mut pkts[i];
        let name = match rng.random_range(0..12) {
            0 => {
                for _ in 0..rng.random_range(1..=3) {
                    if !p.payload.is_empty() {
                        let j = rng.random_range(0..p.payload.len());
                        p.payload[j] ^= 1 << rng.random_range(0..8);
                    }
                }
                "bit flip"
            }
            1 => {
                if !p.payload.is_empty() {
                    let j = rng.random_range(0..p.payload.len());
                    p.payload[j] = rng.random();
                }
                "random byte"
            }
            2 => {
                let keep = rng.random_range(0..=p.payload.len());
                p.payload.truncate(keep);
                "truncated packet"
            }
            3 => {
                let announced = p.payload.len() as u32;
                let keep = rng.random_range(0..=p.payload.len());
                p.payload.truncate(keep);
                p.len = Some(announced);
                "truncated payload, header unchanged"
            }
            4 => {
                let copy = p.clone();
                pkts.insert(i, copy);
                "duplicated packet"
            }
            5 => {
                pkts.remove(i);
                "dropped packet"
            }
            6 => {
                p.seq = rng.random();
                "wrong sequence id"
            }
            7 => {
                let delta = rng.random_range(1..=8i64) * if rng.random() { 1 } else { -1 };
                p.len = Some((p.payload.len() as i64 + delta).clamp(0, 0xff_ffff) as u32);
                "wrong length"
            }
            8 => {
                let from = &corpus[rng.random_range(0..corpus.len())];
                let spliced = from[rng.random_range(0..from.len())].clone();
                pkts.insert(i, spliced);
                "spliced packet"
            }
            9 => {
                p.len = Some(if rng.random() {
                    0xff_ffff
                } else {
                    rng.random_range(0x1_0000..0xff_ffff)
                });
                "huge length header"
            }
            10 => {
                pkts.insert(i, Pkt::new(rng.random_range(0..3), Vec::new()));
                "zero-length packet"
            }
            _ => {
                let n = if rng.random_ratio(1, 50) {
                    rng.random_range(1 << 20..5 << 20) // past max_allowed_packet (4M) sometimes
                } else {
                    rng.random_range(1..64)
                };
                let mut junk = vec![0u8; n];
                rng.fill(&mut junk[..]);
                let at = rng.random_range(0..=p.payload.len());
                p.payload.splice(at..at, junk);
                "garbage in payload"
            }
        };
        done.push(name);
    }
    done
}

/// What one fuzzed connection saw.
#[derive(Debug, Default)]
pub(super) struct CaseReport {
    /// Fuzzed before the login (the login itself mutated).
    pub(super) pre_login: bool,
    /// Refused at the greeting with this code (the proxy was full).
    pub(super) refused: Option<u16>,
    /// Bytes sent.
    pub(super) sent: usize,
    /// Bytes the proxy answered.
    pub(super) received: usize,
    /// Error codes in the answers.
    pub(super) codes: Vec<u16>,
    /// From the client's last byte to the proxy's close.
    pub(super) close_after: Duration,
    /// What was sent (for a replay).
    pub(super) bytes: Vec<u8>,
    /// The answer's first MiB (for a replay).
    pub(super) answer: Vec<u8>,
}

/// The RNG of case `case` under `seed` (each case replays alone).
pub(super) fn case_rng(seed: u64, case: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Error codes of the ERR packets in a stream of server packets.
pub(super) fn codes_in(mut bytes: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    while bytes.len() >= 4 {
        let len = bytes[0] as usize | (bytes[1] as usize) << 8 | (bytes[2] as usize) << 16;
        let end = (4 + len).min(bytes.len());
        codes.extend(err_code(&bytes[4..end]));
        bytes = &bytes[end..];
    }
    codes
}

/// One fuzzed connection: greeting, then either a mutated login followed by commands, or
/// a valid login followed by mutated commands; everything is written (in random pieces)
/// while the answers are read, then the client half-closes and the proxy must close the
/// connection within `CLOSE_BOUND`.
pub(super) async fn fuzz_case(
    port: u16,
    seed: u64,
    case: u64,
    close_bound: Duration,
) -> Result<CaseReport, String> {
    let mut rng = case_rng(seed, case);
    let mut report = CaseReport {
        pre_login: rng.random_bool(0.4),
        ..CaseReport::default()
    };
    let (mut s, greeting) = match greet(port).await {
        Ok(g) => g,
        Err(LoginFail::Refused(code, _)) => {
            report.refused = Some(code);
            return Ok(report);
        }
        Err(LoginFail::Broken(e)) => return Err(e),
    };
    let corpus = corpus(&greeting.scramble);
    let mut pkts = Vec::new();
    if report.pre_login {
        let login = login_payload(&greeting, "koha", "koha", rng.random());
        pkts.push(Pkt::new(1, login));
    } else {
        let login = login_payload(&greeting, "koha", "koha", false);
        let reply = tokio::time::timeout(LOGIN_BOUND, async {
            s.write_all(&packet(1, &login)).await.ok()?;
            read_packet(&mut s).await
        })
        .await;
        match reply {
            Ok(Some((_, r))) if r.first() == Some(&0) => {}
            other => return Err(format!("a valid login was not accepted: {other:?}")),
        }
    }
    for _ in 0..rng.random_range(1..=6) {
        pkts.extend(corpus[rng.random_range(0..corpus.len())].iter().cloned());
    }
    let mutations = mutate(&mut rng, &mut pkts, &corpus);
    let mut bytes = encode(&pkts);
    if rng.random_ratio(1, 10) {
        let cut = rng.random_range(0..=bytes.len());
        bytes.truncate(cut);
    }
    report.sent = bytes.len();
    let pieces = rng.random_range(1..=4);
    let mut cuts: Vec<usize> = (1..pieces)
        .map(|_| rng.random_range(0..=bytes.len()))
        .collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());

    let (mut r, mut w) = s.into_split();
    let writer = async {
        let mut from = 0;
        for to in cuts {
            if w.write_all(&bytes[from..to]).await.is_err() {
                break; // the proxy closed first
            }
            from = to;
            tokio::task::yield_now().await;
        }
        let _ = w.shutdown().await;
        Instant::now()
    };
    let reader = async {
        let mut got = Vec::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return (got, total, Instant::now()),
                Ok(n) => {
                    total += n;
                    if got.len() < 1 << 20 {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    };
    let both = tokio::time::timeout(LOGIN_BOUND + close_bound, async {
        tokio::join!(writer, reader)
    })
    .await;
    let describe = || {
        format!(
            "{} stream, mutations {mutations:?}, first bytes {:02x?}",
            if report.pre_login {
                "pre-login"
            } else {
                "post-login"
            },
            &bytes[..bytes.len().min(96)]
        )
    };
    let Ok((written, (got, total, closed))) = both else {
        return Err(format!(
            "connection neither closed nor finished: {}",
            describe()
        ));
    };
    report.close_after = closed.saturating_duration_since(written);
    if report.close_after > close_bound {
        return Err(format!(
            "closed only {:?} after the client's last byte: {}",
            report.close_after,
            describe()
        ));
    }
    report.received = total;
    report.codes = codes_in(&got);
    report.bytes = bytes;
    report.answer = got;
    Ok(report)
}

/// Totals of a fuzzing run.
#[derive(Debug, Default)]
pub(super) struct FuzzTotals {
    /// Connections fuzzed before the login.
    pub(super) pre_login: u64,
    /// Connections fuzzed after a valid login.
    pub(super) post_login: u64,
    /// Connections refused at the greeting, by code.
    pub(super) refused: BTreeMap<u16, u64>,
    /// Error codes the proxy (or the server through it) answered.
    pub(super) codes: BTreeMap<u16, u64>,
    /// Bytes sent.
    pub(super) sent: u64,
    /// Bytes received.
    pub(super) received: u64,
    /// The slowest close after the client's last byte, and its case.
    pub(super) slowest_close: Duration,
    pub(super) slowest_case: u64,
    /// Failed cases: (case, what went wrong).
    pub(super) failures: Vec<(u64, String)>,
}

/// Runs the fuzzer: `FUZZ_TASKS` connections at a time until `settings.fuzz_conns`
/// connections or `settings.fuzz_secs` seconds.
pub(super) async fn fuzz(port: u16, settings: Settings) -> FuzzTotals {
    let next = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Mutex::new(FuzzTotals::default()));
    let end = Instant::now() + Duration::from_secs(settings.fuzz_secs);
    let mut tasks = Vec::new();
    for _ in 0..FUZZ_TASKS {
        let (next, totals) = (next.clone(), totals.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let case = next.fetch_add(1, Ordering::Relaxed);
                if case >= settings.fuzz_conns {
                    break;
                }
                let result = fuzz_case(port, settings.seed, case, CLOSE_BOUND).await;
                let mut t = totals.lock().unwrap();
                match result {
                    Ok(r) => {
                        if let Some(code) = r.refused {
                            *t.refused.entry(code).or_default() += 1;
                            continue;
                        }
                        if r.pre_login {
                            t.pre_login += 1;
                        } else {
                            t.post_login += 1;
                        }
                        for c in r.codes {
                            *t.codes.entry(c).or_default() += 1;
                        }
                        t.sent += r.sent as u64;
                        t.received += r.received as u64;
                        if r.close_after > t.slowest_close {
                            t.slowest_close = r.close_after;
                            t.slowest_case = case;
                        }
                    }
                    Err(e) => t.failures.push((case, e)),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("fuzzing task panicked");
    }
    let mut totals = totals.lock().unwrap();
    std::mem::take(&mut *totals)
}

/// Replays fuzzing cases (`KOHAPROXY_FUZZ_CASE=57,77` with the failing run's seed) one
/// by one, through the proxy and directly against the master, waiting up to 60 s for each
/// close, and prints what each sent and answered.
pub(super) async fn replay(env: &Env, seed: u64, cases: &str) {
    for case in cases
        .split(',')
        .map(|c| c.trim().parse::<u64>().expect("case number"))
    {
        for (route, port) in [("proxy", env.proxy_port()), ("direct", env.master_port())] {
            match fuzz_case(port, seed, case, Duration::from_secs(60)).await {
                Ok(r) => println!(
                    "case {case} {route}: closed {:?} after the last byte; codes {:?}\n  sent \
                     {:02x?}\n  answer {:02x?}",
                    r.close_after,
                    r.codes,
                    &r.bytes[..r.bytes.len().min(2048)],
                    &r.answer[..r.answer.len().min(2048)]
                ),
                Err(e) => println!("case {case} {route}: {e}"),
            }
        }
    }
}

/// LOAD DATA LOCAL INFILE whose file ends with an empty packet of the wrong sequence id:
/// the proxy answers 1156 and closes within 5 s; returns how long the close took.
pub(super) async fn load_data_out_of_order(port: u16) -> Duration {
    let mut s = raw_login(port, "koha", "koha")
        .await
        .unwrap_or_else(|e| panic!("login: {e:?}"));
    s.write_all(&packet(
        0,
        b"\x03LOAD DATA LOCAL INFILE 'f.tsv' INTO TABLE koha.fuzz_t",
    ))
    .await
    .unwrap();
    let (seq, request) = read_packet(&mut s).await.expect("LOCAL INFILE request");
    assert_eq!(request.first(), Some(&0xfb), "not a LOCAL INFILE request");
    let mut file = packet(seq.wrapping_add(1), b"1\tone\n");
    file.extend(packet(seq.wrapping_add(9), b""));
    s.write_all(&file).await.unwrap();
    let start = Instant::now();
    let (_, reply) = tokio::time::timeout(Duration::from_secs(5), read_packet(&mut s))
        .await
        .expect("no answer within 5 s to a LOCAL INFILE packet out of order")
        .expect("closed without an error");
    assert_eq!(err_code(&reply), Some(1156), "{reply:?}");
    closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("still open 5 s after error 1156");
    start.elapsed()
}

/// COM_PROCESS_INFO (answered with a result set, as SHOW PROCESSLIST) then COM_PING: the
/// whole result set arrives, then the ping's OK, each within 5 s; returns the rows.
pub(super) async fn process_info_then_ping(port: u16) -> usize {
    let mut s = raw_login(port, "koha", "koha")
        .await
        .unwrap_or_else(|e| panic!("login: {e:?}"));
    let within = |what: &'static str| {
        move |r: Result<Option<(u8, Vec<u8>)>, tokio::time::error::Elapsed>| {
            r.unwrap_or_else(|_| panic!("{what}: nothing within 5 s"))
                .unwrap_or_else(|| panic!("{what}: closed"))
        }
    };
    let bound = Duration::from_secs(5);
    s.write_all(&packet(0, &[0x0a])).await.unwrap();
    let (_, count) = within("column count")(tokio::time::timeout(bound, read_packet(&mut s)).await);
    assert!(
        err_code(&count).is_none(),
        "COM_PROCESS_INFO refused: {count:?}"
    );
    for _ in 0..count[0] {
        within("column definition")(tokio::time::timeout(bound, read_packet(&mut s)).await);
    }
    // DEPRECATE_EOF (raw::MODERN): the rows end with an OK starting 0xfe.
    let mut rows = 0;
    loop {
        let (_, p) = within("rows")(tokio::time::timeout(bound, read_packet(&mut s)).await);
        if p.first() == Some(&0xfe) {
            break;
        }
        rows += 1;
    }
    s.write_all(&packet(0, &[command::PING])).await.unwrap();
    let (seq, ok) = within("ping")(tokio::time::timeout(bound, read_packet(&mut s)).await);
    assert_eq!(
        (seq, ok.first()),
        (1, Some(&0)),
        "the ping's answer: {ok:?}"
    );
    rows
}
