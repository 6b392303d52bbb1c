import { describe, expect, it } from "vitest";
import type { FlowRecord } from "./api";
import { pairedFlows } from "./details";

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
