// Spend: what the gateway's calls cost over the last 7, 30 or 90 days (UTC), by day, by
// model group, by key and by team, from /spend/summary (the route a client may call).
import { barChart, columnChart } from "../charts.js";
import { dollars, fill, h, notice, table } from "../dom.js";

const RANGES = [7, 30, 90];
const TOP = 12; // groups shown per chart, largest first
const DAY_MS = 86_400_000;
const METRICS = {
  spend: { title: "Spend", format: money },
  requests: { title: "Requests", format: count },
  images: { title: "Images", format: count },
};

export async function render(main, { api, params }) {
  const view = {
    days: RANGES.includes(Number(params.get("days"))) ? Number(params.get("days")) : 7,
    metric: METRICS[params.get("metric")] ? params.get("metric") : "spend",
  };
  const controls = h("div", { class: "filters" });
  const body = h("div", { class: "spend" }, h("p", { class: "loading" }, "Loading…"));
  main.append(controls, body);

  let data = null;
  const redraw = () => {
    drawControls();
    if (data) fill(body, ...drawn(data, view));
  };
  const load = async () => {
    // The range in the link, so a view can be shared; no reload (replaceState).
    history.replaceState(null, "", `#/spend?days=${view.days}&metric=${view.metric}`);
    drawControls();
    try {
      data = await fetchRange(api, view.days);
      redraw();
    } catch (error) {
      fill(body, notice("error", error.message));
    }
  };

  function drawControls() {
    fill(
      controls,
      h(
        "div",
        { class: "segmented", role: "group", "aria-label": "Range" },
        RANGES.map((days) =>
          h(
            "button",
            {
              type: "button",
              class: days === view.days ? "on" : "",
              "aria-pressed": String(days === view.days),
              onclick: () => {
                view.days = days;
                load();
              },
            },
            `${days} days`,
          ),
        ),
      ),
      h(
        "label",
        { class: "inline" },
        "Show ",
        h(
          "select",
          {
            "aria-label": "What the charts show",
            onchange: (event) => {
              view.metric = event.target.value;
              history.replaceState(null, "", `#/spend?days=${view.days}&metric=${view.metric}`);
              redraw();
            },
          },
          Object.entries(METRICS).map(([id, metric]) =>
            h("option", { value: id, selected: id === view.metric }, metric.title),
          ),
        ),
      ),
    );
  }

  await load();
}

async function fetchRange(api, days) {
  const today = Date.now();
  const range = {
    start_date: isoDay(today - (days - 1) * DAY_MS),
    end_date: isoDay(today),
  };
  const [byDay, byModel, byKey, byTeam] = await Promise.all(
    ["day", "model", "key", "team"].map((group) =>
      api.get("/spend/summary", { ...range, group_by: group, limit: group === "day" ? days : TOP }),
    ),
  );
  const spent = new Map(byDay.map((row) => [row.day, row]));
  const daily = [];
  for (let i = days - 1; i >= 0; i--) {
    const day = isoDay(today - i * DAY_MS);
    daily.push({
      day,
      ...(spent.get(day) || { spend: 0, requests: 0, images: 0, total_tokens: 0 }),
    });
  }
  return { days, range, daily, byModel, byKey, byTeam };
}

function drawn(data, view) {
  const metric = METRICS[view.metric];
  const value = (row) => row[view.metric] || 0;
  const totals = data.daily.reduce(
    (sum, row) => ({
      spend: sum.spend + row.spend,
      requests: sum.requests + row.requests,
      images: sum.images + row.images,
      tokens: sum.tokens + row.total_tokens,
    }),
    { spend: 0, requests: 0, images: 0, tokens: 0 },
  );
  const span = `${data.range.start_date} to ${data.range.end_date} (UTC)`;
  const cards = h(
    "div",
    { class: "totals" },
    total("Spend", money(totals.spend)),
    total("Requests", count(totals.requests)),
    total("Images", count(totals.images)),
    total("Per image", totals.images ? dollars(totals.spend / totals.images) : "–"),
    total("Tokens", count(totals.tokens)),
  );
  if (!totals.requests) {
    return [cards, notice("info", `No calls from ${span}. Calls show here within a second.`)];
  }
  const everyNth = data.days <= 7 ? 1 : data.days <= 30 ? 5 : 14;
  const ranked = (rows, label) =>
    rows.map((row) => ({
      label: label(row),
      value: value(row),
      note: `${count(row.requests)} req`,
    }));
  return [
    cards,
    h(
      "section",
      { class: "card chart-card" },
      h("h2", {}, `${metric.title} by day`, h("span", { class: "muted" }, ` · ${span}`)),
      columnChart(
        data.daily.map((row) => ({ label: row.day.slice(5), value: value(row) })),
        { title: `${metric.title} by day, ${span}`, format: metric.format, labelEvery: everyNth },
      ),
      h(
        "details",
        {},
        h("summary", {}, "Every day's numbers"),
        table(
          [
            { title: "Day (UTC)", cell: (row) => row.day },
            { title: "Spend", class: "num", cell: (row) => money(row.spend) },
            { title: "Requests", class: "num", cell: (row) => count(row.requests) },
            { title: "Images", class: "num", cell: (row) => count(row.images) },
            { title: "Tokens", class: "num", cell: (row) => count(row.total_tokens) },
          ],
          [...data.daily].reverse(),
        ),
      ),
    ),
    h(
      "div",
      { class: "row" },
      breakdown(
        `By model`,
        ranked(data.byModel, (row) => row.model_group || "(no model)"),
        metric,
      ),
      breakdown(`By key`, ranked(data.byKey, keyLabel), metric),
      breakdown(
        `By team`,
        ranked(data.byTeam, (row) => row.team_alias || row.team_id || "(no team)"),
        metric,
      ),
    ),
  ];
}

function breakdown(title, rows, metric) {
  const sorted = [...rows].sort((a, b) => b.value - a.value);
  return h(
    "section",
    { class: "card chart-card" },
    h("h2", {}, `${metric.title} ${title.toLowerCase()}`),
    sorted.length
      ? barChart(sorted, { title: `${metric.title} ${title.toLowerCase()}`, format: metric.format })
      : h("p", { class: "empty" }, "Nothing in this range."),
    rows.length >= TOP ? h("p", { class: "muted" }, `The ${TOP} largest by spend.`) : null,
  );
}

function keyLabel(row) {
  if (row.key_alias) return row.key_alias;
  if (row.api_key) return `${row.api_key.slice(0, 10)}…`;
  return "(no key: master key or open)";
}

function total(label, value) {
  return h(
    "div",
    { class: "card total" },
    h("div", { class: "muted" }, label),
    h("strong", {}, value),
  );
}

function money(value) {
  if (value >= 100) return `$${Math.round(value).toLocaleString()}`;
  if (value >= 1) return `$${value.toFixed(2)}`;
  return dollars(value);
}

function count(value) {
  return Number(value || 0).toLocaleString();
}

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}
