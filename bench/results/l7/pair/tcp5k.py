# tcp-5k runs, before (tcp5k-b-) and after (tcp5k-a-), L7 on: what the
# handshake and release hooks cost a connection. python3 tcp5k.py tcp-5k
import json, os, statistics, sys

O = sys.argv[1]
rows = {}
for n in sorted(os.listdir(O)):
    f = os.path.join(O, n, 'results.json')
    if not os.path.exists(f):
        continue
    s = json.load(open(f))['scenarios'][0]
    a = {p['name']: p for p in s['passes']}['agent']
    c, conns = a['cost'], a['traffic']['connections']
    progs = {p['name']: p for p in c['bpf']['progs']}
    comp = a.get('completeness')
    rows[n] = dict(agent=c['agent_us_per_unit'], bpf=c['bpf_cpu_seconds_net'] / conns * 1e6,
                   set_state=progs['on_set_state']['ns_per_run'], destroy=progs['on_destroy']['ns_per_run'],
                   lost=a.get('lost_total'), exact=bool(comp and comp.get('exact')))
    r = rows[n]
    print(f"{n:12} agent={r['agent']:.2f} µs/conn eBPF={r['bpf']:.2f} µs/conn on_set_state={r['set_state']:.0f} ns/run "
          f"on_destroy={r['destroy']:.0f} ns/run lost={r['lost']} exact={r['exact']}")
print()
print("| per connection, median (range) | before | after |")
print("|---|--:|--:|")
for label, k, fmt in [('agent CPU, µs', 'agent', '{:.2f}'), ('eBPF, µs', 'bpf', '{:.2f}'),
                      ('on_set_state ns/run', 'set_state', '{:.0f}'), ('on_destroy ns/run', 'destroy', '{:.0f}')]:
    cells = []
    for w in ('b', 'a'):
        xs = [r[k] for n, r in rows.items() if n.startswith(f'tcp5k-{w}-')]
        cells.append(f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})")
    print(f"| {label} | " + " | ".join(cells) + " |")
