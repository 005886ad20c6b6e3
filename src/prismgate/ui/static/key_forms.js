// The Keys and teams page's forms: a key's and a team's fields, what they send to the
// management API, and the box that shows a new key once.
import { allowanceFields, readAllowance } from "./allowance.js";
import { fill, h } from "./dom.js";
import { button, field, readJson } from "./forms.js";

const EXPIRIES = [
  ["", "Never"],
  ["1d", "1 day"],
  ["7d", "7 days"],
  ["30d", "30 days"],
  ["90d", "90 days"],
  ["365d", "1 year"],
];

/** A key's fields (a new key's when `key` is null); `teams` and `models` to choose from. */
export function keyFields(key, teams, models) {
  const metadata = key && Object.keys(key.metadata || {}).length ? key.metadata : null;
  return [
    h(
      "div",
      { class: "fields" },
      field("Alias", text("key_alias", key?.key_alias, "e.g. ci-bot")),
      field(
        "Team",
        h(
          "select",
          { name: "team_id" },
          h("option", { value: "" }, "No team"),
          teams.map((t) =>
            h(
              "option",
              { value: t.team_id, selected: t.team_id === key?.team_id },
              t.team_alias || t.team_id,
            ),
          ),
        ),
      ),
      field("User id", text("user_id", key?.user_id, "")),
      key
        ? null
        : field(
            "Expires after",
            h(
              "select",
              { name: "duration" },
              EXPIRIES.map(([id, label]) => h("option", { value: id }, label)),
            ),
          ),
    ),
    allowanceFields(models, key || {}),
    field(
      "Metadata (JSON)",
      h(
        "textarea",
        { name: "metadata", placeholder: '{"owner": "ci"}' },
        metadata ? JSON.stringify(metadata, null, 2) : "",
      ),
    ),
  ];
}

/** The body of /key/generate or /key/update from a key's fields: every field is sent, an
 * empty one as null (in an update, that clears it). */
export function readKey(form) {
  const data = new FormData(form);
  const body = {
    key_alias: data.get("key_alias").trim() || null,
    team_id: data.get("team_id") || null,
    user_id: data.get("user_id").trim() || null,
    metadata: readJson(data.get("metadata"), "Metadata"),
    ...readAllowance(form),
  };
  if (data.has("duration")) body.duration = data.get("duration") || null;
  return body;
}

/** A team's fields (a new team's when `team` is null). */
export function teamFields(team, models) {
  return [
    h(
      "div",
      { class: "fields" },
      field("Alias", text("team_alias", team?.team_alias, "e.g. artists")),
    ),
    allowanceFields(models, team || {}),
  ];
}

/** The body of /team/new or /team/update from a team's fields. */
export function readTeam(form) {
  return {
    team_alias: new FormData(form).get("team_alias").trim() || null,
    ...readAllowance(form),
  };
}

/** The new key, shown this once: only in this box, never in storage or a URL; `done`
 * removes it. */
export function newKeyBox(answer, done) {
  const secret = h("code", { class: "secret", tabindex: "0" }, answer.key);
  const copy = button("Copy", async () => {
    try {
      await navigator.clipboard.writeText(answer.key);
      fill(copy, "Copied");
    } catch {
      getSelection().selectAllChildren(secret);
      fill(copy, "Selected: press Ctrl+C");
    }
  });
  return h(
    "section",
    { class: "card new-key", role: "status" },
    h("h2", {}, `New key ${answer.key_alias || answer.key_name}`),
    h(
      "p",
      {},
      h("strong", {}, "Copy it now: it will not be shown again."),
      " The gateway keeps only its hash.",
    ),
    h("div", { class: "secret-row" }, secret, copy),
    button("Done", done, "secondary"),
  );
}

function text(name, value, placeholder) {
  return h("input", { name, value: value ?? "", autocomplete: "off", placeholder });
}
