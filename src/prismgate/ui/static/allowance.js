// What a key or a team may call and spend (models, budget, limits): the form fields the
// Keys and teams page shows for creating and changing both, and how they are read back.
import { dollars, h } from "./dom.js";
import { field } from "./forms.js";

export const LIMITS = [
  ["rpm_limit", "Requests / min"],
  ["tpm_limit", "Tokens / min"],
  ["ipm_limit", "Images / min"],
  ["max_parallel_requests", "Parallel calls"],
];

const PERIODS = [
  ["", "Never resets"],
  ["1d", "Daily"],
  ["7d", "Weekly"],
  ["30d", "Every 30 days"],
  ["1mo", "Monthly"],
];

/** The fields, filled with `current` (a key or team as the API shows it). */
export function allowanceFields(models, current = {}) {
  const chosen = new Set(current.models || []);
  const names = [...new Set([...models, ...chosen])];
  const period = current.budget_duration || "";
  const periods = PERIODS.some(([id]) => id === period) ? PERIODS : [...PERIODS, [period, period]];
  return [
    h(
      "fieldset",
      { class: "models" },
      h("legend", {}, "Models ", h("span", { class: "muted" }, "(none ticked: every model)")),
      names.length
        ? names.map((name) =>
            h(
              "label",
              { class: "check" },
              h("input", {
                type: "checkbox",
                name: "models",
                value: name,
                checked: chosen.has(name),
              }),
              name,
            ),
          )
        : h("span", { class: "muted" }, "No model groups are configured."),
    ),
    h(
      "div",
      { class: "fields" },
      field(
        "Budget ($)",
        h("input", {
          name: "max_budget",
          type: "number",
          min: "0",
          step: "any",
          placeholder: "no budget",
          value: current.max_budget ?? "",
        }),
      ),
      field(
        "Budget resets",
        h(
          "select",
          { name: "budget_duration" },
          periods.map(([id, text]) => h("option", { value: id, selected: id === period }, text)),
        ),
      ),
      LIMITS.map(([name, text]) =>
        field(
          text,
          h("input", {
            name,
            type: "number",
            min: "1",
            step: "1",
            placeholder: "no limit",
            value: current[name] ?? "",
          }),
        ),
      ),
    ),
  ];
}

/** The fields' values as the API takes them: an empty field is null (no cap, or, in an
 * update, the cap cleared). Throws an Error naming a field that is not a number. */
export function readAllowance(form) {
  const data = new FormData(form);
  const budget = data.get("max_budget");
  const read = {
    models: data.getAll("models"),
    max_budget: budget === "" ? null : Number(budget),
    budget_duration: data.get("budget_duration") || null,
  };
  if (read.max_budget !== null && !(read.max_budget >= 0)) {
    throw new Error("The budget must be a number of dollars, 0 or more.");
  }
  for (const [name, text] of LIMITS) {
    const value = data.get(name);
    read[name] = value === "" ? null : Number(value);
    if (read[name] !== null && !(Number.isInteger(read[name]) && read[name] >= 1)) {
      throw new Error(`${text} must be a whole number, 1 or more (or empty for no limit).`);
    }
  }
  return read;
}

/** Spend against the budget, as a meter and the numbers. */
export function budgetMeter(record) {
  const spend = record.spend || 0;
  if (record.max_budget === null || record.max_budget === undefined) {
    return h(
      "span",
      { class: "spend" },
      dollars(spend),
      h("span", { class: "muted" }, " · no budget"),
    );
  }
  const max = record.max_budget;
  return h(
    "span",
    { class: "spend" },
    h("meter", {
      min: "0",
      max: String(max || 1),
      low: String(max * 0.7),
      high: String(max * 0.9),
      optimum: "0",
      value: String(Math.min(spend, max || 1)),
      title: `${dollars(spend)} of ${dollars(max)}`,
    }),
    ` ${dollars(spend)} / ${dollars(max)}`,
    record.budget_duration ? h("span", { class: "muted" }, ` per ${record.budget_duration}`) : null,
  );
}

/** The limits in one short line: "10 rpm · 5 ipm". */
export function limitsText(record) {
  const parts = [
    [record.rpm_limit, "rpm"],
    [record.tpm_limit, "tpm"],
    [record.ipm_limit, "ipm"],
    [record.max_parallel_requests, "parallel"],
  ].filter(([value]) => value !== null && value !== undefined);
  return parts.length ? parts.map(([value, unit]) => `${value} ${unit}`).join(" · ") : "–";
}
