import json, sys, statistics, os
# usage: cmp.py OUTDIR prefixA prefixB  -- medians and ranges of the bench's agent pass, per HTTP request
O, A, B = sys.argv[1:4]
def load(name):
    d = json.load(open(os.path.join(O, name, 'results.json')))
    s = d['scenarios'][0]; ps = {p['name']: p for p in s['passes']}
    a = ps['agent']; c = a['cost']; req = a['traffic']['requests']
    return dict(name=name, req=req, rps=a['throughput'].get('requests_per_second', 0),
                agent=c['agent_us_per_unit'], bpf=c['bpf_cpu_seconds_net']/req*1e6, total=c['total_us_per_unit'])
runs = sorted(d for d in os.listdir(O) if os.path.isdir(os.path.join(O, d)) and os.path.exists(os.path.join(O, d, 'results.json')))
rows = {p: [load(n) for n in runs if n.startswith(p + '-')] for p in (A, B)}
for p in (A, B):
    for r in rows[p]:
        print(f"{r['name']:8} req={r['req']:7} rps={r['rps']:7.0f} agent={r['agent']:5.2f} bpf={r['bpf']:5.2f} total={r['total']:5.2f}")
def fig(rs, k, f='{:.2f}'):
    xs = [r[k] for r in rs]
    return f"{f.format(statistics.median(xs))} ({f.format(min(xs))}–{f.format(max(xs))})"
print(f"\n| per HTTP request, median (range) | {A} ({len(rows[A])} runs) | {B} ({len(rows[B])} runs) | {B} − {A} (medians) |\n|---|--:|--:|--:|")
for k, label in [('agent', 'agent CPU, µs'), ('bpf', 'eBPF run time, µs'), ('total', 'sum, µs')]:
    d = statistics.median([r[k] for r in rows[B]]) - statistics.median([r[k] for r in rows[A]])
    print(f"| {label} | {fig(rows[A], k)} | {fig(rows[B], k)} | **{d:+.2f}** |")
print(f"| req/s with the agent | {fig(rows[A], 'rps', '{:,.0f}')} | {fig(rows[B], 'rps', '{:,.0f}')} | |")
