// The JSON of flowlens' HTTP API, as README.md documents it, and the
// requests the UI makes. Every request goes to the page's own origin.

export interface TopoNode {
  id: string;
  kind: string;
  namespace?: string;
  name: string;
}

export interface Failures {
  refused: number;
  timeout: number;
  reset: number;
  unanswered: number;
  unreachable: number;
  failed: number;
}

export interface TopoEdge {
  id: string;
  source: string;
  destination: string;
  connections_opened: number;
  connections_closed: number;
  connections_opened_per_second: number;
  connections_closed_per_second: number;
  failures: Failures;
  failures_per_second: number;
  retransmits_to_destination: number;
  retransmits_to_source: number;
  bytes_to_destination: number;
  bytes_to_source: number;
  rtt_samples: number;
  rtt_p50_us: number;
  rtt_p95_us: number;
  rtt_max_us: number;
  /** Application requests (omitted when none): every protocol together, and by protocol and class. */
  requests?: number;
  requests_failed?: number;
  requests_per_second?: number;
  request_figures?: RequestFigures[];
  records: number;
}

/**
 * An edge's requests of one protocol and class (HTTP 1xx–5xx, DNS the
 * rcode, PostgreSQL and Redis ok/error, none: never answered, other).
 * Latency is over the answered requests: min and max exact, avg weighted.
 */
export interface RequestFigures {
  protocol: string;
  class: string;
  requests: number;
  requests_per_second: number;
  failed: number;
  latency_samples: number;
  latency_min_us: number;
  latency_avg_us: number;
  latency_max_us: number;
}

export interface Graph {
  level: string;
  window_start: string;
  window_end: string;
  window_seconds: number;
  nodes: TopoNode[];
  edges: TopoEdge[];
}

/** One edge's figures per step (GET /api/v1/topology/series), each list `points` long. */
export interface EdgeSeries {
  id: string;
  source: string;
  destination: string;
  connections_opened: number[];
  connections_closed: number[];
  failures: number[];
  bytes_to_destination: number[];
  bytes_to_source: number[];
  retransmits_to_destination: number[];
  retransmits_to_source: number[];
  rtt_samples: number[];
  rtt_p50_us: number[];
  rtt_p95_us: number[];
  rtt_max_us: number[];
}

/** Point i covers [window_start + i*step_seconds, …+step_seconds); edges without traffic are left out. */
export interface Series {
  level: string;
  window_start: string;
  window_end: string;
  step_seconds: number;
  points: number;
  edges: EdgeSeries[];
}

/** GET /api/v1/topology/resolve: the node an address is, as its newest flow names it. */
export interface Resolved {
  level: string;
  ip: string;
  node: TopoNode;
  side: string;
  time: string;
}

export interface EdgeChange {
  id: string;
  before: TopoEdge;
  after: TopoEdge;
  changed: string[];
}

export interface Diff {
  level: string;
  window_seconds: number;
  at: string;
  since: string;
  factor: number;
  nodes: { appeared: TopoNode[]; vanished: TopoNode[] };
  edges: { appeared: TopoEdge[]; vanished: TopoEdge[]; changed: EdgeChange[] };
}

export interface Endpoint {
  ip: string;
  port: number;
  netns?: number;
  pid?: number;
  command?: string;
  container_id?: string;
  kind?: string;
  namespace?: string;
  pod?: string;
  workload?: { kind: string; name: string };
  labels?: Record<string, string>;
  node_name?: string;
  service?: { namespace: string; name: string };
  /** The name the observing side resolved this address from (a DNS answer it saw). */
  dns_name?: string;
}

export interface Latency {
  min_us: number;
  avg_us: number;
  max_us: number;
}

/** A flow's requests in one interval that look the same (internal/flow.Requests). */
export interface RequestGroup {
  protocol: string;
  tls?: boolean;
  method?: string;
  path?: string;
  host?: string;
  status?: number;
  dns_query?: string;
  dns_type?: string;
  dns_rcode?: string;
  dns_answers?: string[];
  error?: string;
  count: number;
  failed?: number;
  /** Over the answered requests; absent when none was answered. */
  latency?: Latency;
}

export interface FlowRecord {
  time: string;
  start: string;
  node: string;
  observer: string;
  protocol: string;
  verdict: string;
  source: Endpoint;
  destination: Endpoint;
  connections_opened?: number;
  connections_closed?: number;
  connections_refused?: number;
  connections_timed_out?: number;
  bytes_to_destination: number;
  bytes_to_source: number;
  rtt?: Latency;
  requests?: RequestGroup[];
}

/** A line of /api/v1/flows: a record, or the notice of records lost. */
export type FlowLine = FlowRecord | { lost_records: { count: number; reason: string; time: string } };

/** getJSON fetches a path of the API; a refusal throws with the server's reason. */
export async function getJSON<T>(path: string, signal?: AbortSignal): Promise<T> {
  const resp = await fetch(path, { signal, headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${(await resp.text()).trim()}`);
  return (await resp.json()) as T;
}

/** seriesQuery is the /api/v1/topology/series query of a view's topology query and some edges (at most 64). */
export function seriesQuery(topologyQuery: string, ids: string[]): string {
  const q = new URLSearchParams(topologyQuery);
  for (const id of ids) q.append("edge", id);
  return q.toString();
}

/** splitLines cuts a JSON-lines buffer into complete lines and the rest. */
export function splitLines(buf: string): { lines: string[]; rest: string } {
  const parts = buf.split("\n");
  const rest = parts.pop() ?? "";
  return { lines: parts.filter((l) => l.trim() !== ""), rest };
}

/**
 * streamFlows reads /api/v1/flows (with follow=1 it never ends by itself)
 * and hands each line to onLine (onOpen once the answer starts) until the stream ends or signal aborts.
 */
export async function streamFlows(
  query: string, onLine: (l: FlowLine) => void, signal: AbortSignal, onOpen: () => void,
): Promise<void> {
  const resp = await fetch(`/api/v1/flows?${query}`, { signal });
  if (!resp.ok || !resp.body) throw new Error(`flows: ${resp.status} ${(await resp.text()).trim()}`);
  onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    // A read that was under way when the stream was aborted (the user
    // changed the filters) still returns what it had: it must not reach
    // the table its successor started afresh.
    if (done || signal.aborted) break;
    const { lines, rest } = splitLines(buf + value);
    buf = rest;
    for (const l of lines) onLine(JSON.parse(l) as FlowLine);
  }
  if (!signal.aborted && buf.trim() !== "") onLine(JSON.parse(buf) as FlowLine);
}
