#!/bin/bash
# As run: /tmp/benchbin is `go build ./bench`, /tmp/peerbin `go build ./test/peer`, the flowlens
# binaries builds of the commits summary.md names; /tmp/wt-test is any checkout (the bench needs go.mod).
# usage: rss.sh <outdir> <rounds> name=bin...: burst-100k agent passes, interleaved
out=$1; rounds=$2; shift 2
mkdir -p $out
cd /tmp/wt-test
for r in $(seq 1 $rounds); do
  for nb in "$@"; do
    n=${nb%%=*}; b=${nb#*=}
    /tmp/benchbin -scenarios burst-100k -passes agent -no-gobench -no-install -peer /tmp/peerbin -flowlens $b -agent "$b up --listen {listen}" -o $out/$n-$r > $out/$n-$r.log 2>&1
    echo "$n-$r $(grep '^| burst-100k | 100,000' $out/$n-$r/results.md | awk -F'|' '{print $4,$5}') $(grep '^| burst-100k | [0-9.]* s |' $out/$n-$r/results.md | awk -F'|' '{print $10, $11}')" >> $out/summary.txt
  done
done
