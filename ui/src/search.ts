// Search: a name or id finds a node of the map; an IP address asks the
// server which node the newest flow carrying it names
// (/api/v1/topology/resolve), since a node's id rarely holds its address.
import type { TopoNode } from "./api";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** isIP tells an IPv4 or IPv6 address (no CIDR, no port) from a name. */
export function isIP(s: string): boolean {
  if (IPV4.test(s)) return true;
  // IPv6: hex groups and colons, at least two colons, maybe a dotted IPv4 tail.
  if (!/^[0-9a-fA-F:.]+$/.test(s) || (s.match(/:/g)?.length ?? 0) < 2) return false;
  try {
    return new URL(`http://[${s}]/`).hostname !== "";
  } catch {
    return false;
  }
}

/** findNode is the node a name or id search means: an exact id or name first, then an id containing it. */
export function findNode(nodes: TopoNode[], query: string): TopoNode | undefined {
  const q = query.trim().toLowerCase();
  if (!q) return undefined;
  return nodes.find((n) => n.id.toLowerCase() === q || n.name.toLowerCase() === q) ??
    nodes.find((n) => n.id.toLowerCase().includes(q));
}
