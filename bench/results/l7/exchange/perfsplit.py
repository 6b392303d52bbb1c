# What the socket hooks' run time is spent on, from `perf script` of a
# `perf record -a -g` (cpu-clock) taken during a bench agent pass: each
# sample in on_send or on_recv is put on the function the program called
# (or on the program itself). python3 perfsplit.py a.txt b.txt
import collections, re, sys

for path in sys.argv[1:]:
    samples = open(path).read().split('\n\n')
    for prog in ('on_send', 'on_recv'):
        callee, n = collections.Counter(), 0
        for s in samples:
            frames = [re.sub(r'^\s*[0-9a-f]+\s+', '', l).split('+0x')[0].split(' (')[0]
                      for l in s.strip().split('\n')[1:]]
            at = [i for i, f in enumerate(frames) if f.startswith('bpf_prog_') and f.endswith(prog)]
            if not at:
                continue
            n += 1
            callee[frames[at[0] - 1] if at[0] > 0 else '(the program itself)'] += 1
        print(f"{path} {prog}: {n} samples")
        for k, v in callee.most_common(10):
            print(f"  {v:4d} {100 * v / n:5.1f}% {k}")
