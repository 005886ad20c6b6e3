// One call in full (#/requests?id=<request_id>): its images large, who called, what it
// cost and how long it took, every attempt, and its details as the gateway kept them:
// the request as received, each request sent upstream (images described, never their
// bytes; no credential), and the answer. Shared by Requests and Gallery.
import { dollars, fill, h, notice } from "./dom.js";

const WAIT_MS = 1000; // a call just made is logged within a second or two
const WAIT_TRIES = 20;

/** The status of a row as a badge: its HTTP status, green or red. */
export function statusBadge(row) {
  const ok = row.status_code < 400;
  return h(
    "span",
    { class: `badge ${ok ? "status-ok" : "status-bad"}`, title: row.error || row.status },
    String(row.status_code),
  );
}

/** A row's first kept image (an answer's, else an input's) as a thumbnail. */
export function thumbnail(row) {
  const images = row.kept_images || [];
  const image = images.find((i) => i.role === "output" && i.url) || images.find((i) => i.url);
  if (!image) return h("span", { class: "thumb thumb-none", "aria-hidden": "true" });
  return picture(image, "thumb", `${row.model_group || row.model}: ${row.prompt || "image"}`);
}

/** A kept image; one whose link no longer works shows as a gap, not a broken image. */
export function picture(image, className, alt) {
  const node = h("img", {
    class: className,
    src: image.url,
    alt,
    loading: "lazy",
    width: image.width || null,
    height: image.height || null,
  });
  node.addEventListener("error", () => node.replaceWith(h("span", { class: `${className} gone` })));
  return node;
}

/** Shows the call `id` in `main` (waiting a little for a call just made to be logged),
 * with a link back to `backTo`; returns the clean-up that stops the waiting. */
export function showRequest(main, api, id, backTo = "#/requests") {
  const back = h("a", { href: backTo, class: "back" }, "← All requests");
  const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  main.append(back, body);
  let timer = null;
  let tries = 0;
  let stopped = false;
  async function look() {
    timer = null;
    let rows;
    try {
      rows = await api.get("/spend/logs", { request_id: id, details: "true" });
    } catch (error) {
      fill(body, notice("error", error.message));
      return;
    }
    if (stopped) return;
    if (rows.length) {
      fill(body, detail(rows[0]));
    } else if (++tries > WAIT_TRIES) {
      fill(body, notice("error", `There is no request ${id} in the spend log.`));
    } else {
      fill(body, h("p", { class: "loading" }, "Waiting for this request to be logged…"));
      timer = setTimeout(look, WAIT_MS);
    }
  }
  look();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function detail(row) {
  const details = row.details;
  const outputs = row.kept_images.filter((i) => i.role === "output");
  const inputs = row.kept_images.filter((i) => i.role !== "output");
  return h(
    "article",
    { class: "request-detail" },
    h(
      "header",
      { class: "detail-head" },
      statusBadge(row),
      h("h2", {}, row.model_group || row.model || "request"),
      h("span", { class: "muted" }, new Date(Date.parse(row.startTime)).toLocaleString()),
      h("code", { class: "muted" }, row.request_id),
    ),
    row.prompt ? h("blockquote", { class: "prompt" }, row.prompt) : null,
    outputs.length ? images("Images", outputs, row) : null,
    inputs.length ? images("Images sent", inputs, row) : null,
    h("section", { class: "card" }, facts(row, details)),
    details
      ? sections(details)
      : notice(
          "info",
          "This call's details were not kept: general_settings.console.keep_request_details is off, or its key or team says keep_images: false.",
        ),
  );
}

function images(title, list, row) {
  return h(
    "section",
    {},
    h("h3", {}, title),
    h(
      "div",
      { class: "detail-images" },
      list.map((image) =>
        h(
          "figure",
          {},
          image.url
            ? h(
                "a",
                { href: image.url, target: "_blank", rel: "noopener" },
                picture(image, "large", `${image.role} ${image.index + 1}: ${row.prompt || ""}`),
              )
            : h("span", { class: "large gone" }),
          h(
            "figcaption",
            { class: "muted" },
            `${image.role === "output" ? "" : `${image.role} · `}${image.width || "?"}×${image.height || "?"} · ${kilobytes(image.size_bytes)}`,
          ),
        ),
      ),
    ),
  );
}

function facts(row, details) {
  const served = details?.served || {};
  const pairs = [
    ["Status", `${row.status_code} ${row.status}${row.error ? ` (${row.error})` : ""}`],
    details?.error ? ["Error", details.error.message] : null,
    ["Key", row.key_alias || (row.api_key ? row.api_key.slice(0, 12) + "…" : "master key")],
    ["Team", row.team_id],
    ["User", row.user],
    ["Model asked", row.model],
    ["Model group", row.model_group],
    ["Deployment", row.model_id],
    ["Provider", row.custom_llm_provider],
    ["Cost", dollars(row.spend)],
    ["Latency", `${row.request_duration_ms.toFixed(1)} ms`],
    ["Started", row.startTime],
    ["Ended", row.endTime],
    ["Images", row.images],
    ["Size", [row.image_size, row.image_quality].filter(Boolean).join(", ")],
    ["Tokens", row.total_tokens ? `${row.prompt_tokens} in, ${row.completion_tokens} out` : null],
    ["Attempts", row.attempts.length ? row.attempts.join(" → ") : null],
    ["Retries", served.retries || null],
    ["Adjustments", row.adjustments.join(", ")],
    ["Dropped params", (served.dropped_params || []).join(", ")],
    ["Filtered", served.filtered || null],
    ["Portkey target", served.path],
    ["Cache", row.cache_hit === "True" ? "hit" : null],
    ["Trace id", row.trace_id],
    ["Request id", row.request_id],
  ];
  return h(
    "dl",
    { class: "detail" },
    pairs
      .filter((pair) => pair && pair[1] !== null && pair[1] !== undefined && pair[1] !== "")
      .map(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]),
  );
}

function sections(details) {
  const sent = details.sent || [];
  return [
    h("h3", {}, "Request as received"),
    json(details.request),
    h("h3", {}, `Sent upstream (${sent.length})`),
    sent.length
      ? sent.map((item, index) =>
          h(
            "section",
            { class: "card upstream" },
            h(
              "p",
              {},
              h("strong", {}, `${index + 1}. ${item.method} `),
              h("code", {}, item.url),
            ),
            h(
              "p",
              { class: "muted" },
              [
                item.attempt && `for ${item.attempt}`,
                item.status !== null ? `answered ${item.status}` : item.error,
                item.seconds !== null ? `in ${(item.seconds * 1000).toFixed(0)} ms` : null,
                item.content_type,
              ]
                .filter(Boolean)
                .join(" · "),
            ),
            item.body !== null ? json(item.body) : null,
          ),
        )
      : h("p", { class: "muted" }, "Nothing was sent upstream (a refusal, a cached answer, or a built-in model)."),
    details.answer ? [h("h3", {}, "Answer"), json(details.answer)] : null,
  ];
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function kilobytes(size) {
  if (!size) return "–";
  return size < 1024 * 1024 ? `${(size / 1024).toFixed(1)} KB` : `${(size / 1048576).toFixed(1)} MB`;
}
