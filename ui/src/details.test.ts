import { describe, expect, it } from "vitest";
import type { FlowRecord } from "./api";
import { seriesQuery } from "./api";
import { pairedFlows, seenOf, sparkEdges } from "./details";

const rec = (time: string, observer: string, srcPort: number, dstPort: number): FlowRecord => ({
  time, start: time, node: "h", observer, protocol: "tcp", verdict: "closed",
  source: { ip: "10.0.0.2", port: srcPort }, destination: { ip: "10.0.0.1", port: dstPort },
  bytes_to_destination: 0, bytes_to_source: 0,
});

describe("pairedFlows", () => {
  it("keeps the connections both ends saw, each record once, oldest first", () => {
    const clientSide = [rec("2026-01-01T00:00:01Z", "client", 4001, 80), rec("2026-01-01T00:00:02Z", "client", 4002, 81)];
    const serverSide = [rec("2026-01-01T00:00:03Z", "server", 4001, 80), rec("2026-01-01T00:00:00Z", "server", 4003, 80)];
    expect(pairedFlows(clientSide, serverSide).map((r) => `${r.observer}:${r.source.port}`)).toEqual(["client:4001", "server:4001"]);
  });
});

describe("sparkEdges", () => {
  const edge = (id: string, opened: number, refused = 0) => ({
    id, source: "a", destination: "b", connections_opened: opened, connections_closed: opened, connections_opened_per_second: 0,
    connections_closed_per_second: 0, failures: { refused, timeout: 0, reset: 0, unanswered: 0, unreachable: 0, failed: 0 },
    failures_per_second: 0, retransmits_to_destination: 0, retransmits_to_source: 0, bytes_to_destination: 0, bytes_to_source: 0,
    rtt_samples: 0, rtt_p50_us: 0, rtt_p95_us: 0, rtt_max_us: 0, records: 0,
  });
  it("keeps the busiest 64 edges, failures counting as traffic, ties by id", () => {
    const edges = Array.from({ length: 70 }, (_, i) => edge(`e${String(i).padStart(2, "0")}`, i));
    edges.push(edge("failing", 0, 500), edge("tie-b", 1000), edge("tie-a", 1000));
    const got = sparkEdges(edges);
    expect(got.length).toBe(64);
    expect(got.slice(0, 4)).toEqual(["tie-a", "tie-b", "failing", "e69"]);
    expect(got.at(-1)).toBe("e09");
  });
});

describe("seriesQuery", () => {
  it("adds each edge to the map's query", () => {
    expect(seriesQuery("level=process&window=5m", ["a1", "b2"])).toBe("level=process&window=5m&edge=a1&edge=b2");
  });
});

describe("seenOf", () => {
  it("finds an external end by the DNS name its address was resolved from, else by its address", () => {
    const named = (ip: string, dns?: string): FlowRecord => ({ ...rec("2026-01-01T00:00:01Z", "client", 4001, 443), destination: { ip, port: 443, dns_name: dns } });
    const recs = [named("10.99.0.7", "api.example.test"), named("10.99.0.8", "api.example.test"), named("10.99.0.9"), named("10.99.0.10", "other.test")];
    expect([...seenOf(recs, "external:api.example.test").ips].sort()).toEqual(["10.99.0.7", "10.99.0.8"]);
    expect([...seenOf(recs, "external:10.99.0.9").ips]).toEqual(["10.99.0.9"]);
    expect([...seenOf(recs, "external:10.99.0.7").ips]).toEqual([]); // named by its DNS name there
  });
});
