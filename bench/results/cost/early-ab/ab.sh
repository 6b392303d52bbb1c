#!/bin/bash
# Interleaved A/B: 9ed094a (base) against HEAD, agent pass only, tcp-5k and dns.
cd <a worktree of the repository>
for i in 1 2 3; do
  for v in base head; do
    /tmp/benchbin -scenarios tcp-5k,dns -passes agent -no-gobench -no-install -peer /tmp/peerbin -flowlens /tmp/fl-$v -agent "/tmp/fl-$v up --listen {listen}" -o /tmp/ab/$v-$i > /tmp/ab/$v-$i.log 2>&1
    echo "$v $i rc $?" >> /tmp/ab/log
  done
done
echo done >> /tmp/ab/log
