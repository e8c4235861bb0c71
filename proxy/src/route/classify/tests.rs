use super::*;

fn route(sql: &str) -> Route {
    classify(sql.as_bytes()).route
}

/// Plain reads: may run on a replica.
const READS: &[&str] = &[
    "SELECT 1",
    "select 1",
    "SeLeCt @@server_id",
    "  \t\r\n\x0cSELECT 1",
    "SELECT 1;",
    "SELECT 1 ;  -- done",
    "SELECT 1; /* trailing */ ",
    "/* leading */ SELECT 1",
    "-- leading\nSELECT 1",
    "# leading\nSELECT 1",
    "SELECT /* inside */ 1",
    "SELECT 1 # trailing",
    "SELECT 1 -- trailing",
    "SELECT 1--1",
    "(SELECT 1)",
    "((SELECT a FROM t))",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT a FROM t UNION ALL SELECT b FROM u",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "SELECT `update`, `delete`, `insert` FROM t",
    "SELECT t.delete, t.update, t.set FROM t",
    "SELECT 'FOR UPDATE', \"INSERT INTO x\", 'a;b' FROM t",
    "SELECT 'it''s', 'a\\'b', \"q\"\"q\" FROM t",
    "SELECT 'a */ b' /* c */",
    "SELECT COUNT(*), SUM(a), MAX(b), GROUP_CONCAT(c SEPARATOR ',') FROM t GROUP BY d",
    "SELECT CONCAT(firstname, ' ', surname), IFNULL(a, 0), COALESCE(a, b) FROM borrowers",
    "SELECT REPLACE(title, 'a', 'b'), INSERT('abc', 1, 1, 'x'), TRUNCATE(1.55, 1)",
    "SELECT CAST(a AS CHAR CHARACTER SET utf8mb4), CONVERT(b USING utf8mb4) FROM t",
    "SELECT CAST(p AS DECIMAL(10,2)), CAST(d AS DATETIME(3)) FROM t",
    "SELECT DATE_SUB(NOW(), INTERVAL 1 DAY), TO_DAYS(CURDATE()) - TO_DAYS(date_due) FROM issues",
    "SELECT * FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
    "SELECT * FROM t FORCE INDEX (idx) WHERE a = 1",
    "SELECT * FROM t USE INDEX (idx), u IGNORE INDEX (i2)",
    "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t",
    "SELECT @x, @`y`, @'z' FROM t",
    "SELECT @@session.sql_mode, @@GLOBAL.read_only, @@server_id",
    "SELECT * FROM t WHERE title = 'caf\u{e9}' AND x = _utf8mb4'\u{1F4DA}'",
    "SELECT a FROM t WHERE b LIKE 'x%' ORDER BY c DESC LIMIT 10 OFFSET 5",
    "SELECT JSON_EXTRACT(j, '$.a'), JSON_VALUE(j, '$.b') FROM t",
    "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (a INT PATH '$')) AS jt",
    "SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t",
    "SELECT a_session FROM sessions WHERE id = '8f14e45fceea167a5a36dedd4bea2543'",
    "SELECT value FROM systempreferences WHERE variable = 'OPACBaseURL'",
    "SELECT issues.*, items.barcode, biblio.title FROM issues LEFT JOIN items USING (itemnumber) \
     LEFT JOIN biblio ON biblio.biblionumber = items.biblionumber WHERE issues.borrowernumber = 5",
    "SELECT me.borrowernumber, me.cardnumber FROM borrowers me WHERE ( me.userid = 'koha' )",
    "SELECT SQL_NO_CACHE 1",
    "SELECT 1 FROM DUAL",
    "SELECT 1.5, -2, 0x1F, x'41', b'101'",
    "SELECT UUID(), RAND(), SLEEP(0)",
    "SELECT VERSION(), DATABASE(), USER(), CURRENT_USER",
];

