// The map's model: what elements a topology answer (and a diff) make, and
// how to get from the elements on screen to them in place, so that a live
// update never re-lays out, re-zooms or deselects what the user looks at.
import type { Diff, Graph, TopoEdge, TopoNode } from "./api";
import { requestsBad } from "./requests";
import { isIP } from "./search";

export type Health = "ok" | "warn" | "bad";
export type Mark = "appeared" | "vanished" | "changed" | "";

export interface NodeData {
  id: string;
  label: string;
  kind: string;
  namespace: string;
  name: string;
  /** An external end named by the DNS name its address was resolved from, not by the address. */
  dns: boolean;
  parent?: string;
  size: number;
  traffic: number;
  mark: Mark;
}

export interface EdgeData {
  id: string;
  source: string;
  target: string;
  width: number;
  health: Health;
  opened: number;
  failures: number;
  requests: number;
  requestsFailed: number;
  mark: Mark;
  edge: TopoEdge;
}

export interface GroupData {
  id: string;
  label: string;
  group: true;
}

export type ElementData = NodeData | EdgeData | GroupData;

export interface Element {
  group: "nodes" | "edges";
  data: ElementData;
}

/** failuresOf sums an edge's failed connections over every verdict. */
export function failuresOf(e: TopoEdge): number {
  const f = e.failures;
  return f.refused + f.timeout + f.reset + f.unanswered + f.unreachable + f.failed;
}

/**
 * healthOf colors an edge: bad when a tenth or more of its connections
 * failed or more than 5 % of its requests, warn when any connection or
 * request failed or a segment was sent again, else ok.
 */
export function healthOf(e: TopoEdge): Health {
  const failed = failuresOf(e);
  if ((failed > 0 && failed * 10 >= e.connections_opened + failed) || requestsBad(e)) return "bad";
  if (failed > 0 || (e.requests_failed ?? 0) > 0 || e.retransmits_to_destination + e.retransmits_to_source > 0) return "warn";
  return "ok";
}

/** namedByDNS tells an external node named by a DNS answer (external:api.example.com) from one named by its address. */
export const namedByDNS = (n: TopoNode) => n.kind === "external" && !isIP(n.name);

/** Traffic grows sizes by its logarithm: a 10,000-connection edge stays drawable beside a 1-connection one. */
const logScale = (n: number, base: number, step: number, cap: number) =>
  Math.min(cap, base + step * Math.log10(1 + n));

export const edgeWidth = (e: TopoEdge) => logScale(e.connections_opened + failuresOf(e), 1, 2.5, 14);
export const nodeSize = (traffic: number) => logScale(traffic, 22, 10, 80);

/**
 * groupOf is the compound node a graph node sits in: its Kubernetes
 * namespace, or for a plain host's processes and containers the host.
 */
export function groupOf(n: TopoNode): string | undefined {
  if (n.namespace) return `group:ns/${n.namespace}`;
  if (n.kind === "process" || n.kind === "container") {
    const host = n.name.split("/")[0];
    if (host) return `group:host/${host}`;
  }
  return undefined;
}

function groupLabel(id: string): string {
  const [kind, name] = id.slice("group:".length).split(/\/(.*)/s);
  return kind === "ns" ? `namespace ${name}` : `host ${name}`;
}

/** Marks of a diff, by element id. */
export interface Marks {
  nodes: Map<string, Mark>;
  edges: Map<string, Mark>;
}

export function marksOf(d: Diff): Marks {
  const m: Marks = { nodes: new Map(), edges: new Map() };
  for (const n of d.nodes.appeared) m.nodes.set(n.id, "appeared");
  for (const n of d.nodes.vanished) m.nodes.set(n.id, "vanished");
  for (const e of d.edges.appeared) m.edges.set(e.id, "appeared");
  for (const e of d.edges.vanished) m.edges.set(e.id, "vanished");
  for (const c of d.edges.changed) m.edges.set(c.id, "changed");
  return m;
}

/**
 * elementsOf is every element a graph makes: its nodes in their groups and
 * its edges. With a diff, the vanished nodes and edges are drawn too (they
 * are not in the window now) and every element carries its mark.
 */
