#!/usr/bin/perl
# Binary and utf8mb4 round trips through Perl DBI + DBD::mysql, connected as Koha connects.
# Placeholders are substituted by DBD::mysql into the query text (escaped literals inside
# COM_QUERY, as Koha sends patron images, uploaded files and sessions).
# usage: blob_roundtrip.pl PORT FILE TABLE
#   FILE: a binary file stored as one BLOB and read back byte-exact
#   TABLE: table name prefix in database koha (dropped and recreated)
# Prints digests and checks; exits non-zero (die) on any mismatch.
use strict;
use warnings;
use utf8;
use DBI qw(:sql_types);
use Digest::SHA qw(sha1_hex);

binmode STDOUT, ':encoding(UTF-8)';
my ($port, $file, $table) = @ARGV;
die "usage: $0 PORT FILE TABLE\n" unless defined $table;

my $dbh = DBI->connect(
    "dbi:mysql:database=koha;host=127.0.0.1;port=$port",
    'koha', 'koha',
    { RaiseError => 1, PrintError => 0, mysql_enable_utf8 => 1 },
);
$dbh->do(q{SET NAMES 'utf8mb4'});
$dbh->do(q{SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'});

sub check_bytes {
    my ($what, $got, $want) = @_;
    die "FAIL $what: undefined\n" unless defined $got;
    if ($got ne $want) {
        my $i = 0;
        $i++ while $i < length($got) && $i < length($want)
            && substr($got, $i, 1) eq substr($want, $i, 1);
        die sprintf("FAIL %s: %d bytes read, %d written, first difference at %d\n",
            $what, length($got), length($want), $i);
    }
    print "ok $what ", length($got), ' ', sha1_hex($got), "\n";
}

my $all = join '', map { chr } 0 .. 255;
my $all4 = $all x 4;

# 1. Blobs of every byte value, and a big file, in one table.
$dbh->do("DROP TABLE IF EXISTS ${table}_blobs");
$dbh->do("CREATE TABLE ${table}_blobs (id int PRIMARY KEY, b longblob) ENGINE=InnoDB");
my $ins = $dbh->prepare("INSERT INTO ${table}_blobs (id, b) VALUES (?, ?)");
my $big = do {
    open my $fh, '<:raw', $file or die "cannot read $file: $!\n";
    local $/;
    <$fh>;
};
print 'file ', length($big), ' ', sha1_hex($big), "\n";
my %want = (1 => $all, 2 => $all4, 3 => scalar reverse($all4), 4 => '', 5 => $big);
for my $id (sort { $a <=> $b } keys %want) {
    $ins->bind_param(1, $id, SQL_INTEGER);
    $ins->bind_param(2, $want{$id}, SQL_BLOB);
    $ins->execute;
}
my $sel = $dbh->prepare("SELECT b, LENGTH(b), SHA1(b) FROM ${table}_blobs WHERE id = ?");
for my $id (sort { $a <=> $b } keys %want) {
    $sel->execute($id);
    my ($b, $len, $sha) = $sel->fetchrow_array;
    check_bytes("blob $id", $b, $want{$id});
    die "FAIL blob $id: server sees $len bytes, sha1 $sha\n"
        unless $len == length($want{$id}) && $sha eq sha1_hex($want{$id});
}
$sel->finish;

# 2. One row per byte value, in several binary column types, and the whole row of them.
$dbh->do("DROP TABLE IF EXISTS ${table}_bytes");
$dbh->do("CREATE TABLE ${table}_bytes (n int PRIMARY KEY, c binary(1), vb varbinary(256),
          bn binary(255), tb tinyblob, bl blob) ENGINE=InnoDB");
$ins = $dbh->prepare("INSERT INTO ${table}_bytes VALUES (?, ?, ?, ?, ?, ?)");
for my $n (0 .. 255) {
    my $byte = chr $n;
    $ins->bind_param(1, $n, SQL_INTEGER);
    $ins->bind_param($_, $byte x ($_ == 4 ? 255 : $_), SQL_BLOB) for 2 .. 6;
    $ins->execute;
}
my $rows = $dbh->selectall_arrayref("SELECT n, c, vb, bn, tb, bl FROM ${table}_bytes ORDER BY n");
die 'FAIL byte rows: ' . scalar(@$rows) . "\n" unless @$rows == 256;
my $concat = '';
for my $r (@$rows) {
    my ($n, @cols) = @$r;
    my $byte = chr $n;
    for my $i (0 .. $#cols) {
        my $want = $byte x ($i == 2 ? 255 : $i + 2);
        $want = $byte if $i == 0;
        check_quiet("byte $n column $i", $cols[$i], $want);
        $concat .= $cols[$i];
    }
}
print 'ok byte rows ', length($concat), ' ', sha1_hex($concat), "\n";

sub check_quiet {
    my ($what, $got, $want) = @_;
    die "FAIL $what: got " . (defined $got ? unpack('H*', $got) : 'NULL')
        . ', want ' . unpack('H*', $want) . "\n"
        unless defined $got && $got eq $want;
}

# A single row whose every column holds all 256 byte values.
$dbh->do("DROP TABLE IF EXISTS ${table}_row");
$dbh->do("CREATE TABLE ${table}_row (vb varbinary(256), bn binary(255), tb tinyblob, bl blob,
          mb mediumblob, lb longblob) ENGINE=InnoDB");
$ins = $dbh->prepare("INSERT INTO ${table}_row VALUES (?, ?, ?, ?, ?, ?)");
my @row = ($all, substr($all, 1), substr($all, 0, 255), $all, $all x 1000, $all4);
$ins->bind_param($_ + 1, $row[$_], SQL_BLOB) for 0 .. $#row;
$ins->execute;
my @got = $dbh->selectrow_array("SELECT * FROM ${table}_row");
check_bytes("whole row column $_", $got[$_], $row[$_]) for 0 .. $#row;

# 3. utf8mb4 text: emoji, CJK, combining marks, right-to-left, and long runs of code points.
$dbh->do("DROP TABLE IF EXISTS ${table}_text");
$dbh->do("CREATE TABLE ${table}_text (id int PRIMARY KEY, t longtext)
          ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci");
my @texts = (
    '📚 図書館 Bibliothèque',
    "e\x{301}\x{302} a\x{30A} n\x{303} Å Å",
    'שלום עולם مرحبا 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🧑‍💻 👩🏽‍🔬 🇫🇮',
    q{quotes ' " \\ and ` backticks; -- not a comment},
    join('', map { chr } grep { $_ < 0xD800 || $_ > 0xDFFF } 0x20 .. 0x7E, 0xA0 .. 0x2FFF),
    join('', map { chr } 0x1F300 .. 0x1F64F, 0x20000 .. 0x20200),
);
$ins = $dbh->prepare("INSERT INTO ${table}_text VALUES (?, ?)");
$ins->execute($_ + 1, $texts[$_]) for 0 .. $#texts;
for my $i (0 .. $#texts) {
    my ($t, $chars) = $dbh->selectrow_array(
        "SELECT t, CHAR_LENGTH(t) FROM ${table}_text WHERE id = ?", undef, $i + 1);
    die "FAIL text $i not decoded\n" unless utf8::is_utf8($t) || $t !~ /[^\x00-\x7f]/;
    die "FAIL text $i: server counts $chars characters, wrote " . length($texts[$i]) . "\n"
        unless $chars == length($texts[$i]);
    my ($a, $b) = ($t, $texts[$i]);
    utf8::encode($a);
    utf8::encode($b);
    check_bytes("text $i", $a, $b);
}
# The same text found by a placeholder in a WHERE clause.
my ($id) = $dbh->selectrow_array("SELECT id FROM ${table}_text WHERE t = ?", undef, $texts[0]);
die "FAIL lookup by utf8mb4 text\n" unless defined $id && $id == 1;
print "ok lookup by text\n";

undef $sel;
undef $ins;
$dbh->do("DROP TABLE ${table}_$_") for qw(blobs bytes row text);
$dbh->disconnect;
print "done\n";
