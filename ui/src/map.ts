// The map: Cytoscape over the model. The first answer is laid out once
// (fcose, compound-aware); later answers patch the elements in place and
// place new nodes beside a neighbour, so zoom, pan and selection stay.
import cytoscape, { type Core, type ElementDefinition, type NodeSingular, type Position } from "cytoscape";
import fcose from "cytoscape-fcose";
import { type Element, type ElementData, type Patch, patchOf } from "./model";

cytoscape.use(fcose);

const css = (name: string) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function styleSheet(): cytoscape.StylesheetJson {
  const fg = css("--fg"), muted = css("--muted"), bg = css("--bg");
  return [
    {
      selector: "node",
      style: {
        label: "data(label)", width: "data(size)", height: "data(size)", "font-size": 10, color: fg,
        "text-valign": "bottom", "text-margin-y": 3, "background-color": css("--node"),
        "text-outline-color": bg, "text-outline-width": 2, "min-zoomed-font-size": 7,
      },
    },
    { selector: 'node[kind = "external"]', style: { shape: "diamond", "background-color": css("--external") } },
    { selector: "node[?dns]", style: { "background-color": css("--dns") } },
    { selector: 'node[kind = "service"]', style: { shape: "round-hexagon", "background-color": css("--service") } },
    { selector: 'node[kind = "process"], node[kind = "container"]', style: { shape: "round-rectangle" } },
    {
      selector: "node[?group]",
      style: {
        shape: "round-rectangle", "background-color": css("--group"), "background-opacity": 0.5,
        "border-color": muted, "border-width": 1, "text-valign": "top", "text-halign": "center",
        "font-size": 11, color: muted, padding: "14px",
      },
    },
    {
      selector: "edge",
      style: {
        width: "data(width)", "curve-style": "straight", "target-arrow-shape": "triangle",
        "arrow-scale": 0.8, "line-color": css("--ok"), "target-arrow-color": css("--ok"), opacity: 0.8,
      },
    },
    { selector: 'edge[health = "warn"]', style: { "line-color": css("--warn"), "target-arrow-color": css("--warn") } },
    { selector: 'edge[health = "bad"]', style: { "line-color": css("--bad"), "target-arrow-color": css("--bad") } },
    { selector: '[mark = "appeared"]', style: { "underlay-color": css("--appeared"), "underlay-opacity": 0.45, "underlay-padding": 5 } },
    { selector: '[mark = "changed"]', style: { "underlay-color": css("--changed"), "underlay-opacity": 0.45, "underlay-padding": 5 } },
    { selector: '[mark = "vanished"]', style: { "line-style": "dashed", opacity: 0.45, "border-style": "dashed", "border-width": 2, "border-color": muted } },
    { selector: ":selected", style: { "overlay-color": css("--accent"), "overlay-opacity": 0.25, "overlay-padding": 6 } },
  ];
}

export class TopologyMap {
  readonly cy: Core;
  private laidOut = false;

  constructor(container: HTMLElement, onSelect: (id: string) => void) {
    this.cy = cytoscape({
      container, style: styleSheet(), wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4,
      selectionType: "single", boxSelectionEnabled: false, textureOnViewport: true, hideEdgesOnViewport: true,
    });
    this.cy.on("tap", "node, edge", (ev) => {
      if (!ev.target.data("group")) onSelect(ev.target.id());
    });
    this.cy.on("tap", (ev) => {
      if (ev.target === this.cy) onSelect("");
    });
  }

  /** reset empties the map: the next answer is laid out afresh (a new level names other nodes). */
  reset(): void {
    this.cy.elements().remove();
    this.laidOut = false;
  }

  /** restyle reads the theme's colors again. */
  restyle(): void {
    this.cy.style(styleSheet());
  }

  /** apply brings the map to the elements wanted; it resolves once they are drawn. */
  async apply(wanted: Element[]): Promise<Patch> {
    const current = new Map<string, ElementData>();
    this.cy.elements().forEach((el) => {
      current.set(el.id(), el.data() as ElementData);
    });
    const patch = patchOf(current, wanted);
    const first = !this.laidOut;
    this.cy.batch(() => {
      for (const id of patch.remove) this.cy.getElementById(id).remove();
      const defs: ElementDefinition[] = patch.add.map((el) => ({ group: el.group, data: { ...el.data } }));
      const added = this.cy.add(defs);
      if (!first) this.place(added.nodes().filter((n) => !n.data("group")), wanted);
      for (const el of patch.update) this.cy.getElementById(el.data.id).data(el.data);
    });
    if (first && wanted.length > 0) {
      this.laidOut = true;
      await this.layout();
    }
    await nextFrame();
    return patch;
  }

  private layout(): Promise<void> {
    const l = this.cy.layout({
      name: "fcose", quality: "default", randomize: true, animate: false, nodeDimensionsIncludeLabels: true,
      packComponents: true, idealEdgeLength: 90, nodeRepulsion: 6000, nestingFactor: 0.6, numIter: 1500,
    } as cytoscape.LayoutOptions);
    const done = l.promiseOn("layoutstop");
    l.run();
    return done.then(() => {
      this.cy.fit(undefined, 30);
    });
  }

  /**
   * place puts new nodes beside a neighbour already placed, or a sibling in
   * their group, or right of everything: no layout runs, nothing moves.
   */
  private place(nodes: cytoscape.NodeCollection, wanted: Element[]): void {
    if (nodes.empty()) return;
    const neighbours = new Map<string, string[]>();
    for (const el of wanted) {
      if (el.group !== "edges") continue;
      const d = el.data as { source: string; target: string };
      neighbours.set(d.source, [...(neighbours.get(d.source) ?? []), d.target]);
      neighbours.set(d.target, [...(neighbours.get(d.target) ?? []), d.source]);
    }
    const old = this.cy.nodes().difference(nodes).filter((n) => !n.data("group"));
    const bb = old.nonempty() ? old.boundingBox() : { x2: 0, y1: 0 };
    let spare = 0;
    const placed = new Set<string>();
    const anchorOf = (n: NodeSingular): Position | undefined => {
      for (const id of neighbours.get(n.id()) ?? []) {
        const m = this.cy.getElementById(id);
        if (m.nonempty() && (placed.has(id) || !nodes.contains(m))) return m.position();
      }
      const sibling = n.parent().nonempty() ? n.parent().children().filter((c) => !nodes.contains(c) || placed.has(c.id())) : undefined;
      return sibling?.nonempty() ? (sibling.first() as NodeSingular).position() : undefined;
    };
    nodes.forEach((n, i) => {
      const a = anchorOf(n);
      // Around the anchor on a small spiral, so several newcomers do not overlap.
      const angle = i * 2.4;
      n.position(a ? { x: a.x + 70 * Math.cos(angle), y: a.y + 70 * Math.sin(angle) } : { x: bb.x2 + 80, y: bb.y1 + 60 * spare++ });
      placed.add(n.id());
    });
  }

  /** select selects one element by id (none for ""), and tells whether it exists. */
  select(id: string): boolean {
    this.cy.elements(":selected").unselect();
    if (!id) return true;
    const el = this.cy.getElementById(id);
    if (el.empty()) return false;
    el.select();
    return true;
  }

  /** focus centers an element without changing the zoom. */
  focus(id: string): void {
    const el = this.cy.getElementById(id);
    if (el.nonempty()) this.cy.animate({ center: { eles: el }, duration: 200 });
  }
}

const nextFrame = () => new Promise<void>((r) => requestAnimationFrame(() => r()));
