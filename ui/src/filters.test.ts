import { describe, expect, it } from "vitest";
import { cliCommand, edgeFilters, endpointFilters, flowQuery, shellQuote } from "./filters";

describe("flowQuery", () => {
  it("joins a filter's values with commas, in observe's order", () => {
    expect(flowQuery([["to-port", "80"], ["verdict", "refused"], ["verdict", "timeout"]], { last: "200", follow: "1" }))
      .toBe("last=200&follow=1&verdict=refused%2Ctimeout&to-port=80");
  });
  it("drops empty and repeated values", () => {
    expect(flowQuery([["verdict", " "], ["protocol", "tcp"], ["protocol", "tcp"]])).toBe("protocol=tcp");
  });
});

describe("cliCommand", () => {
  it("is the observe command of the filters", () => {
    expect(cliCommand([["verdict", "refused"], ["from-pod", "shop/web"]], { server: "127.0.0.1:4245", follow: true }))
      .toBe("flowlens observe --server 127.0.0.1:4245 --follow --verdict refused --from-pod shop/web");
  });
  it("quotes what a shell would read otherwise", () => {
    expect(cliCommand([["from-label", "app=web shop"], ["from-command", "it's"]]))
      .toBe(`flowlens observe --from-label 'app=web shop' --from-command 'it'\\''s'`);
  });
  it("quotes the empty word and shell metacharacters", () => {
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("$(reboot)")).toBe("'$(reboot)'");
    expect(shellQuote("10.0.0.0/8")).toBe("10.0.0.0/8");
  });
});

describe("edge and endpoint filters", () => {
  it("select a workload edge's flows by both ends", () => {
    expect(edgeFilters("workload:shop/Deployment/web", "service:shop/api"))
      .toEqual([["from-workload", "shop/Deployment/web"], ["to-service", "shop/api"]]);
  });
  it("select a process edge on one host with the node once", () => {
    expect(edgeFilters("process:h1/curl", "process:h1/c1/nginx"))
      .toEqual([["from-command", "curl"], ["node", "h1"], ["to-command", "nginx"]]);
  });
  it("know no filter for a Service as a source or a container", () => {
    expect(endpointFilters("service:shop/api", "from")).toBeUndefined();
    expect(endpointFilters("container:h1/abc", "to")).toBeUndefined();
    expect(endpointFilters("external:10.0.0.9", "to")).toEqual([["to-ip", "10.0.0.9"]]);
    expect(endpointFilters("external:api.example.test", "to")).toBeUndefined(); // a DNS name: no filter selects it
  });
});
