// Building DOM nodes without innerHTML: text is always text, so data from the API
// (prompts, aliases, error messages) can never become markup.

/** h("a", {href: "#/x", class: "y", onclick: fn}, "text", childNode, [more]) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A table from rows: columns are [{title, cell: row => node|text, class}]. */
export function table(columns, rows, { onRow, empty = "Nothing yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.title)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { class: onRow ? "clickable" : null, onclick: onRow ? () => onRow(row) : null },
          columns.map((c) => h("td", { class: c.class }, c.cell(row))),
        ),
      ),
    ),
  );
}

/** A notice in the page: kind is "error" or "info". */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function dollars(value) {
  if (value === null || value === undefined) return "–";
  return value < 0.01 && value > 0 ? `$${value.toFixed(6)}` : `$${value.toFixed(4)}`;
}

export function when(seconds) {
  if (!seconds) return "–";
  return new Date(seconds * 1000).toLocaleString();
}
