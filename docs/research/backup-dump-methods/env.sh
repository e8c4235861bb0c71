# Sourced by the other scripts: ports of the benchmark sandbox (kohaproxy sandbox up --dir $BKDIR ...).
BKDIR=${BKDIR:-/tmp/bkbench}
port_of() { python3 -c "import json,sys; print([s['port'] for s in json.load(open('$1/sandbox.json'))['servers'] if s['name']=='$2'][0])"; }
MASTER_PORT=$(port_of "$BKDIR" db1)
REPLICA_PORT=$(port_of "$BKDIR" db2)
OUT=${OUT:-/tmp/bkout}
