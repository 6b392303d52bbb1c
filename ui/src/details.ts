// The details panel: a node's metadata (what its recent flows carry) and
// its edges, or an edge's figures and its most recent flows.
import { type Endpoint, type FlowRecord, type Graph, type Series, type TopoEdge, type TopoNode, getJSON, seriesQuery } from "./api";
import { byId, h } from "./dom";
import { type Filter, edgeFilters, endpointFilters, flowQuery } from "./filters";
import { bytes, count, micros, rate } from "./format";
import { flowRow } from "./flows";
import { failuresOf, namedByDNS } from "./model";
import { byProtocol, errorRate, latencyText } from "./requests";
import { edgeChart, sparkline } from "./spark";

/** The most edges one series request carries (the API's limit). */
const MAX_SERIES_EDGES = 64;

function edgeSeries(topologyQuery: string, ids: string[], signal: AbortSignal): Promise<Series> {
  return getJSON<Series>(`/api/v1/topology/series?${seriesQuery(topologyQuery, ids)}`, signal);
}

/** sparkEdges are the edges of a node that get a sparkline: the busiest, as many as one request serves. */
export function sparkEdges(edges: TopoEdge[]): string[] {
  return [...edges].sort((a, b) => b.connections_opened + failuresOf(b) - (a.connections_opened + failuresOf(a)) || a.id.localeCompare(b.id))
    .slice(0, MAX_SERIES_EDGES).map((e) => e.id);
}

async function recentFlows(fs: Filter[], signal: AbortSignal, last = "20"): Promise<FlowRecord[]> {
  const resp = await fetch(`/api/v1/flows?${flowQuery(fs, { last })}`, { signal });
  if (!resp.ok) throw new Error(`flows: ${resp.status} ${(await resp.text()).trim()}`);
  const text = await resp.text();
  return text.split("\n").filter((l) => l.trim() && !l.includes('"lost_records"')).map((l) => JSON.parse(l) as FlowRecord);
}

/**
 * edgeFlows is an edge's most recent flows. Where both ends' records name
 * both ends (Kubernetes), one query selects them; otherwise (a plain
 * host's processes: the client's record knows only the server's address)
 * each end's flows are read and kept where the other end saw the same
 * connection.
 */
async function edgeFlows(e: TopoEdge, signal: AbortSignal): Promise<FlowRecord[]> {
  const from = endpointFilters(e.source, "from"), to = endpointFilters(e.destination, "to");
  if (!from || !to) {
    // One end no filter names (an external end named by DNS): the other
    // end's flows, kept where this end is the one named.
    const recs = from || to ? await recentFlows(from ?? to ?? [], signal, "200") : [];
    return recs.filter((r) => (from ? matchesSide(r.destination, e.destination) : matchesSide(r.source, e.source))).slice(-20);
  }
  const both = await recentFlows(edgeFilters(e.source, e.destination), signal);
  if (both.length > 0) return both;
  const [a, b] = await Promise.all([recentFlows(from, signal, "200"), recentFlows(to, signal, "200")]);
  return pairedFlows(a, b).slice(-20);
}

const connKey = (r: FlowRecord) => `${r.protocol} ${r.source.ip} ${r.source.port}`;

/** pairedFlows keeps the records of connections both lists saw (by client address and port), oldest first. */
export function pairedFlows(a: FlowRecord[], b: FlowRecord[]): FlowRecord[] {
  const inA = new Set(a.map(connKey)), inB = new Set(b.map(connKey));
  const seen = new Set<string>();
  return [...a.filter((r) => inB.has(connKey(r))), ...b.filter((r) => inA.has(connKey(r)))]
    .filter((r) => {
      const k = JSON.stringify(r); // one record may be in both lists
      return !seen.has(k) && !!seen.add(k);
    })
    .sort((x, y) => Date.parse(x.time) - Date.parse(y.time));
}

const field = (name: string, label: string, value: string) =>
  h("div", { class: "field" }, h("dt", {}, label), h("dd", { "data-field": name }, value));

function flowsTable(recs: FlowRecord[]): HTMLElement {
  if (recs.length === 0) return h("p", { class: "muted" }, "no recent flows held");
  return h("table", { class: "mini" },
    h("thead", {}, h("tr", {}, ...["time", "obs", "source", "destination", "proto", "verdict", "opened", "failed", "bytes", "rtt", "requests"].map((c) => h("th", {}, c)))),
    h("tbody", {}, ...recs.slice().reverse().map(flowRow)));
}

