#!/bin/bash
# Interleaved L7 on/off runs of the bench, each under the shared privileged lock.
set -u
B=/tmp/l7bench/flowlens-b355c74
O=${O:-/tmp/l7bench/out}
cd /tmp/l7bench/src
run() { # name scenario extra-agent-flags
  flock /tmp/flowlens-priv.lock /tmp/l7bench/bench -scenarios "$2" -no-gobench -no-install -flowlens $B -peer /tmp/l7bench/peer \
    -o $O/$1 -agent "$B up --listen {listen}$3" > $O/$1.log 2>&1
  echo "$1 rc=$? $(date +%T)"
}
run off-1 http-keepalive " --no-l7"
for i in 2 3 4; do
  run on-$i http-keepalive ""
  run off-$i http-keepalive " --no-l7"
done
run dns-on dns ""
run dns-off dns " --no-l7"
