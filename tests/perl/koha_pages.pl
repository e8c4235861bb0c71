#!/usr/bin/perl
# A Koha-shaped page workload with a stale-read check, for benches/koha.sh (and by hand).
#
# N worker processes each hold two DBI connections opened the way Koha::Database opens its
# one (DBD::mysql, mysql_enable_utf8, SET NAMES 'utf8mb4', Koha's sql_mode): `w` on the
# write port and `r` on the read port (the same port, or two proxies of one cluster). Each
# worker serves "pages" until the time is up. A page, in the order of a Koha request:
#   1. r: SELECT the worker's session row (checkauth loads the CGI::Session): it must be
#      what the previous page flushed (step 4), perhaps through another proxy or through a
#      proxy process since killed and restarted, else a STALE read;
#   2. r: an OPAC search (title prefix, LIMIT 20) and a detail view (primary key) on
#      kp_biblio;
#   3. every 5th page, a checkout on w as Koha's circulation sends it (SET autocommit=0,
#      read the item, INSERT INTO kp_issues, UPDATE kp_items SET issues = issues + 1,
#      COMMIT, SET autocommit=1), then r reads the item's issues count back: it must be the
#      committed value, else a STALE read;
#   4. w: REPLACE INTO kp_sessions: the session row flushed with a new value (CGI::Session
#      does this on every authenticated page); the next page reads it first.
# A page's latency is the wall time of all of it. A DBI error (lost connection, proxy
# restarted, deadlock, ...) abandons the page (not counted, no check of a write whose
# outcome is unknown), is counted by its error code ($DBI::err), and both connections are
# reopened (every 50 ms, for up to --max-connect-wait seconds; then the worker gives up and
# the exit status is 1). Only a write that returned success sets what a later read must see.
#
# usage: koha_pages.pl --write-port P --read-port Q --seconds S [--workers N (4)]
#          [--host 127.0.0.1] [--db koha] [--user koha] [--password koha]
#          [--setup-only] [--no-setup] [--max-connect-wait S (30)] [--run K (0)]
# --run K: runs going on at the same time against one cluster need distinct K (0..99):
# worker w of run K uses session row, borrower and items of number 100*K + w.
# Setup (unless --no-setup, before the workers start, on the write port): CREATE TABLE IF
# NOT EXISTS kp_sessions, kp_items, kp_issues, kp_biblio; 2000 catalogue rows and 1000 items
# per worker (itemnumbers w*1000000+k, w = 1..N), INSERT IGNORE: several runs against the
# same cluster are fine. --setup-only stops there.
#
# stdout: one line,
#   pages=<n> seconds=<wall> pages_per_s=<x.x> p50_ms=<x.xx> p95_ms=<x.xx> p99_ms=<x.xx>
#   stale=<n> errors=<n> error_codes=<code:count,...|none>
# stderr: progress, the first 5 stale reads and the first 3 errors of each worker.
# Exit status: 0 when it ran (stale reads included: the caller judges them); 1 when setup
# failed or a worker could not connect for --max-connect-wait seconds; 2 on bad usage.
use strict;
use warnings;
use DBI;
use File::Temp qw(tempdir);
use Getopt::Long qw(GetOptions);
use POSIX qw(ceil _exit);
use Time::HiRes qw(time sleep);

my %o = (
    host => '127.0.0.1', db => 'koha', user => 'koha', password => 'koha',
    workers => 4, 'max-connect-wait' => 30, run => 0,
);
GetOptions(\%o, 'write-port=i', 'read-port=i', 'seconds=f', 'workers=i', 'host=s', 'db=s',
    'user=s', 'password=s', 'setup-only', 'no-setup', 'max-connect-wait=f',
    'run=i')
    or usage();