export function elementsOf(g: Graph, diff?: Diff): Element[] {
  const nodes = [...g.nodes];
  const edges = [...g.edges];
  if (diff) {
    const have = new Set(nodes.map((n) => n.id));
    for (const n of diff.nodes.vanished) if (!have.has(n.id)) nodes.push(n);
    const haveEdge = new Set(edges.map((e) => e.id));
    for (const e of diff.edges.vanished) if (!haveEdge.has(e.id)) edges.push(e);
    // A vanished edge's ends may not be listed as vanished nodes (one end
    // still talks to others): they are in the graph, or in no list at all.
    const all = new Set(nodes.map((n) => n.id));
    for (const e of diff.edges.vanished) {
      for (const id of [e.source, e.destination]) {
        if (!all.has(id)) {
          all.add(id);
          nodes.push(nodeOfID(id));
        }
      }
    }
  }
  const marks = diff ? marksOf(diff) : undefined;
  const traffic = new Map<string, number>();
  for (const e of edges) {
    const t = e.connections_opened + failuresOf(e);
    traffic.set(e.source, (traffic.get(e.source) ?? 0) + t);
    traffic.set(e.destination, (traffic.get(e.destination) ?? 0) + t);
  }
  const out: Element[] = [];
  const groups = new Set<string>();
  for (const n of nodes) {
    const parent = groupOf(n);
    if (parent && !groups.has(parent)) {
      groups.add(parent);
      out.push({ group: "nodes", data: { id: parent, label: groupLabel(parent), group: true } });
    }
    const t = traffic.get(n.id) ?? 0;
    out.push({
      group: "nodes",
      data: {
        id: n.id, label: n.name, kind: n.kind, namespace: n.namespace ?? "", name: n.name, dns: namedByDNS(n), parent,
        size: nodeSize(t), traffic: t, mark: marks?.nodes.get(n.id) ?? "",
      },
    });
  }
  for (const e of edges) {
    out.push({
      group: "edges",
      data: {
        id: e.id, source: e.source, target: e.destination, width: edgeWidth(e), health: healthOf(e),
        opened: e.connections_opened, failures: failuresOf(e), requests: e.requests ?? 0,
        requestsFailed: e.requests_failed ?? 0, mark: marks?.edges.get(e.id) ?? "", edge: e,
      },
    });
  }
  return out;
}

/** nodeOfID reads what a node id names (kind:namespace/name), for a node no list describes. */
export function nodeOfID(id: string): TopoNode {
  const i = id.indexOf(":");
  if (i < 0) return { id, kind: id, name: id };
  const kind = id.slice(0, i);
  const rest = id.slice(i + 1);
  if (kind === "pod" || kind === "workload" || kind === "service") {
    const j = rest.indexOf("/");
    return { id, kind, namespace: rest.slice(0, j), name: rest.slice(j + 1) };
  }
  return { id, kind, name: rest };
}

/** A change of the elements on screen: what to add, remove, and update in place. */
export interface Patch {
  add: Element[];
  remove: string[];
  update: Element[];
}

/**
 * patchOf compares the elements on screen (by id) with those wanted. An
 * element whose parent changed is removed and added again: Cytoscape cannot
 * move a node between compounds by updating its data.
 */
export function patchOf(current: Map<string, ElementData>, wanted: Element[]): Patch {
  const p: Patch = { add: [], remove: [], update: [] };
  const seen = new Set<string>();
  for (const el of wanted) {
    seen.add(el.data.id);
    const cur = current.get(el.data.id);
    if (!cur) {
      p.add.push(el);
    } else if ((cur as NodeData).parent !== (el.data as NodeData).parent) {
      p.remove.push(el.data.id);
      p.add.push(el);
    } else if (!sameData(cur, el.data)) {
      p.update.push(el);
    }
  }
  for (const id of current.keys()) if (!seen.has(id)) p.remove.push(id);
  return p;
}

function sameData(a: ElementData, b: ElementData): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
