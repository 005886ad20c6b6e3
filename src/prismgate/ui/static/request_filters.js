// The Requests page's filters: key (an alias, with the known ones offered), team,
// model, status and a time range. Each change updates `filters` (what the hash and the
// API hold: times as UTC moments) and calls `changed`.
import { h } from "./dom.js";
import { field } from "./forms.js";

/** The filter form over `filters`; lists of keys, teams and models fill in as they come. */
export function filterForm(api, filters, changed) {
  const input = (name, attrs = {}) =>
    h("input", {
      name,
      value: filters[name],
      ...attrs,
      onchange: (event) => {
        filters[name] = event.target.value.trim();
        changed();
      },
    });
  // Times show in the viewer's own zone; the hash and the API hold the UTC moment.
  const moment = (name) =>
    h("input", {
      name,
      type: "datetime-local",
      step: "1",
      value: localInput(filters[name]),
      onchange: (event) => {
        const value = event.target.value;
        filters[name] = value ? new Date(value).toISOString() : "";
        changed();
      },
    });
  const select = (name, options) => {
    const node = h(
      "select",
      {
        name,
        onchange: (event) => {
          filters[name] = event.target.value;
          changed();
        },
      },
      options.map(([value, label]) =>
        h("option", { value, selected: value === filters[name] }, label),
      ),
    );
    return node;
  };
  const keys = h("datalist", { id: "request-key-aliases" });
  const teams = select("team_id", [["", "Any team"]]);
  const models = select("model_group", [["", "Any model"]]);
  const form = h(
    "form",
    { class: "filters", onsubmit: (event) => event.preventDefault() },
    field("Key", input("key_alias", { list: keys.id, placeholder: "any key alias" })),
    keys,
    field("Team", teams),
    field("Model", models),
    field(
      "Status",
      select("status", [
        ["", "Any status"],
        ["success", "Succeeded"],
        ["failure", "Failed"],
      ]),
    ),
    field("From", moment("start_date")),
    field("To", moment("end_date")),
  );
  const add = (node, value, label) => {
    if (![...node.options].some((option) => option.value === value))
      node.append(h("option", { value, selected: value === filters[node.name] }, label));
  };
  api
    .get("/key/list", { return_full_object: "true", size: 100 })
    .then((list) => {
      for (const key of list.keys) if (key.key_alias) keys.append(h("option", { value: key.key_alias }));
    })
    .catch(() => {});
  api
    .get("/team/list")
    .then((list) => list.forEach((team) => add(teams, team.team_id, team.team_alias || team.team_id)))
    .catch(() => {});
  api
    .get("/v1/models")
    .then((list) => list.data.forEach((model) => add(models, model.id, model.id)))
    .catch(() => {});
  // A filter from a link that the lists do not hold (yet) still shows as chosen.
  if (filters.team_id) add(teams, filters.team_id, filters.team_id);
  if (filters.model_group) add(models, filters.model_group, filters.model_group);
  return form;
}

/** A moment (ISO 8601) as a datetime-local input's value, in the viewer's zone. */
function localInput(iso) {
  const time = Date.parse(iso);
  if (!iso || Number.isNaN(time)) return "";
  const local = new Date(time - new Date(time).getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}
