// The view in the URL: a link opens the same level, window, time, diff,
// selection and flow filters.
import { type Filter, isFilterName } from "./filters";

export const LEVELS = ["workload", "pod", "service", "namespace", "node", "external", "process", "container"] as const;
export const WINDOWS = ["10s", "30s", "1m", "5m", "15m", "1h", "6h", "24h"] as const;

export interface View {
  level: string;
  window: string;
  at: string; // RFC 3339, "" for now (live)
  since: string; // RFC 3339, "" for no diff
  namespace: string;
  sel: string; // id of the selected node or edge
  filters: Filter[];
}

export const defaultView: View = { level: "workload", window: "1m", at: "", since: "", namespace: "", sel: "", filters: [] };

const validTime = (s: string | null) => (s && !Number.isNaN(Date.parse(s)) ? new Date(s).toISOString() : "");

/** viewOf reads a URL's query; what is missing or invalid takes its default. */
export function viewOf(search: string): View {
  const q = new URLSearchParams(search);
  const pick = <T extends string>(v: string | null, allowed: readonly T[], def: T): T =>
    allowed.includes(v as T) ? (v as T) : def;
  const filters: Filter[] = [];
  for (const f of q.getAll("f")) {
    const i = f.indexOf(":");
    const name = f.slice(0, i);
    if (i > 0 && isFilterName(name) && f.slice(i + 1) !== "") filters.push([name, f.slice(i + 1)]);
  }
  return {
    level: pick(q.get("level"), LEVELS, "workload"),
    window: pick(q.get("window"), WINDOWS, "1m"),
    at: validTime(q.get("at")),
    since: validTime(q.get("since")),
    namespace: (q.get("namespace") ?? "").slice(0, 63),
    sel: q.get("sel") ?? "",
    filters,
  };
}

/** searchOf writes a view as a URL query, leaving out what is its default. */
export function searchOf(v: View): string {
  const q = new URLSearchParams();
  for (const k of ["level", "window", "at", "since", "namespace", "sel"] as const) {
    if (v[k] !== defaultView[k]) q.set(k, v[k]);
  }
  for (const [n, val] of v.filters) q.append("f", `${n}:${val}`);
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** topologyQuery is the /api/v1/topology query of a view (since makes it a diff). */
export function topologyQuery(v: View, diff: boolean): string {
  const q = new URLSearchParams({ level: v.level, window: v.window });
  if (v.at) q.set("at", v.at);
  if (v.namespace) q.set("namespace", v.namespace);
  if (diff && v.since) q.set("since", v.since);
  return q.toString();
}
