import { describe, expect, it } from "vitest";
import { findNode, isIP } from "./search";

describe("isIP", () => {
  it("tells addresses from names", () => {
    for (const s of ["10.0.0.1", "0.0.0.0", "255.255.255.255", "fd00::1", "::1", "::ffff:10.0.0.1", "2001:db8:0:0:0:0:0:1"]) expect(isIP(s), s).toBe(true);
    for (const s of ["10.0.0", "10.0.0.256", "01.2.3.4", "10.0.0.1/24", "10.0.0.1:80", "api", "dead:beef", "fd00::g", "shop/api", ":::", ""]) expect(isIP(s), s).toBe(false);
  });
});

describe("findNode", () => {
  const nodes = [
    { id: "workload:shop/Deployment/api", kind: "workload", namespace: "shop", name: "Deployment/api" },
    { id: "workload:shop/Deployment/api-gateway", kind: "workload", namespace: "shop", name: "Deployment/api-gateway" },
    { id: "external:10.0.0.9", kind: "external", name: "10.0.0.9" },
  ];
  it("prefers an exact id or name, then an id containing the query", () => {
    expect(findNode(nodes, "Deployment/API-gateway")?.id).toBe("workload:shop/Deployment/api-gateway");
    expect(findNode(nodes, "workload:shop/Deployment/api")?.id).toBe("workload:shop/Deployment/api");
    expect(findNode(nodes, "gateway")?.id).toBe("workload:shop/Deployment/api-gateway");
    expect(findNode(nodes, "10.0.0.9")?.id).toBe("external:10.0.0.9");
    expect(findNode(nodes, "nothing")).toBeUndefined();
    expect(findNode(nodes, "  ")).toBeUndefined();
  });
});
