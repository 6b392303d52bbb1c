# Summarizes interleaved before (b-) and after (a-) http-keepalive runs, L7 on and --no-l7:
# python3 summarize.py http-keepalive
import sys, os, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from summarize import interleaved, before_after  # shared with ../summarize.py

rows = interleaved(sys.argv[1])


def medians(on, off, w, k, fmt):
    # More on runs than off runs: on − off is the medians' difference.
    return fmt.format(statistics.median(on) - statistics.median(off)) if on and off else ''


before_after(rows, "| per HTTP request, median (range) | before on | before off | before on − off | after on | after off | after on − off |", medians)
print()
pairs = [(rows[f'b-on-{i}']['total'], rows[f'a-on-{i}']['total']) for i in range(1, 10) if f'b-on-{i}' in rows and f'a-on-{i}' in rows]
print("after − before, total µs per request, round by round: " + ", ".join(f"{a - b:+.2f}" for b, a in pairs)
      + f"; median {statistics.median([a - b for b, a in pairs]):+.2f}")
