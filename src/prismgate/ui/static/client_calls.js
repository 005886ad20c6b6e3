// The playground's calls, made as a client makes them (same paths, same bodies), signed in
// by the session: unlike api.js, the answer's headers are kept, to show what the gateway
// reports about the call (cost, adjustments, provider, attempts, request id).
import { ApiError } from "./api.js";
import { dollars, fill, h, notice } from "./dom.js";

// Response headers worth showing, and what to call them.
const SHOWN_HEADERS = [
  ["x-portkey-provider", "Provider"],
  ["x-prismgate-adjusted", "Adjusted"],
  ["x-prismgate-dropped-params", "Dropped parameters"],
  ["x-prismgate-attempts", "Attempts"],
  ["x-portkey-cache-status", "Cache"],
  ["x-request-id", "Request id"],
];

/** POST `json` or a multipart `form` to `path`: {data, headers, ms}, or an ApiError with
 * the OpenAI error's message. */
export async function post(path, { json, form }, csrfToken) {
  const headers = { accept: "application/json", "x-csrf-token": csrfToken };
  if (json !== undefined) headers["content-type"] = "application/json";
  const started = performance.now();
  const response = await fetch(path, {
    method: "POST",
    headers,
    body: json !== undefined ? JSON.stringify(json) : form,
    credentials: "same-origin",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data?.error);
  return { data, headers: response.headers, ms: performance.now() - started };
}

/**
 * Runs `request` with `button` disabled; then shows `draw(answer)` and the answer's facts
 * in `into`, or, on failure, the error's message under what was there.
 */
export async function showAnswer(button, into, request, draw) {
  button.disabled = true;
  const before = [...into.childNodes];
  fill(into, ...before, h("p", { class: "loading" }, "Working…"));
  try {
    const answer = await request();
    fill(into, draw(answer), facts(answer));
  } catch (error) {
    fill(into, ...before, notice("error", error.message));
  } finally {
    button.disabled = false;
  }
}

function facts(answer) {
  const cost = answer.headers.get("x-prismgate-response-cost");
  const rows = [
    ["Cost", cost === null ? "–" : dollars(Number(cost))],
    ["Latency", `${Math.round(answer.ms)} ms`],
  ];
  for (const [name, label] of SHOWN_HEADERS) {
    const value = answer.headers.get(name);
    if (value) rows.push([label, value]);
  }
  const id = answer.headers.get("x-request-id");
  return h(
    "section",
    { class: "card facts" },
    h(
      "dl",
      { class: "detail" },
      rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    ),
    id
      ? h("a", { href: `#/requests?id=${encodeURIComponent(id)}` }, "This request in Requests")
      : null,
  );
}
