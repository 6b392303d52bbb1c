#!/usr/bin/env bash
# Records real exchanges with Debian's dnsmasq, postgresql and redis-server
# on 127.0.0.1 through l7capture, for the l7 parsers' tests and seed
# corpora (internal/l7/{dns,postgres,redis}/testdata: *.samples, and
# fuzz/FuzzParser/*). Needs root (servers
# run as unprivileged users) and `apt-get install postgresql redis-server
# dnsmasq dnsutils`. Usage: hack/l7capture/record.sh [dns|postgres|redis]...
# (L7CAPTURE=path uses a built l7capture).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
cap=${L7CAPTURE:-}
if [[ -z $cap ]]; then
	go build -o "$tmp/l7capture" ./hack/l7capture
	cap="$tmp/l7capture"
fi

# wait_for runs a command until it succeeds, at most 100 times 0.1 s apart.
wait_for() {
	for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "not ready: $*" >&2; return 1
}

record_dns() {
	local out=internal/l7/dns/testdata
	mkdir -p "$out"
	dnsmasq --keep-in-foreground --user=nobody --group=nogroup --port=25353 \
		--listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
		--pid-file="$tmp/dnsmasq.pid" --local=/example.com/ --local-ttl=60 \
		--host-record=api.example.com,10.1.2.3,fd00::1:2:3 \
		--host-record=multi.example.com,10.1.2.4 --host-record=multi.example.com,10.1.2.5 \
		--cname=www.example.com,api.example.com &
	pids+=($!)
	wait_for dig +time=1 +tries=1 @127.0.0.1 -p 25353 api.example.com
	# UDP: 2 A + 1 AAAA noerror with answers, a CNAME chain, an NXDOMAIN,
	# a REFUSED (no upstream), then A and AAAA in flight at once.
	"$cap" -udp -listen 127.0.0.1:15353 -to 127.0.0.1:25353 -o "$out/udp" -corpus "$out/fuzz/FuzzParser" -idle 2s &
	local capture=$!
	sleep 0.3
	dig +tries=1 @127.0.0.1 -p 15353 api.example.com A api.example.com AAAA \
		www.example.com A multi.example.com A nope.example.com A flowlens.invalid A >/dev/null
	python3 - <<'PY'
import socket, struct
def q(i, name, t):
    h = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    return h + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", t, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q(0x4242, "api.example.com", 1), ("127.0.0.1", 15353))
s.sendto(q(0x4343, "api.example.com", 28), ("127.0.0.1", 15353))
s.recv(512); s.recv(512)
PY
	wait "$capture"
	# TCP: one connection, three queries on it.
	"$cap" -listen 127.0.0.1:15353 -to 127.0.0.1:25353 -o "$out/tcp" -corpus "$out/fuzz/FuzzParser" -conns 1 &
	capture=$!
	sleep 0.3
	dig +tcp +keepopen +tries=1 @127.0.0.1 -p 15353 api.example.com A www.example.com AAAA nope.example.com A >/dev/null
	wait "$capture"
}

