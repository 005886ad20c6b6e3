// Keys and teams: list, create (a new key is shown once, here, and never stored), change
// budgets and limits, block and unblock, revoke; all through the management API.
import { budgetMeter, limitsText } from "../allowance.js";
import { fill, h, notice, table } from "../dom.js";
import { button, formDialog } from "../forms.js";
import { keyFields, newKeyBox, readKey, readTeam, teamFields } from "../key_forms.js";

const PAGE_SIZE = 100; // the most /key/list gives at once

export async function render(main, { api }) {
  const state = { keys: [], teams: [], models: [], pages: 1, total: 0 };
  const made = h("div", { class: "flash" }); // a new key, until Done
  const flash = h("div", { class: "flash" });
  const keysBox = h("section", { "aria-label": "Keys" }, h("p", { class: "loading" }, "Loading…"));
  const teamsBox = h("section", { "aria-label": "Teams" });
  const dialog = h("dialog", { class: "card editor" });
  // Enabled once the teams and models the forms offer are loaded.
  const toolbar = h(
    "div",
    { class: "toolbar" },
    button("New key", () => keyDialog()),
    button("New team", () => teamDialog(), "secondary"),
  );
  for (const each of toolbar.children) each.disabled = true;
  main.append(toolbar, made, flash, h("h2", {}, "Keys"), keysBox, h("h2", {}, "Teams"), teamsBox);
  main.append(dialog);

  async function reload() {
    const [teams, models] = await Promise.all([api.get("/team/list"), api.get("/v1/models")]);
    const keys = [];
    for (let page = 1; page <= state.pages; page++) {
      const query = { return_full_object: "true", size: PAGE_SIZE, page };
      const found = await api.get("/key/list", query);
      keys.push(...found.keys);
      state.total = found.total_count;
    }
    Object.assign(state, { keys, teams, models: models.data.map((m) => m.id) });
    draw();
  }

  function draw() {
    const teamOf = new Map(state.teams.map((t) => [t.team_id, t]));
    const left = state.total - state.keys.length;
    const more = () => {
      state.pages += 1;
      act(reload);
    };
    fill(
      keysBox,
      table(
        [
          { title: "Key", cell: (k) => named(k.key_alias, k.key_name) },
          {
            title: "Team",
            cell: (k) => (k.team_id ? teamOf.get(k.team_id)?.team_alias || k.team_id : "–"),
          },
          { title: "User", cell: (k) => k.user_id || "–" },
          { title: "Models", cell: (k) => models(k) },
          { title: "Spend", cell: budgetMeter },
          { title: "Limits", cell: limitsText },
          {
            title: "Expires",
            cell: (k) => (k.expires ? new Date(k.expires).toLocaleString() : "never"),
          },
          { title: "Status", cell: (k) => keyStatus(k, teamOf.get(k.team_id)) },
          { title: "", class: "actions", cell: keyActions },
        ],
        state.keys,
        { empty: "No keys yet: make one with New key." },
      ),
      left > 0 ? button(`Show more (${left} left)`, more, "secondary") : null,
    );
    fill(
      teamsBox,
      table(
        [
          { title: "Team", cell: (t) => named(t.team_alias, t.team_id) },
          { title: "Models", cell: (t) => models(t) },
          { title: "Spend", cell: budgetMeter },
          { title: "Limits", cell: limitsText },
          {
            title: "Keys",
            class: "num",
            cell: (t) => state.keys.filter((k) => k.team_id === t.team_id).length,
          },
          { title: "Status", cell: (t) => badge(t.blocked ? "blocked" : "active", !t.blocked) },
          { title: "", class: "actions", cell: teamActions },
        ],
        state.teams,
        { empty: "No teams yet." },
      ),
    );
  }

  function keyActions(key) {
    const block = key.blocked ? "unblock" : "block";
    return [
      button("Edit", () => keyDialog(key), "secondary small"),
      button(
        key.blocked ? "Unblock" : "Block",
        () =>
          act(() => api.post(`/key/${block}`, { key: key.token }), `${aliasOf(key)}: ${block}ed.`),
        "secondary small",
      ),
      button("Revoke", () => revokeDialog(key), "danger small"),
    ];
  }

  function teamActions(team) {
    const change = { team_id: team.team_id, blocked: !team.blocked };
    const done = `Team ${team.team_alias || team.team_id}: ${team.blocked ? "unblocked" : "blocked"}.`;
    return [
      button("Edit", () => teamDialog(team), "secondary small"),
      button(
        team.blocked ? "Unblock" : "Block",
        () => act(() => api.post("/team/update", change), done),
        "secondary small",
      ),
    ];
  }

  // Runs a change, then shows the lists again; a failure shows the API's message.
  async function act(change, done) {
    try {
      await change();
      if (done) fill(flash, notice("info", done));
      await reload();
    } catch (error) {
      fill(flash, notice("error", error.message));
    }
  }

  function keyDialog(key = null) {
    const fields = keyFields(key, state.teams, state.models);
    const title = key ? `Edit ${aliasOf(key)}` : "New key";
    formDialog(dialog, { title, fields, submitText: key ? "Save" : "Create key" }, async (form) => {
      const body = readKey(form);
      if (key) {
        await api.post("/key/update", { key: key.token, ...body });
        fill(flash, notice("info", `${aliasOf(key)}: saved.`));
      } else {
        const answer = await api.post("/key/generate", body);
        fill(flash);
        fill(
          made,
          newKeyBox(answer, () => fill(made)),
        );
      }
      await reload();
    });
  }

  function teamDialog(team = null) {
    const fields = teamFields(team, state.models);
    const title = team ? `Edit team ${team.team_alias || team.team_id}` : "New team";
    formDialog(
      dialog,
      { title, fields, submitText: team ? "Save" : "Create team" },
      async (form) => {
        const body = readTeam(form);
        if (team) await api.post("/team/update", { team_id: team.team_id, ...body });
        else await api.post("/team/new", body);
        fill(
          flash,
          notice("info", `Team ${body.team_alias || ""}: ${team ? "saved" : "created"}.`),
        );
        await reload();
      },
    );
  }

  function revokeDialog(key) {
    const fields = h(
      "p",
      {},
      "Calls with ",
      h("strong", {}, aliasOf(key)),
      " are refused from now on. This cannot be undone.",
    );
    const asked = {
      title: `Revoke ${aliasOf(key)}?`,
      fields,
      submitText: "Revoke key",
      kind: "danger",
    };
    formDialog(dialog, asked, async () => {
      await api.post("/key/delete", { keys: [key.token] });
      fill(flash, notice("info", `${aliasOf(key)}: revoked.`));
      await reload();
    });
  }

  try {
    await reload();
    for (const each of toolbar.children) each.disabled = false;
  } catch (error) {
    fill(keysBox, notice("error", error.message));
  }
}

function named(alias, id) {
  return [h("strong", {}, alias || "(no alias)"), h("div", { class: "mono muted" }, id)];
}

function models(holder) {
  return holder.models.length ? holder.models.join(", ") : "all";
}

function keyStatus(key, team) {
  if (key.blocked) return badge("blocked", false);
  if (team?.blocked) return badge("team blocked", false);
  if (key.expires && new Date(key.expires) <= new Date()) return badge("expired", false);
  return badge("active", true);
}

function badge(text, good) {
  return h("span", { class: `badge ${good ? "status-ok" : "status-bad"}` }, text);
}

function aliasOf(key) {
  return key.key_alias || key.key_name;
}
