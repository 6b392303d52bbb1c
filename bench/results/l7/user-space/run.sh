#!/bin/bash
# Interleaved old/new runs of the bench (http-keepalive, L7 on), each under the shared privileged lock.
# Run as: NEW=new2 RUNS="1 2 3 4" ./run.sh (old2 = 24ff206 with 17f9f84's agent/l7.go, datapath/l7.go, datapath.go; new2 = 24ff206).
set -u
O=/tmp/l7user/out
cd /tmp/l7user/src-old
run() { # name binary
  flock /tmp/flowlens-priv.lock /tmp/l7user/bench -scenarios http-keepalive -no-gobench -no-install -flowlens $2 -peer /tmp/l7user/peer \
    -o $O/$1 -agent "$2 up --listen {listen}" > $O/$1.log 2>&1
  echo "$1 rc=$? $(date +%T) $(grep -E '^http-keepalive +[0-9.]+ s' $O/$1.log | head -1)"
}
for i in ${RUNS:-1 2 3}; do
  run old2-$i /tmp/l7user/flowlens-old2
  run ${NEW:-new1}-$i /tmp/l7user/flowlens-${NEW:-new1}
done
