// Requests: every call the gateway served or refused, newest first, live. The table
// asks /spend/logs every 2 s for the calls that ended since the newest it shows (by the
// server's clock, page after page, so a burst is not skipped; paused while the tab is
// hidden); the filters (key, team, model, status, time) live in the hash, so a filtered
// view can be linked. A row opens its call: #/requests?id=<id>.
import { dollars, fill, h, notice } from "../dom.js";
import { button } from "../forms.js";
import { showRequest, statusBadge, thumbnail } from "../request_detail.js";
import { filterForm } from "../request_filters.js";

const POLL_MS = 2000;
// Rows are written in batches, a little after their call ended: each poll looks back
// this far before the newest end it has seen, and drops the rows it already shows.
const OVERLAP_MS = 15000;
const PAGE = 100;
const MOST_SHOWN = 1000;
// A poll reads at most this many pages: the table holds no more rows than that anyway.
const MOST_PAGES = MOST_SHOWN / PAGE;
const FILTERS = ["key_alias", "team_id", "model_group", "status", "start_date", "end_date"];

// The list as last filtered, for the detail view's way back to it.
let listHash = "#/requests";

export async function render(main, { api, params, session }) {
  const id = params.get("id");
  if (id) return showRequest(main, api, id, listHash);
  return liveTable(main, api, params, session.console);
}

