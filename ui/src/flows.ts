// The flow table: /api/v1/flows?last=…&follow=1 with the user's filters,
// streamed, newest on top, pausable, and the same view as a CLI command.
import { type Endpoint, type FlowLine, type FlowRecord, streamFlows } from "./api";
import { byId, h } from "./dom";
import { type Filter, FILTERS, cliCommand, flowQuery, isFilterName } from "./filters";
import { bytes, clock, count, micros } from "./format";
import { groupText } from "./requests";

/** How many records the table starts with, and the most it keeps. */
const BACKLOG = 200;
const MAX_ROWS = 500;

/** endpointText names an endpoint as compactly as what it carries allows (an address by the DNS name it was resolved from). */
export function endpointText(e: Endpoint): string {
  let who = e.dns_name ?? e.ip;
  if (e.pod) who = `${e.namespace}/${e.pod}`;
  else if (e.service) who = `svc ${e.service.namespace}/${e.service.name}`;
  else if (e.command) who = `${e.command}${e.pid ? `[${e.pid}]` : ""}`;
  return `${who}:${e.port}`;
}

/** requestsCell lists a record's request groups, one a line; each carries its key and count for tests and tools. */
function requestsCell(r: FlowRecord): HTMLTableCellElement {
  return h("td", { class: "reqs" }, ...(r.requests ?? []).map((g) => {
    const { key, text } = groupText(g);
    return h("span", { class: g.failed ? "req failed" : "req", "data-key": key, "data-count": g.count, "data-failed": g.failed ?? 0, title: g.host ? `host ${g.host}` : undefined }, text);
  }));
}

export function flowRow(r: FlowRecord): HTMLTableRowElement {
  const failed = (r.connections_refused ?? 0) + (r.connections_timed_out ?? 0);
  return h("tr", { "data-verdict": r.verdict, "data-observer": r.observer },
    h("td", {}, clock(r.time)),
    h("td", {}, r.observer),
    h("td", { title: r.source.ip }, endpointText(r.source)),
    h("td", { title: r.destination.ip }, endpointText(r.destination)),
    h("td", {}, r.protocol),
    h("td", { class: `verdict ${r.verdict}` }, r.verdict),
    h("td", { class: "num" }, count(r.connections_opened ?? 0)),
    h("td", { class: "num" }, count(failed)),
    h("td", { class: "num" }, `${bytes(r.bytes_to_destination)} / ${bytes(r.bytes_to_source)}`),
    h("td", { class: "num" }, r.rtt ? micros(r.rtt.avg_us) : ""),
    requestsCell(r),
  );
}

export function lostRow(count_: number, reason: string): HTMLTableRowElement {
  return h("tr", { class: "lost" }, h("td", { colspan: 11 }, `${count(count_)} records lost (${reason})`));
}

export class FlowTable {
  private filters: Filter[] = [];
  private paused = false;
  private abort?: AbortController;
  private readonly body = byId<HTMLTableSectionElement>("flows-body");
  private readonly status = byId("flows-status");

  constructor(private readonly onFilters: (fs: Filter[]) => void) {
    const name = byId<HTMLSelectElement>("filter-name");
    for (const f of FILTERS) name.append(h("option", { value: f }, f));
    const value = byId<HTMLInputElement>("filter-value");
    byId("filter-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!isFilterName(name.value) || value.value.trim() === "") return;
      this.setFilters([...this.filters, [name.value, value.value.trim()]]);
      value.value = "";
    });
    byId("flows-pause").addEventListener("click", () => this.togglePause());
    byId("flows-copy").addEventListener("click", () => {
      void navigator.clipboard?.writeText(this.command()).catch(() => undefined);
      this.status.textContent = "command copied";
    });
  }

  command(): string {
    return cliCommand(this.filters, { server: location.host, follow: !this.paused });
  }

  setFilters(fs: Filter[]): void {
    this.filters = fs;
    this.renderChips();
    this.onFilters(fs);
    if (!this.paused) this.restart();
  }

  togglePause(): void {
    this.paused = !this.paused;
    const btn = byId("flows-pause");
    btn.textContent = this.paused ? "Resume" : "Pause";
    btn.setAttribute("aria-pressed", String(this.paused));
    if (this.paused) {
      this.abort?.abort();
      this.setStatus("paused");
    } else {
      this.restart();
    }
    byId("cli").textContent = this.command();
  }

  private renderChips(): void {
    const chips = byId("filter-chips");
    chips.replaceChildren(...this.filters.map(([n, v], i) =>
      h("li", { "data-name": n, "data-value": v }, `${n}=${v} `,
        h("button", { type: "button", "aria-label": `remove filter ${n}=${v}`, "data-remove": i }, "×"))));
    chips.querySelectorAll<HTMLButtonElement>("button[data-remove]").forEach((b) =>
      b.addEventListener("click", () => this.setFilters(this.filters.filter((_, i) => i !== Number(b.dataset.remove)))));
    byId("cli").textContent = this.command();
  }

  /** restart reads the table afresh: the last BACKLOG records, then new ones as they come. */
  restart(): void {
    this.abort?.abort();
    const ctl = new AbortController();
    this.abort = ctl;
    this.body.replaceChildren();
    this.setStatus("loading");
    const onLine = (l: FlowLine) => {
      const tr = "lost_records" in l ? lostRow(l.lost_records.count, l.lost_records.reason) : flowRow(l);
      this.body.prepend(tr);
      while (this.body.rows.length > MAX_ROWS) this.body.lastElementChild?.remove();
    };
    const query = flowQuery(this.filters, { last: String(BACKLOG), follow: "1" });
    streamFlows(query, onLine, ctl.signal, () => this.setStatus("live"))
      .then(() => !ctl.signal.aborted && this.setStatus("ended"))
      .catch((err: Error) => !ctl.signal.aborted && this.setStatus(`error: ${err.message}`));
  }

  private setStatus(s: string): void {
    this.status.textContent = s;
    this.status.dataset.state = s.split(":")[0];
  }
}
