import { describe, expect, it } from "vitest";
import type { Diff, Graph, TopoEdge } from "./api";
import { type ElementData, edgeWidth, elementsOf, groupOf, healthOf, nodeOfID, patchOf } from "./model";

const edge = (source: string, destination: string, opened: number, over: Partial<TopoEdge> = {}): TopoEdge => ({
  id: `${source}>${destination}`, source, destination, connections_opened: opened, connections_closed: opened,
  connections_opened_per_second: opened / 60, connections_closed_per_second: opened / 60,
  failures: { refused: 0, timeout: 0, reset: 0, unanswered: 0, unreachable: 0, failed: 0 }, failures_per_second: 0,
  retransmits_to_destination: 0, retransmits_to_source: 0, bytes_to_destination: 0, bytes_to_source: 0,
  rtt_samples: 0, rtt_p50_us: 0, rtt_p95_us: 0, rtt_max_us: 0, records: opened, ...over,
});

const graph = (edges: TopoEdge[]): Graph => {
  const ids = [...new Set(edges.flatMap((e) => [e.source, e.destination]))].sort();
  return { level: "workload", window_start: "", window_end: "", window_seconds: 60, nodes: ids.map(nodeOfID), edges };
};

const current = (g: Graph) => new Map<string, ElementData>(elementsOf(g).map((el) => [el.data.id, el.data]));

describe("healthOf", () => {
  const failing = (refused: number) => edge("a", "b", 90, { failures: { refused, timeout: 0, reset: 0, unanswered: 0, unreachable: 0, failed: 0 } });
  it("is ok without failures or retransmits", () => expect(healthOf(edge("a", "b", 5))).toBe("ok"));
  it("warns on retransmits", () => expect(healthOf(edge("a", "b", 5, { retransmits_to_source: 1 }))).toBe("warn"));
  it("warns below a tenth failed", () => expect(healthOf(failing(9))).toBe("warn")); // 9 of 99
  it("is bad from a tenth failed", () => expect(healthOf(failing(10))).toBe("bad")); // 10 of 100
  it("warns on a failed request, is bad past 5 % of requests failed", () => {
    expect(healthOf(edge("a", "b", 1, { requests: 100, requests_failed: 5 }))).toBe("warn");
    expect(healthOf(edge("a", "b", 1, { requests: 100, requests_failed: 6 }))).toBe("bad");
    expect(healthOf(edge("a", "b", 1, { requests: 100, requests_failed: 0 }))).toBe("ok");
  });
  it("is bad when everything failed", () => expect(healthOf(edge("a", "b", 0, { failures: { refused: 0, timeout: 3, reset: 0, unanswered: 0, unreachable: 0, failed: 0 } }))).toBe("bad"));
});

describe("sizes", () => {
  it("grow with traffic and stay bounded", () => {
    expect(edgeWidth(edge("a", "b", 0))).toBe(1);
    expect(edgeWidth(edge("a", "b", 9))).toBeCloseTo(3.5);
    expect(edgeWidth(edge("a", "b", 1e12))).toBe(14);
  });
});

describe("groupOf and nodeOfID", () => {
  it("groups by namespace, and a plain host's processes by host", () => {
    expect(groupOf(nodeOfID("workload:shop/Deployment/api"))).toBe("group:ns/shop");
    expect(groupOf(nodeOfID("process:host-1/curl"))).toBe("group:host/host-1");
    expect(groupOf(nodeOfID("external:10.0.0.1"))).toBeUndefined();
    expect(nodeOfID("service:shop/api")).toEqual({ id: "service:shop/api", kind: "service", namespace: "shop", name: "api" });
    expect(nodeOfID("apiserver")).toEqual({ id: "apiserver", kind: "apiserver", name: "apiserver" });
  });
});