function liveTable(main, api, params, settings) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const shown = new Map(); // request_id -> row
  const body = h("tbody");
  const status = h("p", { class: "muted live-status", role: "status" });
  const older = button("Load older", () => loadOlder(), "secondary");
  const problem = h("div");
  const hint = h("div");
  // The newest end (ms) of a call shown: the server's time, never this browser's clock
  // (which may be ahead of it); 0 while none is shown.
  let newestEnd = 0;
  // Counts restarts (a filter changed): an answer to an older one is dropped, so a slow
  // answer for the old filters never fills the table.
  let generation = 0;
  let timer = null;
  let teams = new Map();

  main.append(
    filterForm(api, filters, () => restart()),
    hint,
    problem,
    h(
      "table",
      { class: "grid requests" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["", "Status", "Time", "Model group", "Deployment", "Key", "Team"].map((title) =>
            h("th", {}, title),
          ),
          ["Images", "Cost", "Latency"].map((title) => h("th", { class: "num" }, title)),
        ),
      ),
      body,
    ),
    h("div", { class: "toolbar table-foot" }, older, status),
  );

  function query(extra) {
    const asked = { ...extra };
    for (const [name, value] of Object.entries(filters)) if (value) asked[name] = value;
    return asked;
  }

  function rowNode(row, fresh) {
    const end = Date.parse(row.endTime);
    const node = h(
      "tr",
      {
        class: `clickable${fresh ? " fresh" : ""}`,
        dataset: { requestId: row.request_id },
        tabindex: "0",
        onclick: () => open(row),
        onkeydown: (event) => event.key === "Enter" && open(row),
      },
      h("td", { class: "thumb-cell" }, thumbnail(row)),
      h("td", {}, statusBadge(row)),
      h("td", { title: row.startTime }, new Date(Date.parse(row.startTime)).toLocaleString()),
      h("td", {}, row.model_group || row.model || "–"),
      h("td", { class: "muted" }, row.model_id || "–"),
      h("td", {}, row.key_alias || (row.api_key ? "a key" : "master key")),
      h("td", {}, teams.get(row.team_id) || row.team_id || "–"),
      h("td", { class: "num" }, String(row.images)),
      h("td", { class: "num" }, dollars(row.spend)),
      h("td", { class: "num" }, `${Math.round(row.request_duration_ms)} ms`),
    );
    if (end > newestEnd) newestEnd = end;
    return node;
  }

  /** Empties the table, and forgets what it showed with it. */
  function clear(...placeholder) {
    shown.clear();
    fill(body, ...placeholder);
  }

  function show(rows, { fresh = false, atEnd = false } = {}) {
    const added = rows.filter((row) => !shown.has(row.request_id));
    for (const row of added) shown.set(row.request_id, row);
    if (atEnd) {
      for (const row of added) body.append(rowNode(row, false));
    } else {
      // Newest first: new rows go above the others, in their own order.
      const nodes = added
        .sort((a, b) => Date.parse(b.startTime) - Date.parse(a.startTime))
        .map((row) => rowNode(row, fresh));
      body.prepend(...nodes);
    }
    while (body.children.length > MOST_SHOWN) {
      shown.delete(body.lastElementChild.dataset.requestId);
      body.lastElementChild.remove();
    }
    if (!shown.size) {
      fill(body, h("tr", {}, h("td", { colspan: "10", class: "empty" }, "No requests yet.")));
    } else {
      body.querySelector("td.empty")?.parentElement.remove();
    }
    return added.length;
  }

  /** The calls that ended since `since` (all of them while none is shown), newest
   * first: page after page until a short one. */
  async function newer(since) {
    const rows = [];
    for (let pages = 0; pages < MOST_PAGES; pages++) {
      const before = rows.at(-1)?.request_id;
      const page = await api.get("/spend/logs", query({ since, before, limit: PAGE }));
      rows.push(...page);
      if (page.length < PAGE) break;
    }
    return rows;
  }

  async function poll() {
    timer = null;
    const mine = generation;
    if (!document.hidden) {
      try {
        const since = newestEnd ? new Date(newestEnd - OVERLAP_MS).toISOString() : null;
        const rows = await newer(since);
        if (mine !== generation) return; // the restart that made it stale polls anew
        show(rows, { fresh: true });
        fill(problem);
        fill(status, `Live: updated ${new Date().toLocaleTimeString()}.`);
      } catch (error) {
        if (mine !== generation) return;
        fill(problem, notice("error", error.message));
      }
    } else {
      fill(status, "Paused while this tab is hidden.");
    }
    schedule();
  }

  function schedule() {
    if (timer === null && !stopped) timer = setTimeout(poll, POLL_MS);
  }

  async function loadOlder() {
    const last = body.lastElementChild?.dataset.requestId;
    if (!last) return;
    const mine = generation;
    older.disabled = true;
    try {
      const rows = await api.get("/spend/logs", query({ before: last, limit: PAGE }));
      if (mine !== generation) return;
      show(rows, { atEnd: true });
      older.hidden = rows.length < PAGE;
    } catch (error) {
      if (mine === generation) fill(problem, notice("error", error.message));
    } finally {
      older.disabled = false;
    }
  }

  async function restart() {
    const mine = ++generation;
    const hash = new URLSearchParams(Object.entries(filters).filter(([, value]) => value));
    const linked = hash.toString();
    listHash = `#/requests${linked ? `?${linked}` : ""}`;
    history.replaceState(null, "", listHash);
    clearTimeout(timer);
    timer = null;
    clear(h("tr", {}, h("td", { colspan: "10", class: "loading" }, "Loading…")));
    newestEnd = 0;
    try {
      const rows = await api.get("/spend/logs", query({ limit: PAGE }));
      if (mine !== generation) return; // a later restart owns the table now
      clear();
      show(rows);
      older.hidden = rows.length < PAGE;
      fill(problem);
      fill(status, `Live: updated ${new Date().toLocaleTimeString()}.`);
    } catch (error) {
      if (mine !== generation) return;
      clear();
      fill(problem, notice("error", error.message));
    }
    schedule();
  }

  let stopped = false;
  const wake = () => {
    if (document.hidden) {
      fill(status, "Paused while this tab is hidden.");
    } else if (timer !== null) {
      clearTimeout(timer);
      timer = null;
      poll();
    }
  };
  document.addEventListener("visibilitychange", wake);
  api
    .get("/team/list")
    .then((list) => {
      teams = new Map(list.map((team) => [team.team_id, team.team_alias || team.team_id]));
    })
    .catch(() => {});
  if (!settings.keep_images)
    fill(
      hint,
      notice(
        "info",
        "Images are not kept, so there are no thumbnails: set general_settings.console.keep_images: true (and keep_request_details: true for each call's details).",
      ),
    );
  restart();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", wake);
  };
}

function open(row) {
  window.location.hash = `#/requests?id=${encodeURIComponent(row.request_id)}`;
}
