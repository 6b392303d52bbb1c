# Summarizes interleaved before (b-) and after (a-) http-keepalive runs, L7 on and --no-l7, each
# round's on − off: python3 summarize.py interleaved
import sys, os, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from summarize import interleaved, before_after, span  # shared with ../summarize.py

rows = interleaved(sys.argv[1])


def per_round(on, off, w, k, fmt):
    diffs = [rows[f'{w}-on-{i}'][k] - rows[f'{w}-off-{i}'][k] for i in range(1, 10) if f'{w}-on-{i}' in rows and f'{w}-off-{i}' in rows]
    return span(diffs, fmt) if diffs else ''


before_after(rows, "| per HTTP request | before on | before off | before on−off | after on | after off | after on−off |", per_round)
