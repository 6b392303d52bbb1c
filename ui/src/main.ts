// flowlens' web UI: wires the map, the time controls, the details panel,
// the flow table, search and the URL together.
import "./style.css";
import { type Diff, type Graph, type Resolved, getJSON } from "./api";
import { Details } from "./details";
import { byId, h } from "./dom";
import { FlowTable } from "./flows";
import { TopologyMap } from "./map";
import { type Element, type NodeData, type Patch, elementsOf } from "./model";
import { findNode, isIP } from "./search";
import { LEVELS, type View, WINDOWS, searchOf, topologyQuery, viewOf } from "./urlstate";

/** How often the live map asks for the topology: the API's resolution is 10 s, a flow shows within its 1 s interval. */
const POLL_MS = 1000;

/** What tests read instead of pixels: the Cytoscape model and render timings (ms since navigation). */
interface Probe {
  cy: unknown;
  ready: boolean;
  renders: number;
  firstRenderMs: number;
  updateMs: number[];
  lastError: string;
}

declare global {
  interface Window {
    __flowlens: Probe;
  }
}

let view: View = viewOf(location.search);
let graph: Graph | undefined;
const details = new Details();
const map = new TopologyMap(byId("map"), (id) => select(id));
const probe: Probe = { cy: map.cy, ready: false, renders: 0, firstRenderMs: 0, updateMs: [], lastError: "" };
window.__flowlens = probe;

function setView(next: Partial<View>, relayout = false): void {
  view = { ...view, ...next };
  history.replaceState(null, "", `${location.pathname}${searchOf(view)}`);
  if (relayout) map.reset();
  if ("level" in next || "window" in next || "at" in next || "since" in next || "namespace" in next) schedule(0);
}

