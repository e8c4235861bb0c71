#!/usr/bin/perl
# A Koha-style DBI session (Koha::Database->dbh with DBD::mysql), printing what it sees so
# that the Rust test can compare a run through kohaproxy with a run against the master.
# usage: koha_session.pl PORT [DRIVER]   (DRIVER: mysql, the default and what Koha uses,
#                                          or MariaDB for DBD::MariaDB)
# Exits non-zero (die) on any failure; every printed line must match between the two runs.
use strict;
use warnings;
use utf8;
use DBI;

binmode STDOUT, ':encoding(UTF-8)';
my $port = shift @ARGV or die "usage: $0 PORT [mysql|MariaDB]\n";
my $driver = shift @ARGV // 'mysql';
# The driver's attribute prefix: mysql_insertid or mariadb_insertid, ...
my $p = $driver eq 'MariaDB' ? 'mariadb' : 'mysql';

# Exactly as Koha::Database::dbh connects and sets up its session.
my %attr = (RaiseError => 1, PrintError => 0);
$attr{mysql_enable_utf8} = 1 if $driver eq 'mysql';
my $dbh = DBI->connect(
    "dbi:$driver:database=koha;host=127.0.0.1;port=$port", 'koha', 'koha', \%attr);
$dbh->do(q{SET NAMES 'utf8mb4'});
$dbh->do(q{SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'});

sub show {
    my ($label, @values) = @_;
    print "$label: ", join(' | ', map { defined $_ ? $_ : 'NULL' } @values), "\n";
}

sub check {
    my ($what, $got, $want) = @_;
    $got  = 'NULL' unless defined $got;
    $want = 'NULL' unless defined $want;
    die "FAIL $what: got '$got', want '$want'\n" unless $got eq $want;
    print "ok $what\n";
}

show('session', $dbh->selectrow_array(
    q{SELECT @@character_set_client, @@character_set_connection, @@character_set_results,
             @@collation_connection, @@sql_mode, @@autocommit, DATABASE(), CURRENT_USER()}));

$dbh->do('DROP TABLE IF EXISTS kp_session_prefs');
$dbh->do('DROP TABLE IF EXISTS kp_session_items');
$dbh->do(q{
    CREATE TABLE kp_session_prefs (
      variable varchar(50) NOT NULL DEFAULT '',
      value mediumtext DEFAULT NULL,
      options longtext DEFAULT NULL,
      explanation text DEFAULT NULL,
      type varchar(20) DEFAULT NULL,
      PRIMARY KEY (variable)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci});
$dbh->do(q{
    CREATE TABLE kp_session_items (
      itemnumber int(11) NOT NULL AUTO_INCREMENT,
      barcode varchar(20) DEFAULT NULL,
      title mediumtext DEFAULT NULL,
      price decimal(8,2) DEFAULT NULL,
      onloan date DEFAULT NULL,
      timestamp timestamp NOT NULL DEFAULT '2023-11-14 22:13:20' ON UPDATE current_timestamp(),
      PRIMARY KEY (itemnumber),
      UNIQUE KEY barcode (barcode)
    ) ENGINE=InnoDB AUTO_INCREMENT=100 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci});

# DBIx::Class / C4::Context probe: a query that returns no rows but full metadata.
my $sth = $dbh->prepare('SELECT * FROM kp_session_prefs WHERE 1 = 0');
$sth->execute;
show('probe columns', @{ $sth->{NAME} });
show('probe types', @{ $sth->{TYPE} });
show('probe precision', @{ $sth->{PRECISION} });
show('probe nullable', @{ $sth->{NULLABLE} });
show('probe type_name', @{ $sth->{"${p}_type_name"} });
show('probe rows', scalar @{ $sth->fetchall_arrayref });

# Placeholders: DBD::mysql substitutes them into the query text.
my $ins = $dbh->prepare(
    'INSERT INTO kp_session_prefs (variable, value, options, explanation, type) VALUES (?, ?, ?, ?, ?)');
$ins->execute('OPACBaseURL', 'https://opac.example.org', undef, q{It's the "base" URL\\path}, 'Free');
$ins->execute('LibraryName', '図書館 📚 Bibliothèque', 'a|b', undef, 'Free');
$ins->execute('marcflavour', 'MARC21', 'MARC21|UNIMARC|NORMARC', "line1\nline2\ttab\0nul", 'Choice');
my $prefs = $dbh->selectall_arrayref(
    'SELECT variable, value, options, explanation, type FROM kp_session_prefs ORDER BY variable');
show('pref', map { defined $_ ? $_ : 'NULL' } @$_) for @$prefs;
my ($name) = $dbh->selectrow_array(
    'SELECT value FROM kp_session_prefs WHERE variable = ?', undef, 'LibraryName');
check('utf8mb4 round trip', $name, '図書館 📚 Bibliothèque');
check('utf8 flag on read', utf8::is_utf8($name) ? 1 : 0, 1);
my ($len, $chars) = $dbh->selectrow_array(
    'SELECT LENGTH(value), CHAR_LENGTH(value) FROM kp_session_prefs WHERE variable = ?',
    undef, 'LibraryName');
check('utf8mb4 byte length', $len, 28);
check('utf8mb4 char length', $chars, 18);
my ($nul) = $dbh->selectrow_array(
    q{SELECT explanation FROM kp_session_prefs WHERE variable = 'marcflavour'});
check('control characters', $nul, "line1\nline2\ttab\0nul");

# mysql_insertid (mariadb_insertid) from the OK packet.
my $item = $dbh->prepare('INSERT INTO kp_session_items (barcode, title, price, onloan) VALUES (?, ?, ?, ?)');
for my $n (1 .. 5) {
    $item->execute("BC$n", "Title $n ✓", $n * 1.25, $n % 2 ? '2024-01-0' . $n : undef);
    show("insert $n", $dbh->{"${p}_insertid"}, $item->{"${p}_insertid"}, $item->rows);
}
check('last insert id', $dbh->{"${p}_insertid"}, 104);
check('LAST_INSERT_ID()', scalar $dbh->selectrow_array('SELECT LAST_INSERT_ID()'), 104);
check('last_insert_id method', $dbh->last_insert_id(undef, undef, 'kp_session_items', 'itemnumber'), 104);

# CLIENT_FOUND_ROWS: DBD::mysql sets it by default, so a no-change UPDATE counts matched rows.
my $rv = $dbh->do(q{UPDATE kp_session_items SET title = title WHERE itemnumber = 101});
check('UPDATE x = x returns matched rows', $rv, 1);
$rv = $dbh->do(q{UPDATE kp_session_items SET price = price WHERE itemnumber > 100});
check('UPDATE many unchanged rows', $rv, 4);
show('info', $dbh->{"${p}_info"});
$rv = $dbh->do(q{UPDATE kp_session_items SET price = 9.99 WHERE itemnumber = 999});
check('UPDATE no row', $rv, '0E0');
$rv = $dbh->do(q{DELETE FROM kp_session_items WHERE itemnumber = 999});
check('DELETE no row', $rv, '0E0');

# A transaction as DBI begin_work sends it (SET autocommit=0 ... COMMIT, then autocommit=1).
$dbh->begin_work;
show('in transaction', $dbh->selectrow_array('SELECT @@autocommit, @@in_transaction'));
$dbh->do(q{UPDATE kp_session_items SET onloan = '2024-05-01' WHERE itemnumber = 101});
$dbh->do('SAVEPOINT savepoint_0');
$dbh->do(q{UPDATE kp_session_items SET onloan = '2099-12-31' WHERE itemnumber = 102});
$dbh->do(q{INSERT INTO kp_session_items (barcode, title) VALUES ('BC-rolled-back', 'gone')});
$dbh->do('ROLLBACK TO SAVEPOINT savepoint_0');
$dbh->do('SAVEPOINT savepoint_1');
$dbh->do(q{UPDATE kp_session_items SET title = 'kept' WHERE itemnumber = 103});
$dbh->do('RELEASE SAVEPOINT savepoint_1');
$dbh->commit;
show('after commit', $dbh->selectrow_array('SELECT @@autocommit, @@in_transaction'));
# (timestamp is left out: ON UPDATE CURRENT_TIMESTAMP differs between the two runs)
show('item', map { defined $_ ? $_ : 'NULL' } @$_) for @{ $dbh->selectall_arrayref(
    'SELECT itemnumber, barcode, title, price, onloan, timestamp > 20231115 FROM kp_session_items ORDER BY itemnumber') };

# A rolled-back transaction leaves nothing behind.
$dbh->begin_work;
$dbh->do(q{DELETE FROM kp_session_items});
$dbh->rollback;
check('rollback kept the rows', scalar $dbh->selectrow_array('SELECT COUNT(*) FROM kp_session_items'), 5);
# AutoCommit can also be switched off through the attribute.
$dbh->{AutoCommit} = 0;
$dbh->do(q{INSERT INTO kp_session_items (barcode, title) VALUES ('BC-commit', 'committed')});
show('insertid in txn', $dbh->{"${p}_insertid"});
$dbh->commit;
$dbh->{AutoCommit} = 1;
check('autocommit restored', scalar $dbh->selectrow_array('SELECT @@autocommit'), 1);

# SQL_CALC_FOUND_ROWS followed by FOUND_ROWS() on the same connection (Koha item search).
my $page = $dbh->selectall_arrayref(
    'SELECT SQL_CALC_FOUND_ROWS itemnumber, barcode FROM kp_session_items ORDER BY itemnumber LIMIT ?, ?',
    undef, 1, 2);
show('page', map { "$_->[0]=$_->[1]" } @$page);
my ($found) = $dbh->selectrow_array('SELECT FOUND_ROWS()');
check('FOUND_ROWS()', $found, 6);

# Warnings and errors reach DBI as they would directly.
$dbh->do(q{INSERT INTO kp_session_items (barcode, price) VALUES ('BC-warn', 'abc')});
show('warning count', $dbh->{"${p}_warning_count"});
show('warnings', map { join('/', @$_) } @{ $dbh->selectall_arrayref('SHOW WARNINGS') });
eval { $dbh->do(q{INSERT INTO kp_session_items (barcode) VALUES ('BC1')}); 1 }
    and die "FAIL duplicate key was accepted\n";
show('duplicate error', $dbh->err, $dbh->state, $dbh->errstr);
eval { $dbh->do('SELECT * FROM kp_no_such_table'); 1 } and die "FAIL missing table accepted\n";
show('missing table error', $dbh->err, $dbh->state, $dbh->errstr);
check('ping', $dbh->ping ? 1 : 0, 1);
show('alive after errors', $dbh->selectrow_array('SELECT COUNT(*) FROM kp_session_items'));

# User variables and temporary tables live on the session.
$dbh->do(q{SET @kp_var = '📚'});
$dbh->do('CREATE TEMPORARY TABLE kp_tmp (a int)');
$dbh->do('INSERT INTO kp_tmp VALUES (1), (2), (3)');
show('session state', $dbh->selectrow_array('SELECT @kp_var, (SELECT SUM(a) FROM kp_tmp)'));

$dbh->do('DROP TABLE kp_session_items');
$dbh->do('DROP TABLE kp_session_prefs');
$dbh->disconnect;
print "done\n";
