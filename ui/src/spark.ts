// Figures over time as small inline SVG: a sparkline per edge of a
// selected node, and a chart of the selected edge's figures over the
// window. Plain SVG elements with classes (style.css colors them): no
// chart library, and nothing inline the CSP would refuse.
import type { EdgeSeries, Series } from "./api";
import { h } from "./dom";
import { bytes, count, micros } from "./format";

const SVG = "http://www.w3.org/2000/svg";

/** Rounded to a tenth of a pixel: the paths stay short and stable. */
const r1 = (n: number) => Math.round(n * 10) / 10;

/**
 * linePath is an SVG path through values, spread over width, scaled so
 * that top (default their max) is the top edge and 0 the bottom; a
 * single point draws a flat segment, no values nothing.
 */
export function linePath(values: number[], width: number, height: number, top = Math.max(0, ...values)): string {
  if (values.length === 0) return "";
  const y = (v: number) => r1(top > 0 ? height - (v / top) * height : height);
  if (values.length === 1) return `M0 ${y(values[0])}H${width}`;
  const dx = width / (values.length - 1);
  return values.map((v, i) => `${i === 0 ? "M" : "L"}${r1(i * dx)} ${y(v)}`).join("");
}

export interface Bar {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** bars are the rectangles of a bar chart of values: one slot each, none for 0. */
export function bars(values: number[], width: number, height: number): Bar[] {
  const top = Math.max(0, ...values);
  const slot = width / Math.max(1, values.length);
  const out: Bar[] = [];
  values.forEach((v, i) => {
    if (v <= 0 || top <= 0) return;
    const hh = Math.max(1, (v / top) * height); // a single connection still shows
    out.push({ x: r1(i * slot), y: r1(height - hh), w: r1(Math.max(1, slot - 1)), h: r1(hh) });
  });
  return out;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** sum of a list of counts. */
export const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * sparkline draws an edge's connections opened per step, with its
 * failures in the health's red over them on one scale. Its values are in
 * data attributes, for tests and for whoever inspects it.
 */
export function sparkline(s: EdgeSeries, stepSeconds: number): SVGSVGElement {
  const w = 64, hh = 16;
  const top = Math.max(0, ...s.connections_opened, ...s.failures);
  const el = svg("svg", {
    class: "spark", viewBox: `0 0 ${w} ${hh + 2}`, width: w, height: hh + 2, role: "img",
    "aria-label": `per ${stepSeconds} s: ${count(sum(s.connections_opened))} opened, ${count(sum(s.failures))} failed`,
    "data-series": "connections_opened", "data-values": s.connections_opened.join(","), "data-failures": s.failures.join(","),
  });
  const g = svg("g", { transform: "translate(0 1)" });
  g.append(svg("path", { class: "opened", d: linePath(s.connections_opened, w, hh, top) }));
  if (s.failures.some((v) => v > 0)) g.append(svg("path", { class: "failed", d: linePath(s.failures, w, hh, top) }));
  el.append(g);
  return el;
}

/** A figure of the edge chart: what it plots and how its values read. */
interface Figure {
  name: string;
  label: string;
  values: (s: EdgeSeries) => number[];
  format: (n: number) => string;
  kind: "bars" | "line";
  cls?: string;
}

const FIGURES: Figure[] = [
  { name: "connections_opened", label: "opened", values: (s) => s.connections_opened, format: count, kind: "bars" },
  { name: "failures", label: "failed", values: (s) => s.failures, format: count, kind: "bars", cls: "bad" },
  { name: "retransmits", label: "retransmits", values: (s) => s.retransmits_to_destination.map((v, i) => v + s.retransmits_to_source[i]), format: count, kind: "bars", cls: "warn" },
  { name: "bytes_to_destination", label: "bytes →", values: (s) => s.bytes_to_destination, format: bytes, kind: "bars" },
  { name: "bytes_to_source", label: "bytes ←", values: (s) => s.bytes_to_source, format: bytes, kind: "bars" },
  { name: "rtt_p95_us", label: "RTT p95", values: (s) => s.rtt_p95_us, format: micros, kind: "line" },
  { name: "rtt_max_us", label: "RTT max", values: (s) => s.rtt_max_us, format: micros, kind: "line" },
];

/** chartCaption says what a chart covers: its window and step. */
export function chartCaption(ser: Series): string {
  const t = (iso: string) => new Date(iso).toLocaleTimeString();
  return `${t(ser.window_start)}–${t(ser.window_end)}, per ${ser.step_seconds} s`;
}

/**
 * edgeChart draws an edge's figures over the window, one row each (small
 * multiples on their own scales), each with its largest value beside it.
 */
export function edgeChart(ser: Series, s: EdgeSeries): HTMLElement {
  const w = 240, hh = 28;
  const rows = FIGURES.map((f) => {
    const values = f.values(s);
    const top = Math.max(0, ...values);
    const el = svg("svg", {
      class: "chart-row", viewBox: `0 0 ${w} ${hh + 2}`, width: w, height: hh + 2, role: "img",
      "aria-label": `${f.label} per ${ser.step_seconds} s, at most ${f.format(top)}`,
      "data-series": f.name, "data-values": values.join(","),
    });
    const g = svg("g", { transform: "translate(0 1)" });
    g.append(svg("line", { class: "axis", x1: 0, y1: hh, x2: w, y2: hh }));
    if (f.kind === "bars") {
      for (const b of bars(values, w, hh)) g.append(svg("rect", { x: b.x, y: b.y, width: b.w, height: b.h }));
    } else if (top > 0) {
      g.append(svg("path", { class: "line", d: linePath(values, w, hh, top) }));
    }
    el.append(g);
    return h("div", { class: `chart-line ${f.cls ?? ""}`.trim() }, h("span", { class: "muted" }, f.label), el,
      h("span", { class: "num" }, f.format(top)));
  });
  return h("div", { class: "chart" }, ...rows, h("p", { class: "muted" }, chartCaption(ser)));
}