record_postgres() {
	local out=internal/l7/postgres/testdata bin=/usr/lib/postgresql/15/bin
	mkdir -p "$out"
	chown postgres "$tmp"
	runuser -u postgres -- "$bin/initdb" -D "$tmp/db" -A trust -U postgres >/dev/null
	runuser -u postgres -- "$bin/postgres" -D "$tmp/db" -k "$tmp" -p 25432 -c listen_addresses=127.0.0.1 >"$tmp/pg.log" 2>&1 &
	pids+=($!)
	wait_for "$bin/pg_isready" -q -h 127.0.0.1 -p 25432
	psql -q -h 127.0.0.1 -p 25432 -U postgres -c 'CREATE TABLE t (id int, v text)' >/dev/null
	# Simple protocol (psql): 3 INSERT, 5 SELECT, 1 failing SELECT
	# (42P01), BEGIN/UPDATE/COMMIT, a DELETE, a WITH, two statements in
	# one query, and a large result (a capped sample hides most of it).
	cat >"$tmp/simple.sql" <<'SQL'
INSERT INTO t VALUES (1, 'a');
INSERT INTO t VALUES (2, 'b');
INSERT INTO t VALUES (3, 'c');
SELECT * FROM t;
SELECT count(*) FROM t;
select v from t where id = 1;
SELECT 1;
  SELECT now();
SELECT * FROM missing;
BEGIN;
UPDATE t SET v = 'z' WHERE id = 2;
COMMIT;
DELETE FROM t WHERE id = 3;
WITH x AS (SELECT 1) SELECT * FROM x;
SELECT 1\; SELECT 2;
SELECT repeat('x', 2000) FROM generate_series(1, 50);
SQL
	"$cap" -listen 127.0.0.1:15432 -to 127.0.0.1:25432 -o "$out/psql" -corpus "$out/fuzz/FuzzParser" -conns 1 &
	local capture=$!
	sleep 0.3
	psql -q -h 127.0.0.1 -p 15432 -U postgres -f "$tmp/simple.sql" >/dev/null 2>&1 || true
	wait "$capture"
	# Extended protocol (pgbench): named prepared statements reused, then
	# unnamed ones parsed each time; 5 transactions of one SELECT and one
	# INSERT each. pgbench connects twice: a check, then the client.
	cat >"$tmp/bench.sql" <<'SQL'
\set id random(1, 3)
SELECT v FROM t WHERE id = :id;
INSERT INTO t VALUES (:id, 'p');
SQL
	echo 'SELECT * FROM missing;' >"$tmp/fail.sql"
	for mode in prepared extended; do
		"$cap" -listen 127.0.0.1:15432 -to 127.0.0.1:25432 -o "$out/pgbench-$mode" -corpus "$out/fuzz/FuzzParser" -conns 2 &
		capture=$!
		sleep 0.3
		"$bin/pgbench" -n -M "$mode" -t 5 -h 127.0.0.1 -p 15432 -U postgres -f "$tmp/bench.sql" postgres >/dev/null 2>&1
		wait "$capture"
		"$cap" -listen 127.0.0.1:15432 -to 127.0.0.1:25432 -o "$out/pgbench-$mode-fail" -corpus "$out/fuzz/FuzzParser" -conns 2 &
		capture=$!
		sleep 0.3
		"$bin/pgbench" -n -M "$mode" -t 1 -h 127.0.0.1 -p 15432 -U postgres -f "$tmp/fail.sql" postgres >/dev/null 2>&1 || true
		wait "$capture"
	done
}

record_redis() {
	local out=internal/l7/redis/testdata
	mkdir -p "$out"
	chown nobody "$tmp"
	runuser -u nobody -- redis-server --port 26379 --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
	pids+=($!)
	wait_for redis-cli -p 26379 ping
	# RESP2 (redis-cli): 4 SET, 3 GET, a WRONGTYPE error, an unknown
	# command (ERR), MULTI/2 queued/EXEC, a CONFIG GET, an LRANGE of 200
	# elements (a capped sample hides most of it), a large GET.
	cat >"$tmp/cmds" <<'CMDS'
SET k1 v1
SET k2 v2
SET k3 v3
GET k1
GET k2
GET nokey
RPUSH l a b c
GET l
NOSUCHCOMMAND x
MULTI
INCR n
INCR n
EXEC
CONFIG GET maxmemory
HSET h f1 v1 f2 v2
HGETALL h
CMDS
	for i in $(seq 200); do echo "RPUSH big item-$i"; done >>"$tmp/cmds"
	echo "LRANGE big 0 -1" >>"$tmp/cmds"
	echo "SET huge $(head -c 3000 /dev/zero | tr '\0' x)" >>"$tmp/cmds"
	echo "GET huge" >>"$tmp/cmds"
	"$cap" -listen 127.0.0.1:16379 -to 127.0.0.1:26379 -o "$out/resp2" -corpus "$out/fuzz/FuzzParser" -conns 1 &
	local capture=$!
	sleep 0.3
	redis-cli -p 16379 <"$tmp/cmds" >/dev/null
	wait "$capture"
	# RESP3: HELLO 3, then maps, sets, doubles, booleans, nulls.
	"$cap" -listen 127.0.0.1:16379 -to 127.0.0.1:26379 -o "$out/resp3" -corpus "$out/fuzz/FuzzParser" -conns 1 &
	capture=$!
	sleep 0.3
	redis-cli -3 -p 16379 <<'CMDS' >/dev/null
HGETALL h
SMEMBERS nosuchset
SADD s a b
SMEMBERS s
ZADD z 1.5 a
ZSCORE z a
GET nokey
CLIENT SETNAME capture
CLIENT INFO
NOSUCHCOMMAND
CMDS
	wait "$capture"
	# Pipelining: 100 PINGs in one write.
	"$cap" -listen 127.0.0.1:16379 -to 127.0.0.1:26379 -o "$out/pipeline" -corpus "$out/fuzz/FuzzParser" -conns 1 &
	capture=$!
	sleep 0.3
	for i in $(seq 100); do printf '*1\r\n$4\r\nPING\r\n'; done | redis-cli -p 16379 --pipe >/dev/null
	wait "$capture"
}

for what in "${@:-dns postgres redis}"; do
	for w in $what; do "record_$w"; done
done
