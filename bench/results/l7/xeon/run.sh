#!/bin/bash
cd /tmp/wt-bench
for i in 1 2 3; do
  /tmp/benchbin -scenarios http-keepalive -passes agent -no-gobench -no-install -peer /tmp/peerbin -flowlens /tmp/fl-new -agent "/tmp/fl-new up --listen {listen}" -o /tmp/l7r/on-$i > /tmp/l7r/on-$i.log 2>&1
  /tmp/benchbin -scenarios http-keepalive -passes agent -no-gobench -no-install -peer /tmp/peerbin -flowlens /tmp/fl-new -agent "/tmp/fl-new up --listen {listen} --no-l7" -o /tmp/l7r/off-$i > /tmp/l7r/off-$i.log 2>&1
done
echo done > /tmp/l7r/done
