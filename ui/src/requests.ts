// Application requests as the UI shows them: a flow's request groups in a
// compact line (as `flowlens observe` prints them), and an edge's figures
// by protocol and class, summed per protocol for its panel.
import type { RequestFigures, RequestGroup, TopoEdge } from "./api";
import { micros } from "./format";

/** A request group in words: key identifies it (what observe filters on), text adds how many and how fast. */
export interface GroupText {
  key: string;
  text: string;
}

/** protocolName is a group's protocol, https for HTTP read from a TLS library. */
function protocolName(g: RequestGroup): string {
  if (!g.tls) return g.protocol;
  return g.protocol === "http" ? "https" : `${g.protocol}+tls`;
}

/**
 * groupText renders one group as observe does, but without the HTTP host
 * (the destination column names the peer already):
 *
 *	http GET /users/{id} 200 ×12 ~3.1 ms
 *	dns A api.example.test noerror → 10.99.0.7 ×1 ~210 µs
 *	redis GET ×1 unanswered failed=1
 */
export function groupText(g: RequestGroup): GroupText {
  const words = [protocolName(g)];
  const add = (...xs: (string | undefined)[]) => {
    for (const x of xs) if (x) words.push(x);
  };
  switch (g.protocol) {
    case "http":
      add(g.method, g.path, g.status ? String(g.status) : undefined);
      break;
    case "dns":
      add(g.dns_type, g.dns_query, g.dns_rcode);
      if (g.dns_answers?.length) add(`→ ${g.dns_answers.join(",")}`);
      break;
    default:
      add(g.method);
      if (g.error) add("error", g.error);
  }
  const key = words.join(" ");
  add(`×${g.count}`);
  if (!g.latency) add("unanswered");
  if (g.failed) add(`failed=${g.failed}`);
  if (g.latency) add(`~${micros(g.latency.avg_us)}`);
  return { key, text: words.join(" ") };
}

/** The classes of each protocol in the order a reader expects them (the topology's table); others follow by name. */
const CLASS_ORDER: Record<string, string[]> = {
  http: ["1xx", "2xx", "3xx", "4xx", "5xx", "other", "none"],
  dns: ["noerror", "nxdomain", "servfail", "refused", "formerr", "notimp", "other", "none"],
  postgres: ["ok", "error", "none"],
  redis: ["ok", "error", "none"],
};

const rank = (protocol: string, class_: string) => {
  const i = CLASS_ORDER[protocol]?.indexOf(class_) ?? -1;
  return i < 0 ? Number.MAX_SAFE_INTEGER : i;
};

/** An edge's requests of one protocol: the sums of its classes, and the classes. */
export interface ProtocolFigures {
  protocol: string;
  requests: number;
  failed: number;
  perSecond: number;
  /** Latency over the answered requests (samples 0: none answered); avg weighted by each class's samples. */
  latencySamples: number;
  latencyMinUs: number;
  latencyAvgUs: number;
  latencyMaxUs: number;
  classes: RequestFigures[];
}

/** byProtocol sums an edge's figures per protocol, protocols by name, classes in CLASS_ORDER. */
export function byProtocol(figs: RequestFigures[]): ProtocolFigures[] {
  const out = new Map<string, ProtocolFigures>();
  const weighted = new Map<string, number>();
  for (const f of figs) {
    let p = out.get(f.protocol);
    if (!p) {
      p = { protocol: f.protocol, requests: 0, failed: 0, perSecond: 0, latencySamples: 0, latencyMinUs: 0, latencyAvgUs: 0, latencyMaxUs: 0, classes: [] };
      out.set(f.protocol, p);
    }
    p.requests += f.requests;
    p.failed += f.failed;
    p.perSecond += f.requests_per_second;
    p.classes.push(f);
    if (f.latency_samples > 0) {
      p.latencyMinUs = p.latencySamples === 0 ? f.latency_min_us : Math.min(p.latencyMinUs, f.latency_min_us);
      p.latencyMaxUs = Math.max(p.latencyMaxUs, f.latency_max_us);
      p.latencySamples += f.latency_samples;
      weighted.set(f.protocol, (weighted.get(f.protocol) ?? 0) + f.latency_avg_us * f.latency_samples);
    }
  }
  const list = [...out.values()].sort((a, b) => a.protocol.localeCompare(b.protocol));
  for (const p of list) {
    if (p.latencySamples > 0) p.latencyAvgUs = Math.round((weighted.get(p.protocol) ?? 0) / p.latencySamples);
    p.classes.sort((a, b) => rank(p.protocol, a.class) - rank(p.protocol, b.class) || a.class.localeCompare(b.class));
  }
  return list;
}

/** errorRate is failed of requests as a percentage to one decimal, "" without requests. */
export function errorRate(failed: number, requests: number): string {
  return requests > 0 ? `${((100 * failed) / requests).toFixed(1)} %` : "";
}

/** latencyText is min / avg / max, or what says there is none. */
export function latencyText(samples: number, minUs: number, avgUs: number, maxUs: number): string {
  return samples > 0 ? `${micros(minUs)} / ${micros(avgUs)} / ${micros(maxUs)}` : "none answered";
}

/**
 * requestsBad tells an edge whose requests fail too often to look healthy:
 * more than one in twenty (5 %) failed.
 */
export function requestsBad(e: TopoEdge): boolean {
  return (e.requests_failed ?? 0) * 20 > (e.requests ?? 0);
}
