// Models: each model group with what it can do (/model_group/info, /model/info), and each
// deployment's cooldown, usage, latency and last health check (/model/status, refreshed
// every few seconds). "Check health" runs /health for one group: no paid call is made.
import { fill, h, notice } from "../dom.js";

const REFRESH_MS = 5000;

export async function render(main, { api }) {
  const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  const summary = h("p", { class: "muted" });
  main.append(summary, body);
  let groups;
  let infos;
  try {
    [groups, infos] = await Promise.all([api.get("/model_group/info"), api.get("/model/info")]);
  } catch (error) {
    fill(body, notice("error", error.message));
    return null;
  }
  // Deployments of a group, in config order; and each by the id /model/status gives it.
  const deployments = new Map();
  const byId = new Map(infos.data.map((entry) => [entry.model_info?.model_id, entry]));
  for (const entry of infos.data) {
    if (!deployments.has(entry.model_name)) deployments.set(entry.model_name, []);
    deployments.get(entry.model_name).push(entry);
  }
  const cards = new Map(
    groups.data.map((group) => [
      group.model_group,
      groupCard(group, deployments.get(group.model_group) || []),
    ]),
  );
  fill(
    body,
    groups.data.length
      ? [...cards.values()].map((card) => card.node)
      : h("p", { class: "empty" }, "No model groups are configured."),
  );

  async function refresh() {
    if (document.hidden) return;
    try {
      const status = await api.get("/model/status");
      fill(
        summary,
        `Routing: ${status.routing_strategy}. Recent calls: the last ${status.recent_window_seconds / 60} minutes of the spend log. Refreshed ${new Date().toLocaleTimeString()}.`,
      );
      for (const [name, card] of cards)
        card.show(status.data.filter((d) => d.model_group === name));
    } catch (error) {
      fill(summary, notice("error", error.message));
    }
  }

  function groupCard(group, entries) {
    const rows = h("tbody");
    const result = h("div", { class: "health-result" });
    const check = h("button", { type: "button", class: "secondary small" }, "Check health");
    check.addEventListener("click", async () => {
      check.disabled = true;
      fill(result, h("span", { class: "muted" }, "Checking…"));
      try {
        const report = await api.get("/health", { model: group.model_group });
        fill(
          result,
          notice(
            report.unhealthy_count ? "error" : "info",
            `${report.healthy_count} healthy, ${report.unhealthy_count} unhealthy`,
          ),
        );
        await refresh();
      } catch (error) {
        fill(result, notice("error", error.message));
      } finally {
        check.disabled = false;
      }
    });
    const node = h(
      "section",
      { class: "card model-group", "aria-label": group.model_group },
      h(
        "header",
        { class: "group-head" },
        h("h2", {}, group.model_group),
        h("span", { class: "chip" }, group.mode || "unknown mode"),
        group.supports_vision ? h("span", { class: "chip" }, "vision") : null,
        h("span", { class: "muted" }, group.providers.join(", ")),
        h("span", { class: "spacer" }),
        result,
        check,
      ),
      capabilities(group, entries),
      h(
        "table",
        { class: "grid deployments" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "Deployment",
              "API base",
              "Cooldown",
              "This minute",
              "Latency",
              "Recent calls",
              "Last health check",
            ].map((t) => h("th", {}, t)),
          ),
        ),
        rows,
      ),
    );
    return {
      node,
      show(states) {
        fill(
          rows,
          states.map((state) => deploymentRow(state, byId.get(state.model_id))),
        );
      },
    };
  }

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

function capabilities(group, entries) {
  const image = entries[0]?.model_info?.image;
  const items = [];
  if (group.image_sizes) items.push(["Sizes", group.image_sizes.join(", ")]);
  else if (group.image_aspect_ratios)
    items.push(["Aspect ratios", group.image_aspect_ratios.join(", ")]);
  else if (image) items.push(["Sizes", "any (the provider's limits)"]);
  if (group.image_max_n) items.push(["Images per upstream call", `up to ${group.image_max_n}`]);
  if (group.image_qualities) items.push(["Qualities", group.image_qualities.join(", ")]);
  if (group.image_styles) items.push(["Styles", group.image_styles.join(", ")]);
  if (group.image_output_formats) items.push(["Formats", group.image_output_formats.join(", ")]);
  if (image)
    items.push([
      "Edits",
      entries.every((e) => e.model_info?.image?.edits !== false) ? "yes" : "no",
    ]);
  items.push(["Vision", group.supports_vision ? "yes" : "no"]);
  if (group.max_input_tokens) items.push(["Input tokens", group.max_input_tokens.toLocaleString()]);
  if (group.rpm || group.tpm)
    items.push([
      "Limits",
      [group.rpm && `${group.rpm} rpm`, group.tpm && `${group.tpm} tpm`]
        .filter(Boolean)
        .join(" · "),
    ]);
  return h(
    "dl",
    { class: "capabilities" },
    items.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))),
  );
}

function deploymentRow(state, info) {
  const params = info?.litellm_params || {};
  const cooldown = state.cooldown
    ? h(
        "span",
        { class: "badge status-bad", title: state.cooldown.reason },
        `cooling ${Math.ceil(state.cooldown.seconds_left)} s`,
      )
    : h("span", { class: "badge status-ok" }, "ready");
  const usage = state.usage
    ? `${state.usage.requests} req · ${state.usage.tokens} tok`
    : "not counted";
  return h(
    "tr",
    {},
    h(
      "td",
      {},
      h("strong", {}, `${state.provider}/${state.model}`),
      h("div", { class: "mono muted" }, state.label),
    ),
    h("td", { class: "mono" }, params.api_base || "provider default"),
    h(
      "td",
      {},
      cooldown,
      state.cooldown?.reason ? h("div", { class: "muted reason" }, state.cooldown.reason) : null,
    ),
    h(
      "td",
      {},
      usage,
      state.in_flight ? h("div", { class: "muted" }, `${state.in_flight} in flight`) : null,
    ),
    h("td", { class: "num" }, latency(state)),
    h("td", { class: "num" }, recentCalls(state.recent)),
    h("td", {}, health(state.health)),
  );
}

function latency(state) {
  const parts = [];
  if (state.recent?.p50_ms != null)
    parts.push(h("div", {}, `p50 ${ms(state.recent.p50_ms)} · p95 ${ms(state.recent.p95_ms)}`));
  if (state.latency_ms != null)
    parts.push(h("div", { class: "muted" }, `router average ${ms(state.latency_ms)}`));
  return parts.length ? parts : "–";
}

function recentCalls(recent) {
  if (!recent) return "none";
  return [
    `${recent.calls}`,
    recent.failures ? h("span", { class: "status-bad" }, ` (${recent.failures} failed)`) : null,
    h("div", { class: "muted" }, new Date(recent.last_call_at).toLocaleTimeString()),
  ];
}

function health(result) {
  if (!result) return h("span", { class: "muted" }, "not checked yet");
  const checks = Object.entries(result.checks)
    .map(([name, value]) => `${name}: ${value}`)
    .join(", ");
  return [
    h(
      "span",
      { class: `badge ${result.healthy ? "status-ok" : "status-bad"}` },
      result.healthy ? "healthy" : "unhealthy",
    ),
    h("span", { class: "muted" }, ` ${new Date(result.checked_at).toLocaleTimeString()}`),
    h("div", { class: "muted" }, result.error || checks),
  ];
}

function ms(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}
