import json, sys, statistics, os

def load(d, name):
    """One http-keepalive run's figures per request, from d/name/results.json."""
    r = json.load(open(os.path.join(d, name, 'results.json')))
    s = r['scenarios'][0]
    ps = {p['name']: p for p in s['passes']}
    a = ps['agent']; c = a['cost']; t = a['traffic']
    req = t['requests']
    progs = {p['name']: p for p in c['bpf']['progs']}
    comp = a.get('completeness')
    # Agent-only runs (-passes agent) have no baseline: 0.
    base = ps['baseline']['throughput'].get('requests_per_second', 0) if 'baseline' in ps else 0
    return dict(name=name, req=req, base_rps=base,
        rps=a['throughput'].get('requests_per_second', 0),
        agent=c['agent_us_per_unit'], bpf=c['bpf_cpu_seconds_net']/req*1e6, total=c['total_us_per_unit'],
        wl=a.get('workload_cpu_seconds', 0), progs=progs,
        lost=a.get('lost_total'), exact=json.dumps(comp).count('"exact": true') if comp else None)


def span(xs, fmt='{:.2f}'):
    """Median (min–max) of xs."""
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def interleaved(d):
    """Every run under d (b-on-1, a-off-2, …: before/after, L7 on/off), with the socket hooks' figures."""
    rows = {}
    for n in sorted(os.listdir(d)):
        if os.path.exists(os.path.join(d, n, 'results.json')):
            r = load(d, n)
            p = r['progs']
            rows[n] = dict(r, base=r['base_rps'], send=p['on_send']['ns_per_run'], recv=p['on_recv']['ns_per_run'],
                           sendruns=p['on_send']['runs']/r['req'], recvruns=p['on_recv']['runs']/r['req'])
    for n, r in rows.items():
        print(f"{n:10} req={r['req']:7} rps={r['rps']:7.0f} base={r['base']:7.0f} agent={r['agent']:5.2f} bpf={r['bpf']:5.2f} total={r['total']:5.2f} on_send={r['send']:.0f}ns×{r['sendruns']:.2f} on_recv={r['recv']:.0f}ns×{r['recvruns']:.2f} lost={r['lost']}")
    print()
    return rows


def before_after(rows, title, on_minus_off):
    """The before/after table of interleaved rows; on_minus_off(on, off, w, k) gives a cell's difference."""
    print(title)
    print("|---|--:|--:|--:|--:|--:|--:|")
    for label, k, fmt in [('agent CPU, µs', 'agent', '{:.2f}'), ('eBPF, µs', 'bpf', '{:.2f}'), ('total, µs', 'total', '{:.2f}'),
                          ('on_send ns/run', 'send', '{:.0f}'), ('on_recv ns/run', 'recv', '{:.0f}'), ('req/s with agent', 'rps', '{:.0f}')]:
        cells = []
        for w in ('b', 'a'):
            on = [r[k] for n, r in rows.items() if n.startswith(w + '-on-')]
            off = [r[k] for n, r in rows.items() if n.startswith(w + '-off-')]
            cells += [span(on, fmt) if on else '', span(off, fmt) if off else '', on_minus_off(on, off, w, k, fmt)]
        print(f"| {label} | " + " | ".join(cells) + " |")


def medians_differ(on, off, w, k, fmt):
    """A before_after cell: on − off as the medians' difference (more on runs than off runs)."""
    return fmt.format(statistics.median(on) - statistics.median(off)) if on and off else ''


def before_after_rounds(d):
    """The before/after table of the interleaved runs under d, and after − before round by round."""
    rows = interleaved(d)
    before_after(rows, "| per HTTP request, median (range) | before on | before off | before on − off | after on | after off | after on − off |", medians_differ)
    print()
    pairs = [(rows[f'b-on-{i}']['total'], rows[f'a-on-{i}']['total']) for i in range(1, 10) if f'b-on-{i}' in rows and f'a-on-{i}' in rows]
    print("after − before, total µs per request, round by round: " + ", ".join(f"{a - b:+.2f}" for b, a in pairs)
          + f"; median {statistics.median([a - b for b, a in pairs]):+.2f}")


def main():
    if sys.argv[1] == 'before-after':  # summarize.py before-after DIR
        before_after_rounds(sys.argv[2])
        return
    if sys.argv[1] == 'runs':  # summarize.py runs DIR: each interleaved run's line
        interleaved(sys.argv[2])
        return
    O = sys.argv[1]
    runs = [n for n in sys.argv[2:]]
    rows = [load(O, n) for n in runs]
    for r in rows:
        p = r['progs']
        print(f"{r['name']:8} req={r['req']:7} base={r['base_rps']:8.0f} with={r['rps']:8.0f} agent={r['agent']:6.2f} bpf={r['bpf']:6.2f} total={r['total']:6.2f} "
              + " ".join(f"{k}={p[k]['ns_per_run']:.0f}ns×{p[k]['runs']/r['req']:.2f}/req" for k in ('on_send','on_recv','udp_egress','udp_ingress') if k in p))

    def med(xs): return statistics.median(xs)
    on = [r for r in rows if r['name'].startswith('on')]
    off = [r for r in rows if r['name'].startswith('off')]
    def fig(f, rs, fmt='{:.2f}'):
        xs = [f(r) for r in rs]
        return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
    if on and off:
        print()
        print(f"| per HTTP request (median, range of {len(on)} on / {len(off)} off) | L7 on | `--no-l7` | on − off (medians) |")
        print("|---|--:|--:|--:|")
        for label, f in [('agent CPU, µs', lambda r: r['agent']), ('eBPF run time, µs', lambda r: r['bpf']), ('sum, µs', lambda r: r['total'])]:
            print(f"| {label} | {fig(f,on)} | {fig(f,off)} | **{med([f(r) for r in on])-med([f(r) for r in off]):+.2f}** |")
        for k in ('on_send', 'on_recv', 'udp_egress', 'udp_ingress'):
            f = lambda r, k=k: r['progs'][k]['ns_per_run']
            g = lambda r, k=k: r['progs'][k]['runs']/r['req']
            h = lambda r, k=k: r['progs'][k]['time_ns']/r['req']
            print(f"| {k}: ns/run × runs/request = ns/request | {fig(f,on,'{:.0f}')} × {med([g(r) for r in on]):.2f} = {med([h(r) for r in on]):.0f} | {fig(f,off,'{:.0f}')} × {med([g(r) for r in off]):.2f} = {med([h(r) for r in off]):.0f} | {med([h(r) for r in on])-med([h(r) for r in off]):+.0f} ns |")
        f = lambda r: r['rps']; b = lambda r: r['base_rps']; c = lambda r: (r['rps']/r['base_rps']-1)*100
        print(f"| req/s with the agent | {fig(f,on,'{:,.0f}')} | {fig(f,off,'{,.0f}'.replace('{,','{:,'))} | {(med([f(r) for r in on])/med([f(r) for r in off])-1)*100:+.1f}% |")
        if not all(r['base_rps'] for r in rows):
            return
        print(f"| req/s without any agent (same run's baseline) | {fig(b,on,'{:,.0f}')} | {fig(b,off,'{:,.0f}')} | |")
        print(f"| change with the agent vs its run's baseline | {fig(c,on,'{:+.1f}%')} | {fig(c,off,'{:+.1f}%')} | |")

if __name__ == '__main__':
    main()