/// Statements that must run on the master.
const MASTER: &[&str] = &[
    "INSERT INTO t VALUES (1)",
    "insert into t values (1)",
    "/* SELECT */ INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "REPLACE INTO t VALUES (1)",
    "CREATE TABLE t (a INT)",
    "ALTER TABLE t ADD b INT",
    "DROP TABLE t",
    "TRUNCATE t",
    "CALL p()",
    "DO 1",
    "BEGIN",
    "START TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "SET NAMES utf8mb4",
    "SET sql_mode = ''",
    "USE koha",
    "SHOW TABLES",
    "SHOW PROCESSLIST",
    "DESCRIBE t",
    "EXPLAIN SELECT 1",
    "LOCK TABLES t READ",
    "UNLOCK TABLES",
    "FLUSH TABLES",
    "ANALYZE TABLE t",
    "KILL 5",
    "VALUES (1), (2)",
    "TABLE t",
    "HELP 'x'",
    "",
    "   ",
    "/* only a comment */",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t for update",
    "SELECT * FROM t WHERE a = 1 FOR UPDATE SKIP LOCKED",
    "SELECT * FROM t LOCK IN SHARE MODE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t /*!50000 FOR UPDATE */",
    "SELECT * FROM t /*M!100301 FOR UPDATE */",
    "SELECT 1 /*! INTO @x */",
    "SELECT a INTO @x FROM t",
    "SELECT a FROM t INTO OUTFILE '/tmp/x'",
    "SELECT a FROM t INTO DUMPFILE '/tmp/x'",
    "SELECT @x := 1",
    "SELECT @x:=a FROM t",
    "SELECT GET_LOCK('a', 1)",
    "SELECT RELEASE_LOCK('a')",
    "SELECT RELEASE_ALL_LOCKS()",
    "SELECT IS_FREE_LOCK('a'), IS_USED_LOCK('a')",
    "SELECT LAST_INSERT_ID()",
    "SELECT last_insert_id ( )",
    "SELECT FOUND_ROWS()",
    "SELECT ROW_COUNT()",
    "SELECT NEXTVAL(s)",
    "SELECT SETVAL(s, 5)",
    "SELECT LASTVAL(s)",
    "SELECT NEXT VALUE FOR s",
    "SELECT PREVIOUS VALUE FOR s",
    "SELECT CONNECTION_ID()",
    "SELECT MASTER_GTID_WAIT('0-1-1')",
    "SELECT MASTER_POS_WAIT('f', 4)",
    "SELECT LOAD_FILE('/etc/passwd')",
    "SELECT my_function(1)",
    "SELECT koha.my_function(1)",
    "SELECT `koha`.`f`(1)",
    "SELECT @@last_insert_id",
    "SELECT @@identity",
    "SELECT @@session.insert_id",
    "SELECT @@last_gtid",
    "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 5",
    "SELECT 1; SELECT 2",
    "SELECT 1; DELETE FROM t",
    "SELECT 1;DELETE FROM t;",
    "SELECT 1 -- x\n; DELETE FROM t",
    "WITH x AS (SELECT 1) DELETE FROM t",
    "WITH x AS (SELECT 1) UPDATE t SET a = 1",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    "SELECT * FROM t WHERE a = (SELECT NEXTVAL(s))",
    "SELECT REPLACE INTO t",
    "SELECT a FROM t UNION SELECT GET_LOCK('x', 0)",
    "SELECT 1 FROM t --\nFOR UPDATE",
    "(SELECT a FROM t FOR UPDATE)",
];

#[test]
fn plain_reads_may_go_to_replicas() {
    for sql in READS {
        assert_eq!(route(sql), Route::Read, "{sql:?}");
    }
}

#[test]
fn everything_else_goes_to_the_master() {
    for sql in MASTER {
        assert_eq!(route(sql), Route::Master, "{sql:?}");
    }
}

#[test]
fn no_disguise_turns_a_master_statement_into_a_read() {
    let disguises: &[(&str, &str)] = &[
        ("/* c */ ", ""),
        ("", " /* c */"),
        ("-- c\n", ""),
        ("# c\n", ""),
        ("\t\r\n ", "\n\t;"),
        ("/*+ hint */ ", ""),
        ("", ";   "),
    ];
    // (An unterminated comment closed by the disguise is a different statement.)
    for sql in MASTER.iter().filter(|s| !s.contains("/* unterminated")) {
        for (before, after) in disguises {
            for text in [sql.to_string(), sql.to_lowercase(), sql.to_uppercase()] {
                let t = format!("{before}{text}{after}");
                assert_ne!(route(&t), Route::Read, "{t:?}");
            }
        }
    }
}

#[test]
fn diagnostics_follow_the_previous_statement() {
    for sql in [
        "SHOW WARNINGS",
        "show errors",
        "SHOW WARNINGS LIMIT 5",
        "SHOW COUNT(*) WARNINGS",
        "SHOW COUNT(*) ERRORS",
        "SELECT @@warning_count",
        "SELECT @@session.error_count, @@warning_count",
    ] {
        assert_eq!(route(sql), Route::Previous, "{sql:?}");
    }
    assert_eq!(
        route("SELECT @@warning_count, LAST_INSERT_ID()"),
        Route::Master
    );
}

