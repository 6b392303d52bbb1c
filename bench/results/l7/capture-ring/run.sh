#!/bin/bash
# Interleaved variants of http-keepalive with main's binary, each run under the shared lock.
OUT=/tmp/l7x; B=/tmp/fl-main20
for name in $SERIES; do
  case $name in
    v0-*) extra="" ;;
    v64-*) extra=" --l7-capture-bytes 64" ;;
    vring-*) extra=" --l7-ring-buffer-bytes 524288" ;;
    off-*) extra=" --no-l7" ;;
  esac
  echo "$name start $(date -u +%T)" >> $OUT/log
  flock /tmp/flowlens-priv.lock /tmp/benchbin20 -scenarios http-keepalive -passes baseline,agent -no-gobench -no-install -peer /tmp/l7x/peer -flowlens $B -agent "$B up --listen {listen}$extra" -o $OUT/$name > $OUT/$name.log 2>&1
  echo "$name done rc=$? $(date -u +%T)" >> $OUT/log
done
echo "series done $(date -u +%T)" >> $OUT/log
