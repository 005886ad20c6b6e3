// The console shell: who is signed in, the page list, and a hash router that loads one
// page module at a time (pages/<id>.js, each exporting `render(main, context)`).
import { api, setCsrfToken } from "./api.js";
import { fill, h, notice } from "./dom.js";

const PAGES = [
  { id: "requests", title: "Requests" },
  { id: "gallery", title: "Gallery" },
  { id: "spend", title: "Spend" },
  { id: "keys", title: "Keys and teams" },
  { id: "models", title: "Models" },
  { id: "playground", title: "Playground" },
];

let leave = null; // the shown page's clean-up (timers, streams)
// Counts navigations: a page whose load ends after the next navigation began is left
// already, so its clean-up runs at once (else its timers would run until a reload).
let navigations = 0;

async function show(session) {
  const main = document.getElementById("page");
  const wanted = window.location.hash.replace(/^#\//, "").split("?")[0];
  const page = PAGES.find((p) => p.id === wanted) || PAGES[0];
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === page.id);
    link.toggleAttribute("aria-current", link.dataset.page === page.id);
  }
  if (leave) leave();
  leave = null;
  const visit = ++navigations;
  const current = () => visit === navigations;
  document.title = `${page.title} · prismgate console`;
  fill(main, h("h1", {}, page.title), h("p", { class: "loading" }, "Loading…"));
  try {
    const module = await import(`./pages/${page.id}.js`);
    if (!current()) return;
    const body = h("div", { class: "page-body" });
    fill(main, h("h1", {}, page.title), body);
    const cleanUp = (await module.render(body, { api, session, params: hashParams() })) || null;
    if (current()) leave = cleanUp;
    else if (cleanUp) cleanUp();
  } catch (error) {
    if (current()) fill(main, h("h1", {}, page.title), notice("error", error.message));
  }
}

/** The query part of the hash (#/requests?id=...), for links into a page. */
export function hashParams() {
  const query = window.location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

async function start() {
  const session = await api.get("/ui/session");
  setCsrfToken(session.csrf_token);
  document.querySelector("#logout input[name=csrf_token]").value = session.csrf_token;
  fill(document.getElementById("who"), session.key_alias || "master key");
  fill(
    document.getElementById("nav"),
    PAGES.map((p) => h("a", { href: `#/${p.id}`, dataset: { page: p.id } }, p.title)),
  );
  window.addEventListener("hashchange", () => show(session));
  await show(session);
}

start().catch((error) => {
  fill(document.getElementById("page"), notice("error", error.message));
});
