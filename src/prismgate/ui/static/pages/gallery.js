// Gallery: the images the gateway kept (general_settings.console.keep_images), newest
// first, each with its prompt, model, size, key and time (GET /spend/images). More load
// as the end of the grid comes into view (or with the button). An image opens its call
// in Requests.
import { fill, h, notice } from "../dom.js";
import { button } from "../forms.js";
import { picture } from "../request_detail.js";

const PAGE = 48;

export async function render(main, { api }) {
  const grid = h("div", { class: "gallery kept-gallery" });
  const more = button("Load more", () => load(), "secondary");
  const status = h("p", { class: "muted", role: "status" });
  const problem = h("div");
  main.append(problem, grid, h("div", { class: "toolbar table-foot" }, more, status));
  let next = null;
  let loading = false;
  let count = 0;

  async function load() {
    if (loading) return;
    loading = true;
    more.disabled = true;
    try {
      const page = await api.get("/spend/images", { limit: PAGE, before: next });
      if (!page.keep_images && !count) {
        fill(
          problem,
          notice(
            "info",
            "The gateway keeps no images: set general_settings.console.keep_images: true in the config (for how long: keep_images_days).",
          ),
        );
      }
      grid.append(...page.data.map(tile));
      count += page.data.length;
      next = page.next_before;
      more.hidden = !page.has_more;
      fill(
        status,
        count
          ? `${count} image${count === 1 ? "" : "s"}${page.has_more ? "" : ": every image kept"}.`
          : "No kept images yet: make one in the Playground.",
      );
    } catch (error) {
      fill(problem, notice("error", error.message));
    } finally {
      loading = false;
      more.disabled = false;
    }
  }

  // More tiles as the button comes into view: scrolling is enough.
  const watcher = new IntersectionObserver((seen) => {
    if (seen.some((entry) => entry.isIntersecting) && !more.hidden) load();
  });
  watcher.observe(more);
  more.hidden = true;
  await load();
  return () => watcher.disconnect();
}

function tile(item) {
  const when = new Date(Date.parse(item.created));
  const alt = item.prompt ? `${item.model_group}: ${item.prompt}` : `${item.model_group} image`;
  return h(
    "figure",
    { class: "kept", dataset: { requestId: item.request_id } },
    h(
      "a",
      {
        href: `#/requests?id=${encodeURIComponent(item.request_id)}`,
        title: "Open this request",
      },
      picture(item, "tile", alt),
    ),
    h(
      "figcaption",
      {},
      h("p", { class: "caption" }, item.prompt || h("span", { class: "muted" }, "(prompt not kept)")),
      h(
        "p",
        { class: "muted meta" },
        [
          item.model_group,
          item.size || (item.width && `${item.width}×${item.height}`),
          item.key_alias,
          when.toLocaleString(),
        ]
          .filter(Boolean)
          .join(" · "),
      ),
    ),
  );
}
