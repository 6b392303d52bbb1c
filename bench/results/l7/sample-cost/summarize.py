import json, sys, os, statistics
O = sys.argv[1]
def load(name):
    d = json.load(open(os.path.join(O, name, 'results.json')))
    s = d['scenarios'][0]
    ps = {p['name']: p for p in s['passes']}
    a = ps['agent']; c = a['cost']; t = a['traffic']
    req = t['requests']
    progs = {p['name']: p for p in c['bpf']['progs']}
    comp = a.get('completeness')
    return dict(name=name, req=req, rps=a['throughput'].get('requests_per_second', 0), base=ps['baseline']['throughput'].get('requests_per_second', 0),
        agent=c['agent_us_per_unit'], bpf=c['bpf_cpu_seconds_net']/req*1e6, total=c['total_us_per_unit'],
        send=progs['on_send']['ns_per_run'], recv=progs['on_recv']['ns_per_run'],
        sendruns=progs['on_send']['runs']/req, recvruns=progs['on_recv']['runs']/req,
        lost=a.get('lost_total'), exact=json.dumps(comp).count('"exact": true') if comp else None)
def fig(xs, fmt='{:.2f}'):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
rows = {}
for n in sorted(os.listdir(O)):
    if os.path.isdir(os.path.join(O, n)) and os.path.exists(os.path.join(O, n, 'results.json')):
        rows[n] = load(n)
for n, r in rows.items():
    print(f"{n:10} req={r['req']:7} rps={r['rps']:7.0f} base={r['base']:7.0f} agent={r['agent']:5.2f} bpf={r['bpf']:5.2f} total={r['total']:5.2f} on_send={r['send']:.0f}ns×{r['sendruns']:.2f} on_recv={r['recv']:.0f}ns×{r['recvruns']:.2f} lost={r['lost']}")
print()
print("| per HTTP request | before on | before off | before on−off | after on | after off | after on−off |")
print("|---|--:|--:|--:|--:|--:|--:|")
for label, k, fmt in [('agent CPU, µs', 'agent', '{:.2f}'), ('eBPF, µs', 'bpf', '{:.2f}'), ('total, µs', 'total', '{:.2f}'),
                      ('on_send ns/run', 'send', '{:.0f}'), ('on_recv ns/run', 'recv', '{:.0f}'), ('req/s with agent', 'rps', '{:.0f}')]:
    cells = []
    for w in ('b', 'a'):
        on = [r[k] for n, r in rows.items() if n.startswith(w + '-on-')]
        off = [r[k] for n, r in rows.items() if n.startswith(w + '-off-')]
        diffs = [rows[f'{w}-on-{i}'][k] - rows[f'{w}-off-{i}'][k] for i in range(1, 10) if f'{w}-on-{i}' in rows and f'{w}-off-{i}' in rows]
        cells += [fig(on, fmt) if on else '', fig(off, fmt) if off else '', fig(diffs, fmt) if diffs else '']
    print(f"| {label} | " + " | ".join(cells) + " |")
