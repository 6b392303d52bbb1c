#!/bin/bash
cd /tmp/wtb
for i in 1 2 3; do
 for g in 100 50; do
  /tmp/benchbin -scenarios burst-100k -passes agent -no-gobench -no-install -peer /tmp/peerbin -flowlens /tmp/fl-new -agent "env GOGC=$g /tmp/fl-new up --listen {listen}" -o /tmp/gogc/g$g-$i > /tmp/gogc/g$g-$i.log 2>&1
 done
done
echo done > /tmp/gogc/done
