//! The classifier's table of statements and what they classify as, and its property
//! tests.

use super::words::*;

use super::*;

const READ: Class = Class {
    route: Route::Read,
    pin: false,
    replay: false,
    starts: None,
    hint: None,
};
const PREVIOUS: Class = Class {
    route: Route::Previous,
    ..READ
};
const MASTER_ONLY: Class = MASTER;
const PINNED: Class = Class {
    pin: true,
    ..MASTER
};
const REPLAYED: Class = Class {
    replay: true,
    ..MASTER
};
const BEGINS: Class = Class {
    starts: Some(TransactionStart::ReadWrite),
    ..MASTER
};
const READ_ONLY_TRANSACTION: Class = Class {
    starts: Some(TransactionStart::ReadOnly),
    ..MASTER
};

const fn hinted(class: Class, hint: Hint) -> Class {
    Class {
        hint: Some(hint),
        ..class
    }
}

/// Statements and what they must classify as.
const CASES: &[(&str, Class)] = &[
    // Plain reads, with whitespace, comments and case variants around them.
    ("SELECT 1", READ),
    ("select 1", READ),
    ("SeLeCt 1", READ),
    (" \t\r\n\x0b\x0cSELECT\t1\r\n", READ),
    ("SELECT 1;", READ),
    ("SELECT 1 ;  \n", READ),
    ("SELECT 1; -- done", READ),
    ("SELECT 1; /* done */ ", READ),
    ("SELECT 1;# done", READ),
    ("SELECT 1;\n-- done\n/* really */", READ),
    ("/* leading */ SELECT 1", READ),
    ("/* one */ /* two */\n-- three\n# four\nSELECT 1", READ),
    ("-- leading\nSELECT 1", READ),
    ("--\tleading\nSELECT 1", READ),
    ("# leading\nSELECT 1", READ),
    ("SELECT/**/1", READ),
    ("SELECT /*+ NO_RANGE_OPTIMIZATION(t) */ * FROM t", READ),
    ("(SELECT 1)", READ),
    ("((SELECT 1))", READ),
    ("( /* c */ SELECT a FROM t) ORDER BY a", READ),
    ("(SELECT 1) UNION (SELECT 2)", READ),
    ("SELECT 1 UNION ALL SELECT 2 UNION (SELECT 3)", READ),
    ("SELECT a FROM t EXCEPT (SELECT a FROM u) INTERSECT SELECT 1", READ),
    // Common table expressions.
    ("WITH x AS (SELECT 1) SELECT * FROM x", READ),
    ("with x as (select 1) select * from x;", READ),
    (
        "WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 10) SELECT n FROM seq",
        READ,
    ),
    ("WITH a AS (SELECT 1 AS v), b (w) AS (SELECT v FROM a) SELECT * FROM b", READ),
    ("WITH `x` AS (SELECT 1) (SELECT * FROM `x`)", READ),
    ("(WITH x AS (SELECT 1) SELECT * FROM x)", READ),
    // Keyword-like names that are not keywords.
    ("SELECT `update` FROM t", READ),
    ("SELECT `delete`, `insert`, `set` FROM `lock`", READ),
    ("SELECT t.delete FROM t", READ),
    ("SELECT t.`insert`, t.set, t . update FROM t", READ),
    ("SELECT value FROM systempreferences WHERE variable = 'version'", READ),
    // Keywords inside strings and comments.
    ("SELECT 'FOR UPDATE' FROM t", READ),
    ("SELECT 'a;b' FROM t", READ),
    ("SELECT 'x'; ", READ),
    ("SELECT \"INSERT INTO t VALUES (1)\" AS q", READ),
    ("SELECT 'it''s', 'a\\'b', \"say \\\"hi\\\"\", \"\"\"\"", READ),
    ("SELECT '*/' FROM t", READ),
    ("SELECT '/*' FROM t WHERE a = '-- x' OR b = '#'", READ),
    ("SELECT 1 -- FOR UPDATE", READ),
    ("SELECT 1 # FOR UPDATE\n", READ),
    ("SELECT 1 /* FOR UPDATE; DELETE FROM t */", READ),
    ("SELECT 1 /* INTO @a */ FROM t", READ),
    ("SELECT 1--1", READ),
    ("SELECT 1 --x", READ),
    ("SELECT 1 ---1", READ),
    ("SELECT a FROM t WHERE b = 'a\\\\' AND c = 1", READ),
    ("SELECT surname FROM borrowers WHERE surname = 'O\\'Brien'", READ),
    ("SELECT surname FROM borrowers WHERE surname = 'O''Brien'", READ),
    ("SELECT `we``ird` FROM t", READ),
    ("SELECT 1 /*!50000 + 1 */", READ),
    ("SELECT 1 /*M!100301 + 1 */", READ),
    ("SELECT 1 /*!+ 1 */ FROM t", READ),
    ("SELECT 1 /*! /* nested */ + 1 */", READ),
    // Functions from the allowlist, and syntax followed by a parenthesis.
    ("SELECT COUNT(*) FROM issues WHERE borrowernumber = 42", READ),
    ("SELECT count (*) FROM t", READ),
    ("SELECT COUNT/* x */(*) FROM t", READ),
    ("SELECT CONCAT(firstname, ' ', surname) FROM borrowers", READ),
    ("SELECT INSERT('abc', 1, 1, 'x')", READ),
    ("SELECT REPLACE(title, 'a', 'b') FROM biblio", READ),
    ("SELECT TRUNCATE(1.55, 1), MOD(7, 2), 7 DIV 2", READ),
    ("SELECT DATE_FORMAT(NOW(), '%Y'), CURDATE(), UNIX_TIMESTAMP()", READ),
    ("SELECT IF(a > 1, 'x', 'y'), IFNULL(b, 0), COALESCE(c, d) FROM t", READ),
    ("SELECT LEFT(a, 2), RIGHT(a, 2) FROM t LEFT JOIN u ON (t.id = u.id)", READ),
    ("SELECT UUID(), RAND(), SLEEP(0), MD5('x'), SHA2('x', 256)", READ),
    ("SELECT VERSION(), DATABASE(), USER(), CURRENT_USER", READ),
    ("SELECT JSON_EXTRACT(j, '$.a'), JSON_SET(j, '$.b', 1) FROM t", READ),
    (
        "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (v INT PATH '$', s VARCHAR(10) PATH '$')) AS jt",
        READ,
    ),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", READ),
    ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", READ),
    ("SELECT * FROM t WHERE a = ANY (SELECT b FROM u) OR a = ALL (SELECT 1)", READ),
    ("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))", READ),
    ("SELECT * FROM t USE INDEX (idx) WHERE a = 1", READ),
    ("SELECT * FROM t FORCE INDEX FOR ORDER BY (idx) IGNORE KEY (k) ORDER BY a", READ),
    ("SELECT * FROM t PARTITION (p0)", READ),
    ("SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t", READ),
    ("SELECT a FROM t WINDOW w AS (ORDER BY a)", READ),
    ("SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY a) OVER () FROM t", READ),
    ("SELECT CAST(price AS DECIMAL(10,2)), CONVERT(title USING utf8mb4) FROM t", READ),
    ("SELECT CAST(x AS CHAR(10) CHARACTER SET utf8mb4) FROM t", READ),
    ("SELECT CONVERT(x, DATETIME(6)), BINARY(x) FROM t", READ),
    ("SELECT a FROM t1 JOIN t2 USING (id) LEFT JOIN (t3) ON (t3.id = t1.id)", READ),
    ("SELECT DATE_ADD(d, INTERVAL 1 DAY) FROM t WHERE d > NOW() - INTERVAL (3) DAY", READ),
    ("SELECT MATCH (title) AGAINST ('koha' IN BOOLEAN MODE) FROM biblio", READ),
    ("SELECT SUBSTRING(x FROM 2 FOR 3), TRIM(LEADING 'x' FROM y) FROM t", READ),
    ("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 00:00:00'", READ),
    ("SELECT * FROM (VALUES (1), (2)) AS v", READ),
    ("SELECT GROUP_CONCAT(DISTINCT a ORDER BY a SEPARATOR ',') FROM t GROUP BY b", READ),
    ("SELECT DISTINCT(a) FROM t", READ),
    ("SELECT a, CASE WHEN (b > 1) THEN (c) ELSE (d) END FROM t", READ),
    ("SELECT a FROM t WHERE b BETWEEN (1) AND (2) OR NOT (c) XOR (d)", READ),
    ("SELECT a FROM t GROUP BY (a) HAVING (COUNT(*) > 1)", READ),
    ("SELECT 1 FROM t1 STRAIGHT_JOIN t2 WHERE a LIKE ('x%') AND b REGEXP ('^a')", READ),
    ("SELECT a FROM t WHERE b = 'x' LIMIT 10 OFFSET 20", READ),
    ("SELECT SQL_NO_CACHE HIGH_PRIORITY a FROM t", READ),
    ("SELECT x'4142', b'01', 0x41, N'x', _utf8mb4'x' COLLATE utf8mb4_bin", READ),
    ("SELECT 1.5e-3, .5, 1e10, 3-2, -1", READ),
    ("SELECT 1 FROM DUAL WHERE 1 = 0", READ),
    // Variables.
    ("SELECT @x", READ),
    ("SELECT * FROM t WHERE a = @x AND b = @`y` AND c = @'z'", READ),
    ("SELECT @@server_id, @@session.sql_mode, @@global.read_only, @@SQL_MODE", READ),
    ("SELECT @@warning_count", PREVIOUS),
    ("select @@WARNING_COUNT;", PREVIOUS),
    ("SELECT @@session.error_count, @@warning_count", PREVIOUS),
    // Hints.
    ("SELECT 1 /* kohaproxy:replica */", hinted(READ, Hint::Replica)),
    ("/* KohaProxy:Master */ SELECT 1", hinted(READ, Hint::Master)),
    ("/*kohaproxy:master*/SELECT 1", hinted(READ, Hint::Master)),
    ("SELECT 1 -- kohaproxy:replica", hinted(READ, Hint::Replica)),
    ("SELECT 1 # kohaproxy:master\n", hinted(READ, Hint::Master)),
    ("SELECT 1; /* kohaproxy:replica */", hinted(READ, Hint::Replica)),
    (
        "/* kohaproxy:replica */ SELECT 1 /* kohaproxy:master */",
        hinted(READ, Hint::Master),
    ),
    ("SELECT 1 /* kohaproxy:replicas */", READ),
    ("SELECT 1 /*+ kohaproxy:master */", READ),
    ("SELECT 1 /* kohaproxy: master */", READ),
    ("SELECT 'kohaproxy:master'", READ),
    ("SELECT 1 FROM t FOR UPDATE /* kohaproxy:replica */", hinted(MASTER_ONLY, Hint::Replica)),
    ("INSERT INTO t VALUES (1) -- kohaproxy:replica", hinted(MASTER_ONLY, Hint::Replica)),
    ("SET @a = 1 /* kohaproxy:master */", hinted(REPLAYED, Hint::Master)),
    // Locking reads, including ones hidden in executable comments and subqueries.
    ("SELECT * FROM t FOR UPDATE", MASTER_ONLY),
    ("select * from t for update nowait", MASTER_ONLY),
    ("SELECT * FROM t FOR UPDATE WAIT 5", MASTER_ONLY),
    ("SELECT * FROM t FOR UPDATE SKIP LOCKED", MASTER_ONLY),
    ("SELECT * FROM t LOCK IN SHARE MODE", MASTER_ONLY),
    ("SELECT * FROM t FOR SHARE", MASTER_ONLY),
    ("SELECT * FROM t WHERE a IN (SELECT b FROM u FOR UPDATE)", MASTER_ONLY),
    ("SELECT * FROM t WHERE a = 1 /*!50000 FOR UPDATE */", MASTER_ONLY),
    ("SELECT 1 /*!FOR UPDATE*/", MASTER_ONLY),
    ("SELECT 1 /*M!100301 FOR UPDATE */", MASTER_ONLY),
    ("SELECT 1 /*M! LOCK IN SHARE MODE */", MASTER_ONLY),
    ("SELECT 1 /*m!100301 FOR UPDATE */", MASTER_ONLY),
    ("SELECT 1 /*!50700 FOR UPDATE */", MASTER_ONLY),
    ("SELECT 1 /*!99999 FOR UPDATE */", MASTER_ONLY),
    ("SELECT * FROM t WHERE a = 1 -- \n FOR UPDATE", MASTER_ONLY),
    ("SELECT * FROM t WHERE a = 1 # x\rstill comment\nFOR UPDATE", MASTER_ONLY),
    ("SELECT a FROM t\r\nFOR\tUPDATE", MASTER_ONLY),
    ("SELECT a FROM t FOR\x0cUPDATE", MASTER_ONLY),
    ("SELECT 1 --x\nFOR UPDATE", MASTER_ONLY),
    ("(SELECT a FROM t FOR UPDATE)", MASTER_ONLY),
    ("WITH x AS (SELECT a FROM t FOR UPDATE) SELECT * FROM x", MASTER_ONLY),
    // INTO, assignments, SQL_CALC_FOUND_ROWS.
    ("SELECT 1 INTO @a", PINNED),
    ("SELECT a, b INTO @x, @y FROM t WHERE id = 1", PINNED),
    ("SELECT 1 /*!INTO @a */", PINNED),
    ("SELECT * FROM t INTO OUTFILE '/tmp/t.txt'", MASTER_ONLY),
    ("SELECT * INTO DUMPFILE '/tmp/x' FROM t", MASTER_ONLY),
    ("SELECT @a := 1", PINNED),
    ("SELECT @a:=a FROM t", PINNED),
    ("SELECT * FROM t WHERE (@n := @n + 1) > 0", PINNED),
    (
        "SELECT SQL_CALC_FOUND_ROWS items.* FROM items LEFT JOIN biblio ON biblio.biblionumber = items.biblionumber LIMIT 0, 20",
        PINNED,
    ),
    ("select sql_calc_found_rows * from t", PINNED),
    // Functions that are not side-effect free or depend on the session.
    ("SELECT FOUND_ROWS()", MASTER_ONLY),
    ("SELECT LAST_INSERT_ID()", MASTER_ONLY),
    ("SELECT last_insert_id ( )", MASTER_ONLY),
    ("SELECT ROW_COUNT()", MASTER_ONLY),
    ("SELECT GET_LOCK('koha', 10)", PINNED),
    ("select get_lock ('koha', 10)", PINNED),
    ("SELECT RELEASE_LOCK('koha')", MASTER_ONLY),
    ("SELECT RELEASE_ALL_LOCKS()", MASTER_ONLY),
    ("SELECT IS_FREE_LOCK('x'), IS_USED_LOCK('x')", MASTER_ONLY),
    ("SELECT NEXTVAL(s)", MASTER_ONLY),
    ("SELECT SETVAL(s, 10)", MASTER_ONLY),
    ("SELECT LASTVAL(s)", MASTER_ONLY),
    ("SELECT NEXT VALUE FOR s", MASTER_ONLY),
    ("SELECT PREVIOUS VALUE FOR s", MASTER_ONLY),
    ("SELECT s.nextval FROM dual", MASTER_ONLY),
    ("SELECT CONNECTION_ID()", MASTER_ONLY),
    ("SELECT MASTER_GTID_WAIT('0-1-1', 1)", MASTER_ONLY),
    ("SELECT MASTER_POS_WAIT('mysql-bin.000001', 4)", MASTER_ONLY),
    ("SELECT LOAD_FILE('/etc/passwd')", MASTER_ONLY),
    ("SELECT my_function(1)", MASTER_ONLY),
    ("SELECT koha.my_function(1)", MASTER_ONLY),
    ("SELECT `koha`.`f`(1)", MASTER_ONLY),
    ("SELECT `count`(*) FROM t", MASTER_ONLY),
    ("SELECT \"f\"(1)", MASTER_ONLY),
    ("SELECT * FROM t PROCEDURE ANALYSE()", MASTER_ONLY),
    ("SELECT * FROM t WHERE a = 1 AND myfunc(a) = 2", MASTER_ONLY),
    // Session-result system variables.
    ("SELECT @@last_insert_id", MASTER_ONLY),
    ("SELECT @@identity", MASTER_ONLY),
    ("SELECT @@INSERT_ID", MASTER_ONLY),
    ("SELECT @@session.last_insert_id", MASTER_ONLY),
    ("SELECT @@last_gtid", MASTER_ONLY),
    ("SELECT @@gtid_binlog_pos", MASTER_ONLY),
    ("SELECT @@session . last_insert_id", MASTER_ONLY),
    ("SELECT @@`last_insert_id`", MASTER_ONLY),
    ("SELECT @@warning_count, LAST_INSERT_ID()", MASTER_ONLY),
    ("SELECT @@error_count FROM t FOR UPDATE", MASTER_ONLY),
    // Write keywords inside a SELECT.
    ("SELECT update FROM t", MASTER_ONLY),
    ("SELECT 1 FROM t WHERE a = 1 /*! ; */", READ),
    // Multi-statements.
    ("SELECT 1; DELETE FROM t", PINNED),
    ("SELECT 1; SELECT 2", PINNED),
    ("SELECT 1;;", PINNED),
    ("SELECT 1 /*! ; DELETE FROM t */", PINNED),
    ("SELECT 'x'; /*! SELECT 2 */", PINNED),
    ("SET @a = 1; SELECT 1", PINNED),
    ("SHOW WARNINGS; SELECT 1", PINNED),
    ("; SELECT 1", PINNED),
    // Not lexable, or nothing to run.
    ("SELECT 'unterminated", MASTER_ONLY),
    ("SELECT \"unterminated", MASTER_ONLY),
    ("SELECT `unterminated", MASTER_ONLY),
    ("SELECT 1 /* unterminated", MASTER_ONLY),
    ("SELECT 1 /*! unterminated", MASTER_ONLY),
    // Unterminated with backslash escapes, a read under NO_BACKSLASH_ESCAPES.
    ("SELECT 'ends with a backslash\\'", READ),
    ("", MASTER_ONLY),
    ("   \n\t", MASTER_ONLY),
    ("/* only a comment */", MASTER_ONLY),
    ("-- only a comment", MASTER_ONLY),
    (";", MASTER_ONLY),
    // Executable comments whose end depends on the server version.
    ("SELECT 1 /*!50000 ' */ , GET_LOCK('a', 1) -- ' */", PINNED),
    ("SELECT 1 /*!99999 -- */ , GET_LOCK('a', 1)\n */", PINNED),
    // Backslashes read both ways (NO_BACKSLASH_ESCAPES, ANSI_QUOTES).
    ("SELECT 'a\\' , GET_LOCK('x', 1) -- '", PINNED),
    ("SELECT 'a\\'; DELETE FROM t; -- '", PINNED),
    ("SELECT \"a\\\" , myfunc(1) -- \"", MASTER_ONLY),
    // CTEs whose main statement writes, or that are not complete.
    ("WITH x AS (SELECT 1) UPDATE t SET a = 1", MASTER_ONLY),
    ("WITH x AS (SELECT 1) DELETE FROM t", MASTER_ONLY),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", MASTER_ONLY),
    ("WITH x AS (DELETE FROM t RETURNING *) SELECT 1", MASTER_ONLY),
    ("WITH x AS (SELECT 1)", MASTER_ONLY),
    ("WITH x (a) AS (SELECT 1) TABLE x", MASTER_ONLY),
    ("WITH x AS SELECT 1", MASTER_ONLY),
    ("(INSERT INTO t VALUES (1))", MASTER_ONLY),
    ("(VALUES (1))", MASTER_ONLY),
    // SHOW WARNINGS and friends run where the previous statement ran.
    ("SHOW WARNINGS", PREVIOUS),
    ("show errors", PREVIOUS),
    ("SHOW WARNINGS;", PREVIOUS),
    ("SHOW WARNINGS LIMIT 10", PREVIOUS),
    ("SHOW ERRORS LIMIT 5, 10", PREVIOUS),
    ("SHOW COUNT(*) WARNINGS", PREVIOUS),
    ("show count ( * ) errors", PREVIOUS),
    ("/* c */ SHOW WARNINGS -- c", PREVIOUS),
    ("SHOW WARNINGS /* kohaproxy:master */", hinted(PREVIOUS, Hint::Master)),
    ("SHOW WARNINGS ERRORS", MASTER_ONLY),
    ("SHOW COUNT(*) WARNINGS LIMIT 1", MASTER_ONLY),
    ("SHOW TABLES", MASTER_ONLY),
    ("SHOW VARIABLES LIKE 'gtid%'", MASTER_ONLY),
    ("SHOW MASTER STATUS", MASTER_ONLY),
    ("SHOW CREATE TABLE t", MASTER_ONLY),
    ("SHOW WARNINGS_X", MASTER_ONLY),
    // Writes and everything else that is not a plain read.
    ("INSERT INTO t VALUES (1)", MASTER_ONLY),
    ("insert into t values (1)", MASTER_ONLY),
    ("INSERT t (a) VALUES (1)", MASTER_ONLY),
    ("INSERT INTO t SELECT * FROM u", MASTER_ONLY),
    ("INSERT INTO t (a) VALUES (1) RETURNING a", MASTER_ONLY),
    ("UPDATE items SET onloan = NULL WHERE itemnumber = 1", MASTER_ONLY),
    ("DELETE FROM issues WHERE issue_id = 1", MASTER_ONLY),
    ("REPLACE INTO t VALUES (1)", MASTER_ONLY),
    ("REPLACE t (a) VALUES (1)", MASTER_ONLY),
    ("MERGE INTO t USING u ON (1) WHEN MATCHED THEN DELETE", MASTER_ONLY),
    ("CREATE TABLE t (a INT)", MASTER_ONLY),
    ("CREATE TABLE t SELECT * FROM u", MASTER_ONLY),
    ("ALTER TABLE t ADD b INT", MASTER_ONLY),
    ("DROP TABLE t", MASTER_ONLY),
    ("DROP TEMPORARY TABLE tmp", MASTER_ONLY),
    ("TRUNCATE TABLE t", MASTER_ONLY),
    ("TRUNCATE t", MASTER_ONLY),
    ("RENAME TABLE a TO b", MASTER_ONLY),
    ("GRANT SELECT ON *.* TO 'u'@'%'", MASTER_ONLY),
    ("REVOKE SELECT ON *.* FROM 'u'@'%'", MASTER_ONLY),
    ("LOAD DATA INFILE 'x' INTO TABLE t", MASTER_ONLY),
    ("DO 1", MASTER_ONLY),
    ("DO SLEEP(1)", MASTER_ONLY),
    ("DO GET_LOCK('x', 1)", PINNED),
    ("DO RELEASE_LOCK('x')", MASTER_ONLY),
    ("DO @a := 1", PINNED),
    ("UPDATE t SET a = (@n := @n + 1)", PINNED),
    ("UNLOCK TABLES", MASTER_ONLY),
    ("DROP TABLE IF EXISTS tmp_holdsqueue", MASTER_ONLY),
    ("DEALLOCATE PREPARE s", MASTER_ONLY),
    ("DESCRIBE t", MASTER_ONLY),
    ("DESC t", MASTER_ONLY),
    ("EXPLAIN SELECT 1", MASTER_ONLY),
    ("HELP 'contents'", MASTER_ONLY),
    ("BEGIN", BEGINS),
    ("begin work;", BEGINS),
    ("BEGIN /* c */ WORK -- c", BEGINS),
    ("BEGIN NOT ATOMIC SELECT 1; END", PINNED),
    ("BEGIN WORK WORK", MASTER_ONLY),
    ("BEGIN; SELECT 1", PINNED),
    ("START TRANSACTION", BEGINS),
    ("COMMIT", MASTER_ONLY),
    ("ROLLBACK", MASTER_ONLY),
    ("SAVEPOINT savepoint_1", MASTER_ONLY),
    ("RELEASE SAVEPOINT savepoint_1", MASTER_ONLY),
    ("ROLLBACK TO SAVEPOINT savepoint_1", MASTER_ONLY),
    ("XA START 'x'", MASTER_ONLY),
    ("USE koha", MASTER_ONLY),
    ("FLUSH TABLES", MASTER_ONLY),
    ("ANALYZE TABLE t", MASTER_ONLY),
    ("OPTIMIZE TABLE t", MASTER_ONLY),
    ("CHECK TABLE t", MASTER_ONLY),
    ("CHECKSUM TABLE t", MASTER_ONLY),
    ("KILL 5", MASTER_ONLY),
    ("KILL QUERY 5", MASTER_ONLY),
    ("BINLOG 'AAAA'", MASTER_ONLY),
    ("VALUES (1), (2)", MASTER_ONLY),
    ("TABLE t", MASTER_ONLY),
    ("`SELECT` 1", MASTER_ONLY),
    ("'SELECT 1'", MASTER_ONLY),
    // Statements that pin the session to the master.
    ("CALL p()", PINNED),
    ("HANDLER t OPEN", PINNED),
    ("HANDLER t READ FIRST", PINNED),
    ("LOCK TABLES t WRITE", PINNED),
    ("LOCK TABLE message_queue READ", PINNED),
    ("lock tables `creator_templates` WRITE", PINNED),
    ("CREATE TEMPORARY TABLE tmp (a INT)", PINNED),
    (
        "CREATE TEMPORARY TABLE tmpissuingrules ENGINE=memory SELECT * FROM issuingrules WHERE branchcode = 'CPL'",
        PINNED,
    ),
    ("CREATE OR REPLACE TEMPORARY TABLE tmp LIKE t", PINNED),
    ("create temporary table if not exists t (a int)", PINNED),
    ("PREPARE s FROM 'SELECT 1'", PINNED),
    ("EXECUTE s", PINNED),
    ("EXECUTE IMMEDIATE 'SET @a = NOW()'", PINNED),
    ("FLUSH TABLES WITH READ LOCK", PINNED),
    ("FLUSH TABLES t FOR EXPORT", PINNED),
    ("BACKUP STAGE START", PINNED),
    ("BACKUP LOCK t", PINNED),
    // START TRANSACTION READ ONLY.
    ("START TRANSACTION READ ONLY", READ_ONLY_TRANSACTION),
    ("start transaction read only;", READ_ONLY_TRANSACTION),
    ("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT", READ_ONLY_TRANSACTION),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", READ_ONLY_TRANSACTION),
    ("/* c */ START /* c */ TRANSACTION READ ONLY -- c", READ_ONLY_TRANSACTION),
    ("START TRANSACTION READ WRITE", BEGINS),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", BEGINS),
    ("START TRANSACTION READ ONLY, READ WRITE", BEGINS),
    ("START TRANSACTION READ ONLY,", BEGINS),
    ("START TRANSACTION READ ONLY READ ONLY", BEGINS),
    ("START SLAVE", MASTER_ONLY),
    ("START TRANSACTION READ ONLY; SELECT 1", PINNED),
    // SET: system variables alone are learned from the server.
    ("SET NAMES 'utf8mb4'", MASTER_ONLY),
    ("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", MASTER_ONLY),
    ("SET CHARACTER SET utf8", MASTER_ONLY),
    ("SET time_zone = \"Europe/Helsinki\"", MASTER_ONLY),
    (
        "SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
        MASTER_ONLY,
    ),
    ("SET autocommit=0", MASTER_ONLY),
    ("SET autocommit=1", MASTER_ONLY),
    ("SET SESSION session_track_system_variables = '*'", MASTER_ONLY),
    ("SET @@session.sql_mode = 'x'", MASTER_ONLY),
    ("SET hot_cache.key_buffer_size = 0", MASTER_ONLY),
    ("/*!40014 SET FOREIGN_KEY_CHECKS=0 */", MASTER_ONLY),
    ("SET GLOBAL read_only = 1", MASTER_ONLY),
    ("SET @@global.max_connections = 100", MASTER_ONLY),
    ("SET sql_mode = CONCAT(@@sql_mode, ',ANSI')", MASTER_ONLY),
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", MASTER_ONLY),
    ("SET SESSION TRANSACTION READ ONLY", MASTER_ONLY),
    ("SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", MASTER_ONLY),
    ("SET PASSWORD = PASSWORD('x')", MASTER_ONLY),
    ("SET DEFAULT ROLE r FOR u", MASTER_ONLY),
    ("SET STATEMENT max_statement_time = 5 FOR SELECT * FROM t", MASTER_ONLY),
    ("SET STATEMENT sql_mode = '' FOR UPDATE t SET a = 1", MASTER_ONLY),
    // SET: user variables from literals are replayed.
    ("SET @a = 1", REPLAYED),
    ("set @a=1;", REPLAYED),
    ("SET @a := 1", REPLAYED),
    ("SET @a = -1.5e3", REPLAYED),
    ("SET @a = - -2", REPLAYED),
    ("SET @a = 'x', @b = NULL, @c = TRUE, @d = x'41', @e = b'01', @f = _utf8mb4'x'", REPLAYED),
    ("SET @a = _latin1 'x', @b = N'y', @c = 0x1F, @d = false", REPLAYED),
    ("SET @`my var` = 0x1F", REPLAYED),
    ("SET @'my var' = \"x\"", REPLAYED),
    ("SET @a = 1, sql_mode = 'x'", REPLAYED),
    ("SET @a = 1, time_zone = DEFAULT, NAMES utf8mb4", REPLAYED),
    ("SET SESSION sql_mode = 'x', @a = 'y'", REPLAYED),
    ("SET @a = 'it\\'s'", REPLAYED),
    ("SET @a = 'a\\\\'", REPLAYED),
    ("SET @a = '\\\\', @b = 'x'", REPLAYED),
    ("SET @a = 1 -- one", REPLAYED),
    // SET: user variables the proxy cannot replay pin the session.
    ("SET @a = (SELECT 1)", PINNED),
    ("SET @a = @b + 1", PINNED),
    ("SET @a = @b", PINNED),
    ("SET @a = NOW()", PINNED),
    ("SET @a = 1 + 1", PINNED),
    ("SET @a = 'x' 'y'", PINNED),
    ("SET @a = 'x' COLLATE utf8mb4_bin", PINNED),
    ("SET @a = ON", PINNED),
    ("SET @a = 1, @b = @a", PINNED),
    ("SET @a = 1, sql_mode = CONCAT(@@sql_mode, ',X')", PINNED),
    ("SET @a = 1, sql_mode = @@global.sql_mode", PINNED),
    ("SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT", PINNED),
    ("SET @saved_cs_client = @@character_set_client", PINNED),
    ("/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */", PINNED),
    ("SET GLOBAL max_connections = 1, @a = 1", PINNED),
    ("SET @@global.x = 1, @a = 1", PINNED),
    ("SET @a = @b := 1", PINNED),
    ("SET @a = 1, @b = (SELECT GET_LOCK('x', 1))", PINNED),
    ("SET ROLE librarian", PINNED),
    (
        "SET STATEMENT max_statement_time = 5 FOR CREATE TEMPORARY TABLE x (a INT)",
        PINNED,
    ),
    ("SET STATEMENT sql_mode = '' FOR SELECT 1 INTO @a", PINNED),
    ("SET STATEMENT x = 1 FOR SET STATEMENT y = 2 FOR SET STATEMENT z = 3 FOR DO 1", PINNED),
    // Koha's own statements.
    (
        "SELECT `a_session` FROM `sessions` WHERE `id` = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'",
        READ,
    ),
    (
        "SELECT `me`.`borrowernumber`, `me`.`cardnumber`, `me`.`surname`, `me`.`firstname` FROM `borrowers` `me` WHERE ( `me`.`borrowernumber` = '42' )",
        READ,
    ),
    (
        "SELECT me.variable, me.value, me.options, me.explanation, me.type FROM systempreferences me WHERE ( me.variable = 'OPACBaseURL' )",
        READ,
    ),
    ("SELECT * FROM systempreferences WHERE 1 = 0", READ),
    ("SELECT me.* FROM items me WHERE me.biblionumber = 17 ORDER BY me.itemnumber", READ),
    (
        "SELECT * FROM branchtransfers WHERE itemnumber = 17 AND datearrived IS NULL AND datecancelled IS NULL ORDER BY datesent DESC LIMIT 1",
        READ,
    ),
    (
        "SELECT metadata FROM biblio_metadata WHERE biblionumber = 17 AND format = 'marcxml' AND `schema` = 'MARC21'",
        READ,
    ),
    (
        "SELECT COUNT( * ) FROM `borrowers` `me` WHERE ( ( `me`.`surname` LIKE 'smi%' OR `me`.`firstname` LIKE 'smi%' ) AND `me`.`branchcode` IN ( 'CPL', 'MPL' ) )",
        READ,
    ),
    ("SELECT count(*) FROM items WHERE barcode = '39999000001234'", READ),
    (
        "SELECT COUNT(*) FROM issues JOIN items USING (itemnumber) WHERE borrowernumber = 42 AND items.itype = 'BK'",
        READ,
    ),
    (
        "SELECT `me`.`id`, `me`.`branchcode`, `me`.`rule_name`, `me`.`rule_value` FROM `circulation_rules` `me` WHERE ( ( ( `branchcode` = 'CPL' OR `branchcode` IS NULL ) AND ( `categorycode` = 'PT' OR `categorycode` IS NULL ) AND `rule_name` IN ( 'maxissueqty', 'maxonsiteissueqty' ) ) ) ORDER BY `branchcode` DESC",
        READ,
    ),
    (
        "SELECT SUM(amountoutstanding) FROM accountlines WHERE borrowernumber = 42 AND amountoutstanding <> 0",
        READ,
    ),
    (
        "/* opac-detail */ SELECT biblio.biblionumber, biblio.title, items.itemnumber, items.barcode, issues.date_due -- due date\nFROM biblio JOIN items ON items.biblionumber = biblio.biblionumber LEFT JOIN issues ON issues.itemnumber = items.itemnumber /* current checkout */ WHERE biblio.biblionumber = 17 ORDER BY items.itemnumber",
        READ,
    ),
    (
        "INSERT INTO sessions (id, a_session) VALUES ('abc', '---\nlasttime: 1700000000\n') ON DUPLICATE KEY UPDATE a_session = '---\nlasttime: 1700000000\n'",
        MASTER_ONLY,
    ),
    (
        "INSERT INTO search_history (userid, sessionid, query_desc, query_cgi, type, total, time) VALUES (42, 'abc', 'kw,wrdl: koha', 'idx=kw&q=koha', 'biblio', 3, NOW())",
        MASTER_ONLY,
    ),
    (
        "UPDATE borrowers SET lastseen = '2024-05-01 10:00:00' WHERE borrowernumber = 42",
        MASTER_ONLY,
    ),
    (
        "DELETE tmp_holdsqueue, hold_fill_targets FROM tmp_holdsqueue LEFT JOIN hold_fill_targets USING ( itemnumber ) WHERE itemnumber = 17",
        MASTER_ONLY,
    ),
    ("UPDATE issues SET returndate = NOW() WHERE issue_id = 5", MASTER_ONLY),
    (
        "INSERT INTO statistics (datetime, branch, value, type, other, itemnumber, itemtype, location, borrowernumber, ccode, categorycode) VALUES (NOW(), 'CPL', 0, 'issue', '', 17, 'BK', NULL, 42, NULL, 'PT')",
        MASTER_ONLY,
    ),
    (
        "INSERT INTO `issues` ( `borrowernumber`, `branchcode`, `date_due`, `issuedate`, `itemnumber`) VALUES ( '42', 'CPL', '2024-05-15 23:59:00', '2024-05-01 10:00:00', '17' )",
        MASTER_ONLY,
    ),
];