// --- theme -------------------------------------------------------------
function applyTheme(theme: string): void {
  document.documentElement.dataset.theme = theme;
  byId("theme").setAttribute("aria-pressed", String(theme === "dark"));
  map.restyle();
}
applyTheme(localStorage.getItem("flowlens-theme") ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
function toggleTheme(): void {
  const t = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("flowlens-theme", t);
  applyTheme(t);
}
byId("theme").addEventListener("click", toggleTheme);

// --- controls ----------------------------------------------------------
const level = byId<HTMLSelectElement>("level");
const windowSel = byId<HTMLSelectElement>("window");
for (const l of LEVELS) level.append(h("option", { value: l }, l));
for (const w of WINDOWS) windowSel.append(h("option", { value: w }, w));
const at = byId<HTMLInputElement>("at");
const since = byId<HTMLInputElement>("since");
const namespace = byId<HTMLInputElement>("namespace");

/** localInput is a time as a datetime-local input holds it (local, to the second). */
function localInput(iso: string): string {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
const isoOf = (local: string) => (local ? new Date(local).toISOString() : "");

function showControls(): void {
  level.value = view.level;
  windowSel.value = view.window;
  at.value = localInput(view.at);
  since.value = localInput(view.since);
  namespace.value = view.namespace;
  byId("live").setAttribute("aria-pressed", String(!view.at));
  document.body.dataset.mode = view.since ? "diff" : "graph";
}
showControls();
level.addEventListener("change", () => setView({ level: level.value, sel: "" }, true));
windowSel.addEventListener("change", () => setView({ window: windowSel.value }));
at.addEventListener("change", () => {
  setView({ at: isoOf(at.value) });
  showControls();
});
byId("live").addEventListener("click", () => {
  setView({ at: "" });
  showControls();
});
since.addEventListener("change", () => {
  setView({ since: isoOf(since.value) });
  showControls();
});
byId("since-clear").addEventListener("click", () => {
  setView({ since: "" });
  showControls();
});
byId("since-5m").addEventListener("click", () => {
  const base = view.at ? Date.parse(view.at) : Date.now();
  setView({ since: new Date(base - 5 * 60_000).toISOString() });
  showControls();
});
namespace.addEventListener("change", () => setView({ namespace: namespace.value.trim(), sel: "" }, true));

// --- selection, details, search ----------------------------------------
function select(id: string): void {
  map.select(id);
  setView({ sel: id });
  showSelection();
}

function showSelection(): void {
  if (!view.sel || !graph) {
    details.clear();
    return;
  }
  const node = graph.nodes.find((n) => n.id === view.sel);
  const edge = graph.edges.find((e) => e.id === view.sel);
  if (node) details.showNode(node, graph, topologyQuery(view, false));
  else if (edge) details.showEdge(edge, topologyQuery(view, false));
  else details.clear();
}

const search = byId<HTMLInputElement>("search");
const searchStatus = byId("search-status");
function selectFound(id: string): void {
  select(id);
  map.focus(id);
}
/** searchIP selects the node the newest flow carrying ip names at the map's level. */
async function searchIP(ip: string): Promise<void> {
  searchStatus.textContent = `looking for ${ip}…`;
  const resp = await fetch(`/api/v1/topology/resolve?${new URLSearchParams({ level: view.level, ip })}`);
  if (resp.status === 404) {
    searchStatus.textContent = `no recent flow carries ${ip}`;
    return;
  }
  if (!resp.ok) throw new Error(`resolve ${ip}: ${resp.status} ${(await resp.text()).trim()}`);
  const found = (await resp.json()) as Resolved;
  const onMap = graph?.nodes.some((n) => n.id === found.node.id);
  searchStatus.textContent = onMap ? `${ip} is ${found.node.id}` : `${ip} is ${found.node.id}, not on the map in this window`;
  searchStatus.dataset.node = found.node.id;
  if (onMap) selectFound(found.node.id);
}
byId("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = search.value.trim();
  delete searchStatus.dataset.node;
  if (!q || !graph) return;
  if (isIP(q)) {
    searchIP(q).catch((err: Error) => (searchStatus.textContent = err.message));
    return;
  }
  const hit = findNode(graph.nodes, q);
  searchStatus.textContent = hit ? "" : `nothing named "${q}" in this window`;
  if (hit) selectFound(hit.id);
});

// --- the model list: what tests and screen readers read -------------------
const modelList = byId<HTMLUListElement>("model");
function modelItem(el: Element): HTMLLIElement {
  const li = h("li", {});
  fillItem(li, el);
  return li;
}
function fillItem(li: HTMLElement, el: Element): void {
  const d = el.data;
  li.dataset.id = d.id;
  if ("group" in d) {
    li.dataset.kind = "group";
    li.textContent = d.label;
    return;
  }
  if (el.group === "edges" && "source" in d) {
    Object.assign(li.dataset, {
      kind: "edge", source: d.source, target: d.target, opened: String(d.opened), failures: String(d.failures),
      requests: String(d.requests), requestsFailed: String(d.requestsFailed), health: d.health, mark: d.mark,
    });
    const reqs = d.requests ? `, ${d.requests} requests, ${d.requestsFailed} failed` : "";
    li.replaceChildren(h("button", { type: "button", "data-select": d.id }, `edge ${d.source} → ${d.target}: ${d.opened} opened, ${d.failures} failed${reqs}`));
    return;
  }
  const n = d as NodeData;
  Object.assign(li.dataset, { kind: "node", nodeKind: n.kind, namespace: n.namespace, name: n.name, dns: String(n.dns), mark: n.mark });
  li.replaceChildren(h("button", { type: "button", "data-select": n.id }, `${n.kind} ${n.namespace ? n.namespace + "/" : ""}${n.name}${n.dns ? " (DNS name)" : ""}`));
}
modelList.addEventListener("click", (ev) => {
  const id = (ev.target as HTMLElement).closest<HTMLElement>("[data-select]")?.dataset.select;
  if (id) select(id);
});
function syncModel(p: Patch): void {
  for (const id of p.remove) modelList.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
  for (const el of p.update) {
    const li = modelList.querySelector<HTMLElement>(`li[data-id="${CSS.escape(el.data.id)}"]`);
    if (li) fillItem(li, el);
  }
  modelList.append(...p.add.map(modelItem));
}

// --- the live loop ------------------------------------------------------
let timer = 0;
let generation = 0;
function schedule(ms: number): void {
  clearTimeout(timer);
  timer = window.setTimeout(refresh, ms);
}

async function refresh(): Promise<void> {
  const gen = ++generation;
  const started = performance.now();
  try {
    const [g, diff] = await Promise.all([
      getJSON<Graph>(`/api/v1/topology?${topologyQuery(view, false)}`),
      view.since ? getJSON<Diff>(`/api/v1/topology?${topologyQuery(view, true)}`) : Promise.resolve(undefined),
    ]);
    if (gen !== generation) return; // the view changed meanwhile
    graph = g;
    const patch = await map.apply(elementsOf(g, diff));
    syncModel(patch);
    byId("search-list").replaceChildren(...g.nodes.map((n) => h("option", { value: n.id })));
    const took = performance.now() - started;
    if (!probe.ready) {
      probe.firstRenderMs = performance.now();
      probe.ready = true;
      if (view.sel && map.select(view.sel)) showSelection();
    } else {
      probe.updateMs.push(took);
      const sel = view.sel ? g.edges.find((e) => e.id === view.sel) : undefined;
      if (sel) details.updateEdge(sel, topologyQuery(view, false));
    }
    probe.renders++;
    probe.lastError = "";
    const diffText = diff ? ` · since ${new Date(diff.since).toLocaleTimeString()}: +${diff.edges.appeared.length} −${diff.edges.vanished.length} ~${diff.edges.changed.length} edges` : "";
    byId("status").textContent = `${g.level} · ${new Date(g.window_start).toLocaleTimeString()}–${new Date(g.window_end).toLocaleTimeString()} · ${g.nodes.length} nodes · ${g.edges.length} edges${diffText} · ${view.at ? "at a past time" : "live"}`;
  } catch (err) {
    probe.lastError = (err as Error).message;
    byId("status").textContent = `error: ${probe.lastError}`;
  }
  if (gen === generation && !view.at) schedule(POLL_MS);
}

// --- keyboard -----------------------------------------------------------
document.addEventListener("keydown", (ev) => {
  const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement || ev.target instanceof HTMLTextAreaElement;
  if (ev.key === "Escape") {
    if (typing) (ev.target as HTMLElement).blur();
    select("");
    return;
  }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const cy = map.cy;
  const zoomBy = (f: number) => cy.zoom({ level: cy.zoom() * f, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
  const actions: Record<string, () => void> = {
    "/": () => search.focus(),
    f: () => cy.fit(undefined, 30),
    "+": () => zoomBy(1.25),
    "=": () => zoomBy(1.25),
    "-": () => zoomBy(0.8),
    t: toggleTheme,
    p: () => flowTable.togglePause(),
    ArrowLeft: () => cy.panBy({ x: 60, y: 0 }),
    ArrowRight: () => cy.panBy({ x: -60, y: 0 }),
    ArrowUp: () => cy.panBy({ x: 0, y: 60 }),
    ArrowDown: () => cy.panBy({ x: 0, y: -60 }),
  };
  const act = actions[ev.key];
  if (act) {
    ev.preventDefault();
    act();
  }
});

const flowTable = new FlowTable((fs) => setView({ filters: fs }));
flowTable.setFilters(view.filters);
details.clear();
schedule(0);