usage() unless $o{'write-port'} && ($o{'setup-only'} || ($o{'read-port'} && defined $o{seconds}));
usage() if $o{workers} < 1 || ($o{seconds} // 0) < 0 || ($o{'setup-only'} && $o{'no-setup'});

sub usage {
    print STDERR "usage: $0 --write-port P --read-port Q --seconds S [--workers N] [--host H]"
        . " [--db koha] [--user koha --password koha] [--setup-only] [--no-setup]"
        . " [--max-connect-wait S]\n";
    exit 2;
}

use constant {
    BIBLIOS          => 2000,
    ITEMS_PER_WORKER => 1000,
    CHECKOUT_EVERY   => 5,
    MAX_STALE_SHOWN  => 5,
    MAX_ERRORS_SHOWN => 3,
};
my @WORDS = qw(Alpha Birds Castle Dragon Empire Forest Garden Harbour Island Journey Kingdom
    Letters Mountain Night Ocean Poems River Stone Travels Valley Winter Yellow);

# Messages carry the UTC time to the millisecond, to match them with the proxies' logs.
sub say_err {
    my $t = time;
    my @u = gmtime($t);
    printf STDERR "koha_pages %02d:%02d:%02d.%03d: %s\n", @u[2, 1, 0], ($t - int $t) * 1000, "@_";
}

# One connection, the way Koha::Database::dbh opens it. Dies on failure.
sub koha_dbh {
    my ($port) = @_;
    my $dsn = "dbi:mysql:database=$o{db};host=$o{host};port=$port"
        . ';mysql_connect_timeout=5;mysql_read_timeout=60;mysql_write_timeout=60';
    my $dbh = DBI->connect($dsn, $o{user}, $o{password},
        { RaiseError => 1, PrintError => 0, mysql_enable_utf8 => 1 });
    $dbh->do(q{SET NAMES 'utf8mb4'});
    $dbh->do(q{SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'});
    return $dbh;
}

# Tries koha_dbh(PORT) every 50 ms until it works or `--max-connect-wait` seconds passed
# (undef then; the last error in $@). Gives up early (undef, $@ empty) once STOP_AT passed.
sub connect_retrying {
    my ($port, $stop_at) = @_;
    my $give_up = time + $o{'max-connect-wait'};
    while (1) {
        my $dbh = eval { koha_dbh($port) };
        return $dbh if $dbh;
        my $err = $@;
        if (defined $stop_at && time >= $stop_at) { $@ = ''; return undef }
        if (time >= $give_up) { chomp $err; $@ = $err; return undef }
        sleep 0.05;
    }
}

sub disconnect_quietly { for (@_) { eval { $_->disconnect if $_ } } }

sub setup {
    my $dbh = connect_retrying($o{'write-port'})
        or die "cannot connect to $o{host}:$o{'write-port'}: $@";
    $dbh->do(q{CREATE TABLE IF NOT EXISTS kp_sessions (id varchar(32) NOT NULL PRIMARY KEY,
        a_session longblob NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
    $dbh->do(q{CREATE TABLE IF NOT EXISTS kp_items (itemnumber int NOT NULL PRIMARY KEY,
        onloan date DEFAULT NULL, issues smallint NOT NULL DEFAULT 0,
        datelastborrowed date DEFAULT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
    $dbh->do(q{CREATE TABLE IF NOT EXISTS kp_issues (issue_id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
        borrowernumber int NOT NULL, itemnumber int NOT NULL, date_due datetime NOT NULL,
        issuedate datetime NOT NULL, KEY (borrowernumber)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
    $dbh->do(q{CREATE TABLE IF NOT EXISTS kp_biblio (biblionumber int NOT NULL PRIMARY KEY,
        title varchar(255) NOT NULL, author varchar(255) NOT NULL, KEY (title))
        ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
    my @rows;
    for my $n (1 .. BIBLIOS) {
        my $title = sprintf('%s %s, volume %d', $WORDS[$n % @WORDS], $WORDS[($n * 7) % @WORDS], $n);
        my $author = sprintf('%s, %s', $WORDS[($n * 3) % @WORDS], $WORDS[($n * 5) % @WORDS]);
        push @rows, [$n, $title, $author];
    }
    while (my @batch = splice @rows, 0, 500) {
        $dbh->do('INSERT IGNORE INTO kp_biblio (biblionumber, title, author) VALUES '
            . join(',', ('(?, ?, ?)') x @batch), undef, map { @$_ } @batch);
    }
    for my $w (1 .. $o{workers}) {
        $dbh->do('INSERT IGNORE INTO kp_items (itemnumber) VALUES '
            . join(',', map { '(' . ($w * 1_000_000 + $_) . ')' } 1 .. ITEMS_PER_WORKER));
    }
    $dbh->disconnect;
}

sub percentile {
    my ($sorted, $p) = @_;
    return 0 unless @$sorted;
    my $i = ceil($p * @$sorted) - 1;
    $i = 0 if $i < 0;
    return $sorted->[$i];
}

# ---------------------------------------------------------------------------------------
# a worker: runs pages until $deadline, writes its results to $out, exits 0 (or 1 when it
# could not connect for --max-connect-wait seconds)

sub worker {
    my ($w, $deadline, $out) = @_;
    # Workers of concurrent runs (--run) must not share rows.
    my $n = $o{run} * 100 + $w;
    my $sid = sprintf('kp_pages_w%04d', $n);    # one session row per worker
    my $borrower = 100_000 + $n;
    my %have_item;
    my $item_k = 1 + int(rand(ITEMS_PER_WORKER));
    my (@lat, %codes);
    my ($pages, $stale, $errors, $shown_stale, $shown_errors, $gave_up) = (0) x 6;
    my $session_want;    # what the last successful REPLACE wrote (undef: unknown)
    my $filler = 'x' x 400;    # a session holds a few hundred bytes of serialized state

    my $stale_read = sub {
        my ($page, $what, $got, $want) = @_;
        $stale++;
        return if $shown_stale++ >= MAX_STALE_SHOWN;
        $got = defined $got ? $got : 'NULL';
        $_ = length($_) > 120 ? substr($_, 0, 120) . '...' : $_ for $got, $want;
        say_err("worker $w page $page: STALE $what on the read port $o{'read-port'}:"
            . " got '$got', want '$want'");
    };

    # Opens both connections. The first time, it must succeed within --max-connect-wait
    # seconds; a reconnect also stops trying (without failing) once the run is over.
    my ($wd, $rd);
    my $open = sub {
        my ($stop_at) = @_;
        disconnect_quietly($wd, $rd);
        ($wd, $rd) = ();
        my $err;
        $wd = connect_retrying($o{'write-port'}, $stop_at) or $err = $@;
        if ($wd) {
            $rd = connect_retrying($o{'read-port'}, $stop_at) or $err = $@;
        }
        return 1 if $wd && $rd;
        disconnect_quietly($wd, $rd);
        return 0 if !$err;    # the run is over anyway
        say_err("worker $w gives up: no connection for $o{'max-connect-wait'} s: $err");
        $gave_up = 1;
        return 0;
    };

    my $page = 0;
    if ($open->(undef)) {
        while (time < $deadline) {
            $page++;
            my $t0 = time;
            my $ok = eval {
                # 1. the request reads its session (CGI::Session's load in checkauth): the
                #    row the previous request flushed, perhaps through another proxy, or
                #    through a proxy process that has since been killed and restarted
                if (defined $session_want) {
                    my ($got) = $rd->selectrow_array('SELECT a_session FROM kp_sessions WHERE id = ?', undef, $sid);
                    $stale_read->($page, 'session row', $got, $session_want)
                        unless defined $got && $got eq $session_want;
                }
                # 2. the catalogue
                my $prefix = $WORDS[int rand @WORDS];
                $rd->selectall_arrayref(
                    'SELECT biblionumber, title, author FROM kp_biblio WHERE title LIKE ? LIMIT 20',
                    undef, "$prefix%");
                $rd->selectrow_arrayref('SELECT biblionumber, title, author FROM kp_biblio WHERE biblionumber = ?',
                    undef, 1 + int rand BIBLIOS);
                # 3. a checkout now and then, read back at once on the other connection
                if ($page % CHECKOUT_EVERY == 0) {
                    my $item = $n * 1_000_000 + $item_k;
                    $item_k = $item_k % ITEMS_PER_WORKER + 1;
                    # Setup made items for workers 1..N of run 0 only: create a missing one
                    # outside the transaction (inside, the gap locks of two workers'
                    # inserts deadlock). Marked made only once the insert succeeded: one
                    # lost with its connection is made again next time round.
                    unless ($have_item{$item}) {
                        $wd->do('INSERT IGNORE INTO kp_items (itemnumber) VALUES (?)', undef, $item);
                        $have_item{$item} = 1;
                    }
                    $wd->do('SET autocommit=0');
                    my ($issues) = $wd->selectrow_array(
                        'SELECT issues FROM kp_items WHERE itemnumber = ? FOR UPDATE', undef, $item);
                    $issues //= 0;
                    # issues is a smallint: start again at 1 long before it would overflow
                    my $want = $issues >= 30000 ? 1 : $issues + 1;
                    $wd->do(q{INSERT INTO kp_issues (borrowernumber, itemnumber, date_due, issuedate)
                        VALUES (?, ?, NOW() + INTERVAL 14 DAY, NOW())}, undef, $borrower, $item);
                    $wd->do(q{UPDATE kp_items SET onloan = CURDATE() + INTERVAL 14 DAY,
                        issues = IF(issues >= 30000, 0, issues) + 1, datelastborrowed = CURDATE()
                        WHERE itemnumber = ?}, undef, $item);
                    $wd->do('COMMIT');
                    $wd->do('SET autocommit=1');
                    my ($seen) = $rd->selectrow_array('SELECT issues FROM kp_items WHERE itemnumber = ?',
                        undef, $item);
                    $stale_read->($page, "issues of item $item after checkout", $seen, $want)
                        unless defined $seen && $seen == $want;
                }
                # 5. the end of the request flushes the session row; the next page reads it
                my $value = "\$D = {'number' => $page,'pid' => $$,'time' => '$t0',"
                    . "'_SESSION_ID' => '$sid','ip' => '10.0.0.$w','pad' => '$filler'};;\$D";
                $session_want = undef;
                $wd->do('REPLACE INTO kp_sessions (id, a_session) VALUES (?, ?)', undef, $sid, $value);
                $session_want = $value;
                1;
            };
            if ($ok) {
                $pages++;
                push @lat, (time - $t0) * 1000;
                next;
            }
            my $err = $@ || 'unknown error';
            my $code = $DBI::err || 'other';
            chomp $err;
            $errors++;
            $codes{$code}++;
            say_err("worker $w page $page: error $code: $err") if $shown_errors++ < MAX_ERRORS_SHOWN;
            last if time >= $deadline;
            last unless $open->($deadline);
        }
    }
    disconnect_quietly($wd, $rd);
    my $end = time;

    open(my $fh, '>', $out) or die "$out: $!";
    print $fh join(' ', $pages, $stale, $errors, $gave_up, $end,
        join(',', map { "$_:$codes{$_}" } sort keys %codes) || '-'), "\n";
    printf $fh "%.3f\n", $_ for @lat;
    close $fh or die "$out: $!";
    return $gave_up ? 1 : 0;
}

# ---------------------------------------------------------------------------------------
# main

unless ($o{'no-setup'}) {
    if (!eval { setup(); 1 }) {
        say_err("setup failed: $@");
        exit 1;
    }
    say_err("setup done: tables in $o{db}, " . BIBLIOS . " biblios, " . ITEMS_PER_WORKER
        . " items for each of $o{workers} workers");
    exit 0 if $o{'setup-only'};
}

my $dir = tempdir('koha_pages.XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $start = time;
my $deadline = $start + $o{seconds};
my %kids;    # pid => worker number
for my $w (1 .. $o{workers}) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        srand($$ ^ int($start * 1000));
        my $rc = eval { worker($w, $deadline, "$dir/worker-$w") };
        if (!defined $rc) {
            say_err("worker $w died: $@");
            $rc = 1;
        }
        _exit($rc);    # no END blocks, no temp dir cleanup in a child
    }
    $kids{$pid} = $w;
}

# Should a worker hang past every timeout, stop it (they are this process's children).
my $watchdog = $o{seconds} + $o{'max-connect-wait'} + 180;
my $interrupted = 0;
local $SIG{INT} = local $SIG{TERM} = sub { $interrupted = 1; kill 'TERM', keys %kids };
local $SIG{ALRM} = sub {
    say_err("workers still running after ${watchdog} s; stopping them");
    kill 'KILL', keys %kids;
};
alarm(int($watchdog));
my $failed = 0;
while (%kids) {
    my $pid = waitpid(-1, 0);
    next if $pid == -1 && $!{EINTR};
    last if $pid <= 0;
    my $w = delete $kids{$pid};
    next unless defined $w;
    if ($? != 0) {
        say_err("worker $w exited with status " . ($? >> 8) . ($? & 127 ? ' (signal ' . ($? & 127) . ')' : ''));
        $failed = 1;
    }
}
alarm(0);

my ($pages, $stale, $errors, $end, @lat, %codes) = (0, 0, 0, $start);
for my $w (1 .. $o{workers}) {
    my $file = "$dir/worker-$w";
    open(my $fh, '<', $file) or do { say_err("worker $w left no results"); $failed = 1; next };
    my ($p, $s, $e, $gave_up, $t, $c) = split ' ', scalar <$fh>;
    $pages += $p;
    $stale += $s;
    $errors += $e;
    $failed = 1 if $gave_up;
    $end = $t if $t > $end;
    for (split /,/, $c) {
        my ($code, $n) = split /:/;
        $codes{$code} += $n if defined $n;
    }
    while (<$fh>) { chomp; push @lat, $_ }
    close $fh;
}
@lat = sort { $a <=> $b } @lat;
my $wall = $end - $start;
printf "pages=%d seconds=%.1f pages_per_s=%.1f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f stale=%d errors=%d error_codes=%s\n",
    $pages, $wall, $wall > 0 ? $pages / $wall : 0, percentile(\@lat, 0.50), percentile(\@lat, 0.95),
    percentile(\@lat, 0.99), $stale, $errors,
    (join(',', map { "$_:$codes{$_}" } sort keys %codes) || 'none');
exit($failed || $interrupted ? 1 : 0);
