import { describe, expect, it } from "vitest";
import type { RequestFigures, TopoEdge } from "./api";
import { byProtocol, errorRate, groupText, latencyText, requestsBad } from "./requests";

describe("groupText", () => {
  it("reads as observe prints a group, without the HTTP host", () => {
    expect(groupText({ protocol: "http", method: "GET", path: "/users/{id}", host: "api", status: 200, count: 12, latency: { min_us: 900, avg_us: 3100, max_us: 9000 } }))
      .toEqual({ key: "http GET /users/{id} 200", text: "http GET /users/{id} 200 ×12 ~3.1 ms" });
    expect(groupText({ protocol: "http", tls: true, method: "POST", path: "/orders", status: 503, count: 2, failed: 2, latency: { min_us: 1, avg_us: 12000, max_us: 20000 } }).text)
      .toBe("https POST /orders 503 ×2 failed=2 ~12.0 ms");
  });
  it("shows DNS answers, database errors and unanswered requests", () => {
    expect(groupText({ protocol: "dns", dns_type: "A", dns_query: "api.example.test", dns_rcode: "noerror", dns_answers: ["10.99.0.7", "10.99.0.8"], count: 1, latency: { min_us: 210, avg_us: 210, max_us: 210 } }))
      .toEqual({ key: "dns A api.example.test noerror → 10.99.0.7,10.99.0.8", text: "dns A api.example.test noerror → 10.99.0.7,10.99.0.8 ×1 ~210 µs" });
    expect(groupText({ protocol: "postgres", method: "INSERT", error: "23505", count: 1, failed: 1, latency: { min_us: 800, avg_us: 800, max_us: 800 } }).text)
      .toBe("postgres INSERT error 23505 ×1 failed=1 ~800 µs");
    expect(groupText({ protocol: "redis", method: "GET", count: 3, failed: 3 }).text).toBe("redis GET ×3 unanswered failed=3");
  });
});

const fig = (protocol: string, class_: string, requests: number, failed: number, lat?: [number, number, number]): RequestFigures => ({
  protocol, class: class_, requests, requests_per_second: requests / 60, failed,
  latency_samples: lat ? requests : 0, latency_min_us: lat?.[0] ?? 0, latency_avg_us: lat?.[1] ?? 0, latency_max_us: lat?.[2] ?? 0,
});

describe("byProtocol", () => {
  it("sums each protocol, weighs the average by samples, orders classes as a reader expects", () => {
    // As the API sorts them: by protocol, then class by name.
    const got = byProtocol([
      fig("dns", "noerror", 4, 0, [100, 200, 300]), fig("dns", "none", 1, 1), fig("dns", "nxdomain", 2, 0, [50, 60, 70]),
      fig("http", "2xx", 30, 0, [1000, 2000, 9000]), fig("http", "4xx", 6, 0, [500, 800, 1200]), fig("http", "5xx", 4, 4, [3000, 5000, 12000]),
      fig("http", "none", 2, 2),
    ]);
    expect(got.map((p) => [p.protocol, p.requests, p.failed, p.latencySamples, p.latencyMinUs, p.latencyAvgUs, p.latencyMaxUs])).toEqual([
      ["dns", 7, 1, 6, 50, 153, 300], // (4×200 + 2×60) / 6 = 153.3
      ["http", 42, 6, 40, 500, 2120, 12000], // (30×2000 + 6×800 + 4×5000) / 40
    ]);
    expect(got[0].classes.map((c) => c.class)).toEqual(["noerror", "nxdomain", "none"]);
    expect(got[1].classes.map((c) => c.class)).toEqual(["2xx", "4xx", "5xx", "none"]);
    expect(got[1].perSecond).toBeCloseTo(42 / 60);
  });
  it("leaves a protocol none answered without latency, unknown classes last", () => {
    const [p] = byProtocol([fig("redis", "zzz", 1, 0), fig("redis", "none", 2, 2), fig("redis", "ok", 1, 0)]);
    expect(p.latencySamples).toBe(0);
    expect(p.classes.map((c) => c.class)).toEqual(["ok", "none", "zzz"]);
    expect(byProtocol([])).toEqual([]);
  });
});

describe("figures in words", () => {
  it("error rate and latency", () => {
    expect(errorRate(2, 40)).toBe("5.0 %");
    expect(errorRate(0, 0)).toBe("");
    expect(latencyText(3, 120, 3100, 12000)).toBe("120 µs / 3.1 ms / 12.0 ms");
    expect(latencyText(0, 0, 0, 0)).toBe("none answered");
  });
});

describe("requestsBad", () => {
  const e = (requests?: number, requests_failed?: number) => ({ requests, requests_failed }) as TopoEdge;
  it("is more than one failed request in twenty", () => {
    expect(requestsBad(e(100, 5))).toBe(false);
    expect(requestsBad(e(100, 6))).toBe(true);
    expect(requestsBad(e(1, 1))).toBe(true);
    expect(requestsBad(e())).toBe(false);
  });
});