export function edgeFigures(e: TopoEdge): HTMLElement {
  const f = e.failures;
  return h("dl", { class: "figures connections" },
    field("connections_opened", "connections opened", count(e.connections_opened)),
    field("connections_closed", "connections closed", count(e.connections_closed)),
    field("connections_opened_per_second", "opened per second", rate(e.connections_opened_per_second)),
    field("failures", "failures", count(failuresOf(e))),
    field("refused", "refused", count(f.refused)),
    field("timeout", "timed out", count(f.timeout)),
    field("reset", "reset", count(f.reset)),
    field("unanswered", "unanswered", count(f.unanswered)),
    field("retransmits", "retransmits →/←", `${count(e.retransmits_to_destination)} / ${count(e.retransmits_to_source)}`),
    field("bytes", "bytes →/←", `${bytes(e.bytes_to_destination)} / ${bytes(e.bytes_to_source)}`),
    field("rtt", "RTT p50 / p95 / max", e.rtt_samples ? `${micros(e.rtt_p50_us)} / ${micros(e.rtt_p95_us)} / ${micros(e.rtt_max_us)}` : "no samples"),
    field("records", "flow records", count(e.records)),
  );
}

/**
 * edgeRequests is an edge's application requests: all protocols together
 * (requests, failed, error rate, rate), then per protocol its sums
 * (latency min / avg / max of the answered ones) and a row per class
 * (HTTP status class, DNS rcode, ok / error, none: never answered).
 */
