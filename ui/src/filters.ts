// The flow table's filters: the parameters of `flowlens observe` and of
// /api/v1/flows (internal/filter.Params), as a query and as a command.
import { isIP } from "./search";

/** FILTERS lists the filters observe knows, in the order it shows them. */
export const FILTERS = [
  "verdict", "protocol", "namespace", "from-pod", "to-pod", "from-workload", "to-workload", "to-service",
  "from-ip", "to-ip", "ip", "port", "to-port", "from-label", "to-label", "from-kind", "to-kind",
  "from-command", "to-command", "from-pid", "to-pid", "from-netns", "to-netns", "observer", "node",
] as const;

export type FilterName = (typeof FILTERS)[number];

/** A filter as the user set it: repeated names match any of their values. */
export type Filter = [FilterName, string];

export const isFilterName = (s: string): s is FilterName => (FILTERS as readonly string[]).includes(s);

/** merged joins the values of each name with commas, names in FILTERS order, values in the order given. */
function merged(fs: Filter[]): [FilterName, string][] {
  const out: [FilterName, string][] = [];
  for (const name of FILTERS) {
    const vals = fs.filter(([n, v]) => n === name && v.trim() !== "").map(([, v]) => v.trim());
    if (vals.length) out.push([name, [...new Set(vals)].join(",")]);
  }
  return out;
}

/** flowQuery is the /api/v1/flows query of the filters, plus extra parameters (last, follow). */
export function flowQuery(fs: Filter[], extra: Record<string, string> = {}): string {
  const q = new URLSearchParams(extra);
  for (const [n, v] of merged(fs)) q.set(n, v);
  return q.toString();
}

/** shellQuote quotes a word for a POSIX shell when it needs it. */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_.,:/=@%+-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** cliCommand is the `flowlens observe` command that shows what the table shows. */
export function cliCommand(fs: Filter[], opts: { server?: string; follow?: boolean } = {}): string {
  const words = ["flowlens", "observe"];
  if (opts.server) words.push("--server", shellQuote(opts.server));
  if (opts.follow) words.push("--follow");
  for (const [n, v] of merged(fs)) words.push(`--${n}`, shellQuote(v));
  return words.join(" ");
}

/**
 * endpointFilters selects the flows one end of an edge takes part in, on
 * the side given: undefined when no filter names that kind of node.
 */
export function endpointFilters(nodeID: string, side: "from" | "to"): Filter[] | undefined {
  const i = nodeID.indexOf(":");
  const kind = i < 0 ? nodeID : nodeID.slice(0, i);
  const rest = nodeID.slice(i + 1);
  switch (kind) {
    case "workload":
      return [[`${side}-workload`, rest]];
    case "pod":
      return [[`${side}-pod`, rest]];
    case "service":
      return side === "to" ? [["to-service", rest]] : undefined;
    case "namespace":
      return [["namespace", rest]];
    case "external":
      // Named by a DNS answer: no filter selects an end by that name
      // (the flows carry it, details.ts keeps those that match).
      return isIP(rest) ? [[`${side}-ip`, rest]] : undefined;
    case "apiserver":
      return [[`${side}-kind`, "apiserver"]];
    case "process": {
      // host/command or host/container/command; the command is last.
      const parts = rest.split("/");
      return [[`${side}-command`, parts[parts.length - 1]], ["node", parts[0]]];
    }
  }
  return undefined;
}

/** edgeFilters selects an edge's flows: its source's side and its destination's. */
export function edgeFilters(source: string, destination: string): Filter[] {
  const out = [...(endpointFilters(source, "from") ?? []), ...(endpointFilters(destination, "to") ?? [])];
  // Both ends on one host name the node twice: once is the same filter.
  return out.filter(([n, v], i) => out.findIndex(([m, w]) => m === n && w === v) === i);
}
