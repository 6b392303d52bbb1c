#!/bin/bash
# (kept with the results: how perf.data was taken; /tmp paths as run)
# One http-keepalive run of $1 (binary) with perf sampling every CPU for 3 s of its agent pass; $2 tag.
cd /tmp/wt-exch; bin=$1; tag=$2; out=/tmp/exch-perf/$tag; mkdir -p $out
flock /tmp/flowlens-priv.lock bash -c "
  /tmp/exch-bench/benchbin -scenarios http-keepalive -passes baseline,agent -no-gobench -no-install -peer /tmp/exch-bench/peer -flowlens $bin -agent '$bin up --listen {listen}' -o $out > $out/bench.log 2>&1 &
  b=\$!
  for i in \$(seq 1 60); do grep -q 'with agent' $out/bench.log && break; sleep 0.5; done
  sleep 1.5
  perf record -a -g -o $out/perf.data -- sleep 3 > $out/perf.log 2>&1
  wait \$b
"
