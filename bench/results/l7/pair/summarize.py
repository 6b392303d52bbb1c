# Summarizes interleaved before (b-) and after (a-) http-keepalive runs, L7 on and --no-l7:
# python3 summarize.py http-keepalive
import sys, os, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from summarize import load as load_run  # the keep-alive run's figures, shared with ../summarize.py

O = sys.argv[1]
def load(name):
    r = load_run(O, name)
    p = r['progs']
    return dict(r, base=r['base_rps'], send=p['on_send']['ns_per_run'], recv=p['on_recv']['ns_per_run'],
        sendruns=p['on_send']['runs']/r['req'], recvruns=p['on_recv']['runs']/r['req'])
def fig(xs, fmt='{:.2f}'):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
rows = {}
for n in sorted(os.listdir(O)):
    if os.path.isdir(os.path.join(O, n)) and os.path.exists(os.path.join(O, n, 'results.json')):
        rows[n] = load(n)
for n, r in rows.items():
    print(f"{n:10} req={r['req']:7} rps={r['rps']:7.0f} base={r['base']:7.0f} agent={r['agent']:5.2f} bpf={r['bpf']:5.2f} total={r['total']:5.2f} on_send={r['send']:.0f}ns×{r['sendruns']:.2f} on_recv={r['recv']:.0f}ns×{r['recvruns']:.2f} lost={r['lost']}")
print()
print("| per HTTP request, median (range) | before on | before off | before on − off | after on | after off | after on − off |")
print("|---|--:|--:|--:|--:|--:|--:|")
for label, k, fmt in [('agent CPU, µs', 'agent', '{:.2f}'), ('eBPF, µs', 'bpf', '{:.2f}'), ('total, µs', 'total', '{:.2f}'),
                      ('on_send ns/run', 'send', '{:.0f}'), ('on_recv ns/run', 'recv', '{:.0f}'), ('req/s with agent', 'rps', '{:.0f}')]:
    cells = []
    for w in ('b', 'a'):
        on = [r[k] for n, r in rows.items() if n.startswith(w + '-on-')]
        off = [r[k] for n, r in rows.items() if n.startswith(w + '-off-')]
        # More on runs than off runs: on − off is the medians' difference.
        diff = fmt.format(statistics.median(on) - statistics.median(off)) if on and off else ''
        cells += [fig(on, fmt) if on else '', fig(off, fmt) if off else '', diff]
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
pairs = [(rows[f'b-on-{i}']['total'], rows[f'a-on-{i}']['total']) for i in range(1, 10) if f'b-on-{i}' in rows and f'a-on-{i}' in rows]
print("after − before, total µs per request, round by round: " + ", ".join(f"{a - b:+.2f}" for b, a in pairs)
      + f"; median {statistics.median([a - b for b, a in pairs]):+.2f}")
