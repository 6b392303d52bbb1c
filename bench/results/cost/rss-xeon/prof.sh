#!/bin/bash
# As run: /tmp/benchbin is `go build ./bench`, /tmp/peerbin `go build ./test/peer`, the flowlens
# binaries builds of the commits summary.md names; /tmp/wt-test is any checkout (the bench needs go.mod).
# usage: prof.sh <flowlens bin> <outdir> [VAR=value...]: one burst-100k agent pass, heap profiles every 0.5 s
bin=$1; out=$2; shift 2
mkdir -p $out
( for i in $(seq 1 80); do sleep 0.5; curl -s -m 2 -o $out/heap-$i.pb.gz http://127.0.0.1:6061/debug/pprof/heap 2>/dev/null || rm -f $out/heap-$i.pb.gz; done ) &
poller=$!
cd /tmp/wt-test
/tmp/benchbin -scenarios burst-100k -passes agent -no-gobench -no-install -peer /tmp/peerbin -flowlens $bin -agent "env GODEBUG=gctrace=1 $* $bin up --listen {listen} --pprof-listen 127.0.0.1:6061 2>>$out/agent.log" -o $out > $out/bench.log 2>&1
kill $poller 2>/dev/null
wait