#[test]
fn what_pins_the_session() {
    for sql in [
        "CREATE TEMPORARY TABLE t (a INT)",
        "create temporary table if not exists t select 1",
        "SELECT GET_LOCK('x', 10)",
        "DO GET_LOCK('x', 10)",
        "LOCK TABLES t WRITE",
        "HANDLER t OPEN",
        "PREPARE s FROM 'SELECT 1'",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t",
        "SELECT @a := 1",
        "UPDATE t SET a = (@x := a + 1)",
        "SELECT a INTO @v FROM t",
        "SET @a = (SELECT COUNT(*) FROM t)",
        "SET @a = @b + 1",
        "SET @a = NOW()",
        "SET @a = 1, @b = CONCAT('x', 'y')",
        "CALL p()",
        "SELECT 1; SELECT 2",
    ] {
        assert!(classify(sql.as_bytes()).pin, "{sql:?} must pin");
    }
    for sql in [
        "SELECT 1",
        "SELECT RELEASE_LOCK('x')",
        "SET NAMES utf8mb4",
        "SET @a = 1",
        "INSERT INTO t VALUES (1)",
        "SELECT FOUND_ROWS()",
        "SELECT 'CREATE TEMPORARY TABLE'",
    ] {
        assert!(!classify(sql.as_bytes()).pin, "{sql:?} must not pin");
    }
}

#[test]
fn literal_user_variables_are_replayed() {
    for sql in [
        "SET @a = 1",
        "SET @a := 1",
        "set @a=-12.5",
        "SET @a = 'x', @b = \"y\"",
        "SET @a = NULL, @b = TRUE, @c = false",
        "SET @a = _utf8mb4'\u{1F4DA}'",
        "SET @a = x'4142', @b = 0x41, @c = b'101'",
        "SET @`weird name` = 1",
        "SET @a = 1, sql_mode = 'ANSI'",
        "SET sql_mode = 'ANSI', @a = 'x'",
    ] {
        let c = classify(sql.as_bytes());
        assert!(c.replay && !c.pin, "{sql:?}: {c:?}");
        assert_eq!(c.route, Route::Master, "{sql:?}");
    }
    for sql in [
        "SET sql_mode = 'ANSI'",
        "SET NAMES utf8mb4",
        "SET GLOBAL max_connections = 10",
        "SET @@session.time_zone = '+00:00'",
        "SET SESSION wait_timeout = 10",
        "SET STATEMENT max_statement_time = 1 FOR SELECT 1",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET @a = (SELECT 1)",
    ] {
        assert!(!classify(sql.as_bytes()).replay, "{sql:?}");
    }
}

#[test]
fn read_only_transactions_are_recognised() {
    for sql in [
        "START TRANSACTION READ ONLY",
        "start transaction read only",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
    ] {
        let c = classify(sql.as_bytes());
        assert!(c.read_only_transaction, "{sql:?}");
        assert_eq!(c.route, Route::Master);
    }
    for sql in [
        "START TRANSACTION",
        "START TRANSACTION READ WRITE",
        "BEGIN",
        "SELECT 'READ ONLY'",
    ] {
        assert!(!classify(sql.as_bytes()).read_only_transaction, "{sql:?}");
    }
}

#[test]
fn hints_are_read_from_comments_only() {
    let hint = |sql: &str| classify(sql.as_bytes()).hint;
    assert_eq!(hint("/* kohaproxy:master */ SELECT 1"), Some(Hint::Master));
    assert_eq!(
        hint("SELECT 1 /*  KohaProxy:Replica  */"),
        Some(Hint::Replica)
    );
    assert_eq!(
        hint("SELECT /* kohaproxy:replica */ LAST_INSERT_ID()"),
        Some(Hint::Replica)
    );
    assert_eq!(hint("SELECT '/* kohaproxy:master */'"), None);
    assert_eq!(hint("SELECT 1 -- kohaproxy:master"), None);
    assert_eq!(hint("SELECT 1"), None);
    // The hint is reported, the route stays the classifier's own.
    assert_eq!(route("/* kohaproxy:master */ SELECT 1"), Route::Read);
}

#[test]
fn bytes_that_are_not_utf8_are_classified() {
    let mut sql = b"SELECT * FROM t WHERE b = '".to_vec();
    sql.extend_from_slice(&[0xff, 0xfe, 0x00, b'\'', b'\'', 0x80]);
    sql.extend_from_slice(b"'");
    assert_eq!(classify(&sql).route, Route::Read);
    let mut write = b"UPDATE t SET b = '".to_vec();
    write.extend_from_slice(&[0xff, 0x00]);
    write.extend_from_slice(b"'");
    assert_eq!(classify(&write).route, Route::Master);
}

#[test]
fn the_builtin_list_is_sorted_for_binary_search() {
    assert!(BUILTINS.windows(2).all(|w| w[0] < w[1]));
    assert!(is_builtin(b"concat") && is_builtin(b"Char_Length") && is_builtin(b"YEARWEEK"));
    assert!(!is_builtin(b"GET_LOCK") && !is_builtin(b"LAST_INSERT_ID") && !is_builtin(b""));
}