export function edgeRequests(e: TopoEdge): HTMLElement {
  const title = h("h3", {}, "Requests");
  if (!e.requests) return h("section", { id: "edge-requests" }, title, h("p", { class: "muted" }, "none seen"));
  const failed = e.requests_failed ?? 0;
  const num = (name: string, v: string) => h("td", { class: "num", "data-field": name }, v);
  const lat = (name: string, us: number) => h("td", { class: "num", "data-field": name, "data-us": us }, micros(us));
  return h("section", { id: "edge-requests" }, title,
    h("dl", { class: "figures" },
      field("requests", "requests", count(e.requests)),
      field("requests_failed", "failed", `${count(failed)} (${errorRate(failed, e.requests)})`),
      field("requests_per_second", "per second", rate(e.requests_per_second ?? 0))),
    ...byProtocol(e.request_figures ?? []).map((p) => h("table", { class: "mini", "data-protocol": p.protocol },
      h("caption", {}, h("strong", {}, p.protocol), ` ${count(p.requests)} requests, ${count(p.failed)} failed (${errorRate(p.failed, p.requests)}), latency `,
        h("span", { "data-field": "latency" }, latencyText(p.latencySamples, p.latencyMinUs, p.latencyAvgUs, p.latencyMaxUs))),
      h("thead", {}, h("tr", {}, ...["class", "requests", "failed", "min", "avg", "max"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...p.classes.map((c) => h("tr", { "data-class": c.class, class: c.failed ? "failed" : undefined },
        h("td", {}, c.class), num("requests", count(c.requests)), num("failed", count(c.failed)),
        ...(c.latency_samples > 0 ? [lat("min", c.latency_min_us), lat("avg", c.latency_avg_us), lat("max", c.latency_max_us)] :
          [h("td", { class: "muted", colspan: 3 }, "none answered")])))))));
}

/** What a node's flows say about it: labels, Kubernetes node, addresses. */
export interface Seen {
  labels: Map<string, string>;
  nodes: Set<string>;
  ips: Set<string>;
  workloads: Set<string>;
  pods: Set<string>;
}

export function seenOf(recs: FlowRecord[], id: string): Seen {
  const s: Seen = { labels: new Map(), nodes: new Set(), ips: new Set(), workloads: new Set(), pods: new Set() };
  const add = (e: Endpoint) => {
    for (const [k, v] of Object.entries(e.labels ?? {})) s.labels.set(k, v);
    if (e.node_name) s.nodes.add(e.node_name);
    if (e.ip && !e.service) s.ips.add(e.ip);
    if (e.workload) s.workloads.add(`${e.workload.kind}/${e.workload.name}`);
    if (e.pod) s.pods.add(`${e.namespace}/${e.pod}`);
  };
  for (const r of recs) {
    if (matchesSide(r.source, id)) add(r.source);
    if (matchesSide(r.destination, id)) add(r.destination);
  }
  return s;
}

/** matchesSide tells whether an endpoint is the graph node id (the same rule the filters apply). */
function matchesSide(e: Endpoint, id: string): boolean {
  const [kind, rest = ""] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
  switch (kind) {
    case "workload":
      return !!e.workload && `${e.namespace}/${e.workload.kind}/${e.workload.name}` === rest;
    case "pod":
      return `${e.namespace}/${e.pod}` === rest;
    case "service":
      return !!e.service && `${e.service.namespace}/${e.service.name}` === rest;
    case "namespace":
      return e.namespace === rest;
    case "external": // named by the DNS name it was resolved from, else by its address
      return (e.dns_name ?? e.ip) === rest;
    case "process":
      return !!e.command && rest.endsWith(`/${e.command}`);
  }
  return false;
}

export class Details {
  private readonly panel = byId("details");
  private abort?: AbortController;
  /** The edge shown, as JSON: a live update redraws only what changed. */
  private shownEdge = "";
  /** Chart requests made: only the newest one's answer is drawn. */
  private charts = 0;

  clear(): void {
    this.abort?.abort();
    this.panel.dataset.kind = "";
    this.panel.dataset.id = "";
    this.panel.replaceChildren(h("p", { class: "muted" }, "Select a node or an edge on the map (or search) to see its details."));
  }

  /** showNode shows a node; topologyQuery is the map's (level, window, at, namespace), for its edges' sparklines. */
  showNode(n: TopoNode, g: Graph, topologyQuery: string): void {
    const ctl = this.begin("node", n.id);
    const trends = new Map<string, HTMLElement>();
    const edgeRow = (e: TopoEdge, other: string) => {
      const trend = h("td", { class: "trend", "data-trend": e.id });
      trends.set(e.id, trend);
      return h("tr", { "data-edge": e.id }, h("td", {}, other), h("td", { class: "num" }, count(e.connections_opened)),
        h("td", { class: "num" }, count(failuresOf(e))), h("td", { class: "num" }, bytes(e.bytes_to_destination + e.bytes_to_source)),
        h("td", { class: "num" }, e.rtt_samples ? micros(e.rtt_p50_us) : ""),
        h("td", { class: "num", title: e.requests ? `${count(e.requests_failed ?? 0)} failed` : undefined }, e.requests ? count(e.requests) : ""), trend);
    };
    const edges = (title: string, list: TopoEdge[], other: (e: TopoEdge) => string) =>
      h("section", {}, h("h3", {}, `${title} (${list.length})`),
        list.length === 0 ? h("p", { class: "muted" }, "none") :
          h("table", { class: "mini" }, h("thead", {}, h("tr", {}, ...["peer", "opened", "failed", "bytes", "rtt p50", "requests", "trend"].map((c) => h("th", {}, c)))),
            h("tbody", {}, ...list.map((e) => edgeRow(e, other(e))))));
    const seen = h("section", {}, h("h3", {}, "From its recent flows"), h("p", { class: "muted" }, "loading…"));
    const inbound = g.edges.filter((e) => e.destination === n.id), outbound = g.edges.filter((e) => e.source === n.id);
    this.panel.replaceChildren(
      h("h2", {}, n.name),
      h("dl", { class: "figures" }, field("kind", "kind", n.kind), field("namespace", "namespace", n.namespace ?? "—"), field("id", "id", n.id),
        namedByDNS(n) && field("dns_name", "DNS name", n.name)),
      edges("Inbound", inbound, (e) => e.source),
      edges("Outbound", outbound, (e) => e.destination),
      seen,
    );
    const ids = sparkEdges([...inbound, ...outbound]);
    if (ids.length > 0) {
      edgeSeries(topologyQuery, ids, ctl.signal)
        .then((ser) => {
          for (const es of ser.edges) trends.get(es.id)?.replaceChildren(sparkline(es, ser.step_seconds));
        })
        .catch((err: Error) => !ctl.signal.aborted && trends.forEach((td) => td.replaceChildren(h("span", { class: "error", title: err.message }, "—"))));
    }
    let sides = [endpointFilters(n.id, "from"), endpointFilters(n.id, "to")].filter((f): f is Filter[] => !!f);
    // A node no filter names (an external end named by DNS): its peers'
    // flows, the first few, of which seenOf keeps what names it.
    if (sides.length === 0) {
      sides = [...inbound.map((e) => endpointFilters(e.source, "from")), ...outbound.map((e) => endpointFilters(e.destination, "to"))]
        .filter((f): f is Filter[] => !!f).slice(0, 4);
    }
    Promise.all(sides.map((fs) => recentFlows(fs, ctl.signal)))
      .then((lists) => {
        const s = seenOf(lists.flat(), n.id);
        const list = (xs: Iterable<string>) => [...xs].sort().join(", ") || "—";
        seen.replaceChildren(h("h3", {}, "From its recent flows"), h("dl", { class: "figures" },
          field("workloads", "workload", list(s.workloads)), field("pods", "pods", list(s.pods)),
          field("nodes", "node", list(s.nodes)), field("ips", namedByDNS(n) ? "IPs (resolved to)" : "IPs", list(s.ips)),
          field("labels", "labels", [...s.labels].map(([k, v]) => `${k}=${v}`).sort().join(", ") || "—")));
      })
      .catch((err: Error) => !ctl.signal.aborted && seen.replaceChildren(h("p", { class: "error" }, err.message)));
  }

  /** showEdge shows an edge; topologyQuery is the map's, for its chart over the window. */
  showEdge(e: TopoEdge, topologyQuery: string): void {
    const ctl = this.begin("edge", e.id);
    this.shownEdge = JSON.stringify(e);
    const flows = h("section", { id: "edge-flows" }, h("h3", {}, "Most recent flows"), h("p", { class: "muted" }, "loading…"));
    const chart = h("section", { id: "edge-chart" }, h("h3", {}, "Over the window"), h("p", { class: "muted" }, "loading…"));
    this.panel.replaceChildren(
      h("h2", {}, h("span", { "data-field": "source" }, e.source), " → ", h("span", { "data-field": "destination" }, e.destination)),
      edgeRequests(e),
      edgeFigures(e),
      chart,
      flows,
    );
    this.drawChart(e.id, topologyQuery, ctl.signal);
    edgeFlows(e, ctl.signal)
      .then((recs) => flows.replaceChildren(h("h3", {}, "Most recent flows"), flowsTable(recs)))
      .catch((err: Error) => !ctl.signal.aborted && flows.replaceChildren(h("p", { class: "error" }, err.message)));
  }

  /** updateEdge refreshes the figures and chart of the edge shown, if it is still this one and they changed. */
  updateEdge(e: TopoEdge, topologyQuery: string): void {
    if (this.panel.dataset.kind !== "edge" || this.panel.dataset.id !== e.id || !this.abort) return;
    const shown = JSON.stringify(e);
    if (shown === this.shownEdge) return;
    this.shownEdge = shown;
    this.panel.querySelector("dl.figures.connections")?.replaceWith(edgeFigures(e));
    this.panel.querySelector("#edge-requests")?.replaceWith(edgeRequests(e));
    this.drawChart(e.id, topologyQuery, this.abort.signal);
  }

  /** drawChart fills #edge-chart with the edge's series; of overlapping requests the last one asked wins. */
  private drawChart(id: string, topologyQuery: string, signal: AbortSignal): void {
    const asked = ++this.charts;
    edgeSeries(topologyQuery, [id], signal)
      .then((ser) => {
        if (asked !== this.charts) return;
        const es = ser.edges.find((x) => x.id === id);
        this.panel.querySelector("#edge-chart")?.replaceChildren(h("h3", {}, "Over the window"),
          es ? edgeChart(ser, es) : h("p", { class: "muted" }, "no traffic in the window"));
      })
      .catch((err: Error) => !signal.aborted && asked === this.charts &&
        this.panel.querySelector("#edge-chart")?.replaceChildren(h("p", { class: "error" }, err.message)));
  }

  private begin(kind: string, id: string): AbortController {
    this.abort?.abort();
    this.abort = new AbortController();
    this.panel.dataset.kind = kind;
    this.panel.dataset.id = id;
    return this.abort;
  }
}