describe("DNS names", () => {
  it("marks an external node named by a DNS answer, not one named by its address", () => {
    const els = elementsOf(graph([edge("process:h/curl", "external:api.example.test", 1), edge("process:h/curl", "external:10.0.0.1", 1), edge("process:h/curl", "external:fd00::1", 1)]));
    const dns = Object.fromEntries(els.filter((e) => e.group === "nodes" && "dns" in e.data).map((e) => [e.data.id, (e.data as { dns: boolean }).dns]));
    expect(dns).toEqual({ "external:10.0.0.1": false, "external:api.example.test": true, "external:fd00::1": false, "process:h/curl": false });
    const label = els.find((e) => e.data.id === "external:api.example.test")!.data;
    expect(label).toMatchObject({ label: "api.example.test", kind: "external" });
  });
});

describe("elementsOf", () => {
  it("makes each group once, nodes in it, and edges", () => {
    const els = elementsOf(graph([edge("workload:shop/Deployment/web", "workload:shop/Deployment/api", 4), edge("workload:shop/Deployment/api", "external:1.2.3.4", 1)]));
    expect(els.map((e) => e.data.id)).toEqual([
      "external:1.2.3.4", "group:ns/shop", "workload:shop/Deployment/api", "workload:shop/Deployment/web",
      "workload:shop/Deployment/web>workload:shop/Deployment/api", "workload:shop/Deployment/api>external:1.2.3.4",
    ]);
    const api = els.find((e) => e.data.id === "workload:shop/Deployment/api")!.data;
    expect(api).toMatchObject({ parent: "group:ns/shop", traffic: 5 });
  });

  it("adds a diff's vanished edges with their ends, and marks", () => {
    const g = graph([edge("a:x", "b:y", 1)]);
    const gone = edge("a:x", "c:z", 2);
    const diff: Diff = {
      level: "workload", window_seconds: 60, at: "", since: "", factor: 2,
      nodes: { appeared: [nodeOfID("b:y")], vanished: [] },
      edges: { appeared: [g.edges[0]], vanished: [gone], changed: [] },
    };
    const els = elementsOf(g, diff);
    const marks = Object.fromEntries(els.map((e) => [e.data.id, (e.data as { mark?: string }).mark]));
    expect(marks).toEqual({ "a:x": "", "b:y": "appeared", "c:z": "", "a:x>b:y": "appeared", "a:x>c:z": "vanished" });
  });
});

describe("patchOf", () => {
  const g1 = graph([edge("a:x", "b:y", 1), edge("b:y", "c:z", 1)]);
  it("changes nothing for the same answer", () => {
    expect(patchOf(current(g1), elementsOf(g1))).toEqual({ add: [], remove: [], update: [] });
  });
  it("adds, removes and updates exactly what changed", () => {
    const g2 = graph([edge("a:x", "b:y", 7), edge("a:x", "d:w", 1)]);
    const p = patchOf(current(g1), elementsOf(g2));
    expect(p.add.map((e) => e.data.id)).toEqual(["d:w", "a:x>d:w"]);
    expect(p.remove.sort()).toEqual(["b:y>c:z", "c:z"]);
    // a:x and b:y grew (traffic, size); the edge's count changed.
    expect(p.update.map((e) => e.data.id).sort()).toEqual(["a:x", "a:x>b:y", "b:y"]);
  });
  it("moves a node between groups by removing and adding it", () => {
    const cur = new Map<string, ElementData>([["p", { id: "p", label: "p", kind: "pod", namespace: "a", name: "p", dns: false, parent: "group:ns/a", size: 22, traffic: 0, mark: "" }]]);
    const p = patchOf(cur, [{ group: "nodes", data: { id: "p", label: "p", kind: "pod", namespace: "b", name: "p", dns: false, parent: "group:ns/b", size: 22, traffic: 0, mark: "" } }]);
    expect(p.remove).toEqual(["p"]);
    expect(p.add.map((e) => e.data.id)).toEqual(["p"]);
  });
});