fn show(sql: &[u8]) -> String {
    String::from_utf8_lossy(sql).into_owned()
}

#[test]
fn table() {
    let mut failures = Vec::new();
    for &(sql, expected) in CASES {
        let got = classify(sql.as_bytes());
        if got != expected {
            failures.push(format!(
                "{sql:?}\n   expected {expected:?}\n        got {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} misclassified:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert!(CASES.len() >= 150, "only {} cases", CASES.len());
}

#[test]
fn invalid_utf8_in_literals() {
    let cases: &[(&[u8], Class)] = &[
        (b"SELECT * FROM t WHERE b = '\xff\xfe\x00\x80'", READ),
        (b"SELECT \xc3\xa4 FROM t WHERE x = '\xc3\x28'", READ),
        (b"SELECT '\xc3\x28' FROM t FOR UPDATE", MASTER_ONLY),
        (b"INSERT INTO t VALUES ('\xff\\'\xfe')", MASTER_ONLY),
        (
            b"INSERT INTO patronimage (borrowernumber, mimetype, imagefile) VALUES ((SELECT borrowernumber from borrowers WHERE cardnumber = '23'),'image/png','\x89PNG\r\n\x1a\n\x00\x00\\0\\'\\\\') ON DUPLICATE KEY UPDATE imagefile = '\x89PNG'",
            MASTER_ONLY,
        ),
        (b"SET @blob = '\xff\x00\xfe'", REPLAYED),
        (b"SELECT 1 /* \xff\xfe kohaproxy */", READ),
        (b"SELECT 1 \x00 FOR UPDATE", MASTER_ONLY),
    ];
    for &(sql, expected) in cases {
        assert_eq!(classify(sql), expected, "{}", show(sql));
    }
}

/// A small deterministic generator (no dependency, same cases every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Flips the case of ASCII letters at random, except the `M` of `/*M!` (which the
/// server only recognises in upper case).
fn shuffle_case(sql: &[u8], random: &mut Lcg) -> Vec<u8> {
    let mut out = sql.to_vec();
    for index in 0..out.len() {
        let executable_marker = out[index] == b'M' && out.get(index + 1) == Some(&b'!');
        if out[index].is_ascii_alphabetic() && !executable_marker && random.next().is_multiple_of(2)
        {
            out[index] ^= 0x20;
        }
    }
    out
}

#[test]
fn writes_stay_on_the_master_whatever_surrounds_them() {
    const PREFIXES: &[&str] = &[
        "",
        " ",
        "\t\r\n\x0c",
        "/* c */",
        "/* c */ ",
        "-- c\n",
        "--\tc\r\n",
        "# c\n",
        "/*+ hint */ ",
        "/* kohaproxy:replica */ ",
        "/**/\n/* ; */",
    ];
    const SUFFIXES: &[&str] = &[
        "",
        " ",
        ";",
        " ; ",
        "; -- c",
        ";/* c */\n",
        "\n# c",
        " -- c",
        "\n\t",
        "/* SELECT */",
    ];
    let mut random = Lcg(7);
    let mut checked = 0;
    for &(sql, expected) in CASES {
        // A suffix may close what the statement leaves open.
        if expected.route != Route::Master || sql.contains("unterminated") {
            continue;
        }
        for prefix in PREFIXES {
            for suffix in SUFFIXES {
                let text = format!("{prefix}{sql}{suffix}");
                for variant in [
                    text.as_bytes().to_vec(),
                    shuffle_case(text.as_bytes(), &mut random),
                ] {
                    let got = classify(&variant);
                    assert_eq!(got.route, Route::Master, "{}", show(&variant));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn reads_stay_reads_whatever_surrounds_them() {
    const PREFIXES: &[&str] = &["", "\n ", "/* c */ ", "-- c\n", "# c\r\n"];
    const SUFFIXES: &[&str] = &["", ";", " ; -- c", "\n# c", "/* c */"];
    let mut random = Lcg(11);
    for &(sql, expected) in CASES {
        if expected.route != Route::Read || expected.hint.is_some() {
            continue;
        }
        for prefix in PREFIXES {
            for suffix in SUFFIXES {
                // `SELECT 1;;` is two statements.
                if sql.contains(';') && suffix.contains(';') {
                    continue;
                }
                let text = format!("{prefix}{sql}{suffix}");
                let variant = shuffle_case(text.as_bytes(), &mut random);
                assert_eq!(classify(&variant).route, Route::Read, "{}", show(&variant));
            }
        }
    }
}

#[test]
fn token_soup_never_panics_and_reads_only_selects() {
    const PIECES: &[&str] = &[
        "SELECT", " ", "'", "\"", "`", "\\", "/*", "*/", "/*!", "/*M!", "--", "-- ", "#", "\n",
        ";", "(", ")", "@", "@@", ":=", "FOR", "UPDATE", "x", "1", ".", ",", "INTO", "\u{0}",
        "\u{ff}", "SET", "=", "WITH", "AS", "e", "+", "-", "*", "SHOW", "WARNINGS", "COUNT",
    ];
    let mut random = Lcg(3);
    for _ in 0..100_000 {
        let length = (random.next() % 14) as usize;
        let mut sql = Vec::new();
        for _ in 0..length {
            let piece = PIECES[(random.next() as usize) % PIECES.len()];
            sql.extend_from_slice(piece.as_bytes());
        }
        let class = classify(&sql);
        let text = show(&sql);
        if class.route == Route::Read {
            assert!(text.contains("SELECT"), "{text:?}");
            assert!(!class.pin && !class.replay, "{text:?}");
        }
        if class.replay {
            assert!(text.contains("SET") && text.contains('@'), "{text:?}");
        }
    }
}

#[test]
fn allowlists_are_sorted_upper_case_and_disjoint() {
    for list in [
        READ_ONLY_FUNCTIONS,
        SYNTAX_BEFORE_PARENTHESIS,
        MASTER_SYSTEM_VARIABLES,
        PREVIOUS_SYSTEM_VARIABLES,
    ] {
        for pair in list.windows(2) {
            assert!(pair[0].as_bytes() < pair[1].as_bytes(), "{pair:?}");
        }
        for name in list {
            assert_eq!(name.to_ascii_uppercase(), *name);
        }
    }
    for name in SYNTAX_BEFORE_PARENTHESIS {
        assert!(!READ_ONLY_FUNCTIONS.contains(name), "{name}");
    }
    for forbidden in [
        "GET_LOCK",
        "RELEASE_LOCK",
        "RELEASE_ALL_LOCKS",
        "IS_FREE_LOCK",
        "IS_USED_LOCK",
        "LAST_INSERT_ID",
        "FOUND_ROWS",
        "ROW_COUNT",
        "NEXTVAL",
        "SETVAL",
        "LASTVAL",
        "CONNECTION_ID",
        "MASTER_GTID_WAIT",
        "MASTER_POS_WAIT",
        "LOAD_FILE",
    ] {
        assert!(
            !allowed_before_parenthesis(forbidden.as_bytes()),
            "{forbidden}"
        );
    }
    assert!(allowed_before_parenthesis(b"group_concat"));
    assert!(allowed_before_parenthesis(b"Json_Table"));
    assert!(!allowed_before_parenthesis(b"json_tablex"));
    assert!(!allowed_before_parenthesis(b""));
}

#[test]
fn a_large_select_is_a_read() {
    let mut sql = String::from("SELECT biblionumber FROM biblio WHERE biblionumber IN (");
    for number in 0..800 {
        sql.push_str(&format!("{number}, "));
    }
    sql.push_str("0) /* kohaproxy:replica */");
    assert_eq!(classify(sql.as_bytes()), hinted(READ, Hint::Replica));
    sql.push_str(" FOR UPDATE");
    assert_eq!(classify(sql.as_bytes()).route, Route::Master);
}
