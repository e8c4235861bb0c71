//! The healthy session that must see no error while hostile clients run beside it.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// The healthy session.
// ---------------------------------------------------------------------------------------

/// What the healthy session saw.
#[derive(Debug, Default)]
pub(super) struct HealthLog {
    /// Statements answered.
    pub(super) statements: u64,
    /// The slowest statement since the last check.
    pub(super) slowest: Duration,
    /// The slowest statement of the whole run.
    pub(super) slowest_ever: Duration,
    /// Errors (and statements over the bound), with the phase they happened in.
    pub(super) errors: Vec<String>,
    /// The phase under way (for the messages).
    pub(super) phase: String,
}

impl HealthLog {
    /// Panics, with the proxy's log, if the session saw an error.
    fn assert_undisturbed(&self, env: &Env) {
        assert!(
            self.errors.is_empty(),
            "the healthy session was disturbed: {:?}\n{}",
            self.errors,
            env.proxy_log()
        );
    }
}

/// A well-behaved client (mysql_async as root on its own table) doing INSERT + SELECT in
/// a loop beside the hostile ones, timing every statement.
pub(super) struct Healthy {
    /// What it saw, shared with its task.
    pub(super) log: Arc<Mutex<HealthLog>>,
    /// Set to end the loop.
    pub(super) stop: Arc<AtomicBool>,
    /// The loop.
    pub(super) task: tokio::task::JoinHandle<()>,
    /// Statements counted at the last check.
    pub(super) last_count: u64,
}

impl Healthy {
    /// Opens the session (creates its table) and starts the loop.
    pub(super) async fn start(env: &Env) -> Healthy {
        let opts = Env::opts(env.proxy_port(), "root", "", None);
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("healthy session login");
        conn.query_drop("CREATE DATABASE healthy").await.unwrap();
        conn.query_drop(
            "CREATE TABLE healthy.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))",
        )
        .await
        .unwrap();
        let log = Arc::new(Mutex::new(HealthLog {
            phase: "start".into(),
            ..HealthLog::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(Healthy::run(conn, log.clone(), stop.clone()));
        Healthy {
            log,
            stop,
            task,
            last_count: 0,
        }
    }

    /// The loop: an INSERT and a SELECT every 20 ms (paced, so that it does not take a
    /// core of this 2-core box away from the proxy), each within `STATEMENT_BOUND`.
    pub(super) async fn run(
        mut conn: mysql_async::Conn,
        log: Arc<Mutex<HealthLog>>,
        stop: Arc<AtomicBool>,
    ) {
        let mut n = 0u64;
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            n += 1;
            let insert = format!("INSERT INTO healthy.t (v) VALUES ('row {n}')");
            let select = "SELECT COUNT(*), MAX(id) FROM healthy.t";
            for (what, sql) in [("INSERT", insert.as_str()), ("SELECT", select)] {
                let start = Instant::now();
                let result = tokio::time::timeout(STATEMENT_BOUND, async {
                    if what == "INSERT" {
                        conn.query_drop(sql).await
                    } else {
                        conn.query_first::<(i64, i64), _>(sql).await.map(|_| ())
                    }
                })
                .await;
                let took = start.elapsed();
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(Ok(())) => {
                        l.statements += 1;
                        l.slowest = l.slowest.max(took);
                        l.slowest_ever = l.slowest_ever.max(took);
                    }
                    Ok(Err(e)) => {
                        let msg = format!("{what} failed during {}: {e}", l.phase);
                        l.errors.push(msg);
                        return;
                    }
                    Err(_) => {
                        let msg = format!(
                            "{what} did not answer within {STATEMENT_BOUND:?} during {}",
                            l.phase
                        );
                        l.errors.push(msg);
                        return;
                    }
                }
            }
        }
        let _ = conn.disconnect().await;
    }

    /// Names the phase that starts (for error messages).
    pub(super) fn phase(&self, name: &str) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.phase = name.to_string();
        l.slowest = Duration::ZERO;
    }

    /// Panics if the session saw an error, or if it does not answer one more statement
    /// (polled, within `STATEMENT_BOUND`) after the last check; prints its figures.
    pub(super) async fn check(&mut self, phase: &str, env: &Env) {
        let start = Instant::now();
        loop {
            let (statements, slowest) = {
                let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
                l.assert_undisturbed(env);
                (l.statements, l.slowest)
            };
            if statements > self.last_count {
                println!(
                    "  healthy session: {} statements during {phase}, slowest {slowest:?}",
                    statements - self.last_count
                );
                self.last_count = statements;
                return;
            }
            assert!(
                start.elapsed() < STATEMENT_BOUND,
                "the healthy session answered nothing for {STATEMENT_BOUND:?} after {phase}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the loop and checks it one last time; returns (statements, slowest).
    pub(super) async fn finish(mut self, env: &Env) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(STATEMENT_BOUND * 3, &mut self.task)
            .await
            .expect("the healthy session did not stop")
            .expect("the healthy session panicked");
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.assert_undisturbed(env);
        (l.statements, l.slowest_ever)
    }
}

/// A new koha login through the proxy answers SELECT 1 within `LOGIN_BOUND`.
pub(super) async fn fresh_login(env: &Env) -> Result<(), String> {
    tokio::time::timeout(LOGIN_BOUND, async {
        let mut c = mysql_async::Conn::new(env.proxy_opts())
            .await
            .map_err(|e| e.to_string())?;
        let one: Option<i64> = c.query_first("SELECT 1").await.map_err(|e| e.to_string())?;
        c.disconnect().await.map_err(|e| e.to_string())?;
        if one == Some(1) {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {one:?}"))
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {LOGIN_BOUND:?}")))
}
