import { describe, expect, it } from "vitest";
import { defaultView, searchOf, topologyQuery, viewOf } from "./urlstate";

describe("URL state", () => {
  it("leaves defaults out of the URL", () => {
    expect(searchOf(defaultView)).toBe("");
    expect(viewOf("")).toEqual(defaultView);
  });
  it("round-trips a whole view", () => {
    const v = {
      level: "pod", window: "5m", at: "2026-11-29T20:00:00.000Z", since: "2026-11-29T19:00:00.000Z",
      namespace: "shop", sel: "workload:shop/Deployment/api", filters: [["verdict", "refused"], ["to-port", "80"]] as [never, string][],
    };
    const s = searchOf(v);
    expect(s).toBe("?level=pod&window=5m&at=2026-11-29T20%3A00%3A00.000Z&since=2026-11-29T19%3A00%3A00.000Z&namespace=shop&sel=workload%3Ashop%2FDeployment%2Fapi&f=verdict%3Arefused&f=to-port%3A80");
    expect(viewOf(s)).toEqual(v);
  });
  it("takes defaults for what is invalid", () => {
    expect(viewOf("?level=galaxy&window=15s&at=yesterday&f=nosuch:1&f=verdict:&f=port:53")).toEqual({ ...defaultView, filters: [["port", "53"]] });
  });
  it("asks the topology the view's query, and the diff only in diff mode", () => {
    const v = { ...defaultView, since: "2026-11-29T19:00:00.000Z", namespace: "shop" };
    expect(topologyQuery(v, false)).toBe("level=workload&window=1m&namespace=shop");
    expect(topologyQuery(v, true)).toBe("level=workload&window=1m&namespace=shop&since=2026-11-29T19%3A00%3A00.000Z");
  });
});
