// Playground: generate, edit, and chat about an uploaded image with any model group,
// through the API a client calls (/v1/images/generations, /v1/images/edits,
// /v1/chat/completions), signed in by the session; shows the answer, its cost and the
// gateway's response headers.
import { post, showAnswer } from "../client_calls.js";
import { fill, h, notice } from "../dom.js";
import { button, dataUrl, field, imageInput } from "../forms.js";

const TABS = [
  { id: "generate", title: "Generate" },
  { id: "edit", title: "Edit" },
  { id: "chat", title: "Chat with an image" },
];

export async function render(main, { api, session, params }) {
  const [models, groups, infos] = await Promise.all([
    api.get("/v1/models"),
    api.get("/model_group/info"),
    api.get("/model/info"),
  ]);
  const groupInfo = new Map(groups.data.map((g) => [g.model_group, g]));
  const deployments = (name) => infos.data.filter((e) => e.model_name === name);
  const editable = (name) => deployments(name).every((e) => e.model_info?.image?.edits !== false);
  const names = models.data.map((m) => m.id);
  const call = (path, body) => post(path, body, session.csrf_token);
  const panels = {
    generate: () => imageForm("generate", names, groupInfo, call),
    edit: () => imageForm("edit", names.filter(editable), groupInfo, call),
    chat: () => chatForm(names, groupInfo, call),
  };
  let tab = panels[params.get("tab")] ? params.get("tab") : "generate";
  const bar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { class: "tab-panel", role: "tabpanel" });
  const show = () => {
    // Only while this page is shown: it may have been left while its lists loaded.
    if (main.isConnected) history.replaceState(null, "", `#/playground?tab=${tab}`);
    const tabButton = (t) => {
      const choose = () => {
        tab = t.id;
        show();
      };
      const chosen = button(t.title, choose, t.id === tab ? "on" : "");
      chosen.setAttribute("role", "tab");
      chosen.setAttribute("aria-selected", String(t.id === tab));
      return chosen;
    };
    fill(bar, TABS.map(tabButton));
    fill(panel, names.length ? panels[tab]() : notice("info", "No model groups are configured."));
  };
  main.append(bar, panel);
  show();
}

function imageForm(kind, names, groupInfo, call) {
  if (!names.length) return notice("info", "No model group here can do this.");
  const editing = kind === "edit";
  const options = h("div", { class: "fields" });
  const model = modelPicker(names, () => fill(options, imageOptions(groupInfo.get(model.value))));
  const files = editing
    ? [
        imageInput("image", "Image", { required: true }),
        imageInput("mask", "Mask (transparent where it may change; optional)"),
      ]
    : [];
  const results = h("div", { class: "results" }, h("p", { class: "empty" }, "Images appear here."));
  const send = h("button", { type: "submit" }, editing ? "Edit image" : "Generate");
  const prompt = h("textarea", {
    name: "prompt",
    required: true,
    placeholder: "A cute baby sea otter in a tiny hat",
  });
  const form = h(
    "form",
    { class: "card playground-form" },
    h("div", { class: "fields" }, field("Model", model)),
    files.map((f) => f.node),
    field("Prompt", prompt),
    options,
    h("div", { class: "form-actions" }, send),
  );
  fill(options, imageOptions(groupInfo.get(model.value)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { model: model.value, prompt: data.get("prompt") };
    for (const name of ["size", "quality", "style", "response_format", "n"]) {
      const value = data.get(name);
      if (value) body[name] = name === "n" ? Number(value) : value;
    }
    let sent = { json: body };
    if (editing) {
      // A multipart form, as OpenAI's SDKs send an edit.
      const multipart = new FormData();
      for (const [name, value] of Object.entries(body)) multipart.append(name, String(value));
      multipart.append("image", data.get("image"));
      if (data.get("mask")?.size) multipart.append("mask", data.get("mask"));
      sent = { form: multipart };
    }
    const path = editing ? "/v1/images/edits" : "/v1/images/generations";
    showAnswer(
      send,
      results,
      () => call(path, sent),
      (answer) => h("div", { class: "gallery" }, answer.data.data.map(picture)),
    );
  });
  return h("div", { class: "row" }, form, results);
}

// The options the model group takes: its sizes, qualities and styles from /model_group/info.
function imageOptions(info) {
  const choice = (name, label, values, blank) =>
    values?.length
      ? field(
          label,
          h(
            "select",
            { name },
            blank ? h("option", { value: "" }, blank) : null,
            values.map((v) => h("option", { value: v }, v)),
          ),
        )
      : null;
  const size = info?.image_sizes
    ? choice("size", "Size", info.image_sizes, "model default")
    : field("Size", h("input", { name: "size", value: "1024x1024", placeholder: "WxH" }));
  // The gateway fans a larger n out over several upstream calls: OpenAI's 10 is the cap.
  const n = h("input", { name: "n", type: "number", min: "1", max: "10", value: "1" });
  return [
    size,
    field("Images", n),
    choice("quality", "Quality", info?.image_qualities, "model default"),
    choice("style", "Style", info?.image_styles, "model default"),
    choice("response_format", "Answer as", ["b64_json", "url"]),
  ];
}

function chatForm(names, groupInfo, call) {
  const vision = names.filter((n) => groupInfo.get(n)?.supports_vision);
  const ordered = [...vision, ...names.filter((n) => !vision.includes(n))];
  const model = modelPicker(ordered, null, (n) => (vision.includes(n) ? n : `${n} (no vision)`));
  const image = imageInput("image", "Image");
  const message = h("textarea", {
    name: "message",
    required: true,
    placeholder: "What's in this image?",
  });
  const hint = h("p", { class: "empty" }, "Upload an image and ask about it.");
  const transcript = h("div", { class: "transcript", "aria-live": "polite" }, hint);
  const messages = [];
  const send = h("button", { type: "submit" }, "Send");
  const restart = () => {
    messages.length = 0;
    fill(transcript, hint);
  };
  const form = h(
    "form",
    { class: "card playground-form" },
    h("div", { class: "fields" }, field("Model", model)),
    image.node,
    field("Message", message),
    h("div", { class: "form-actions" }, button("New chat", restart, "secondary"), send),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = new FormData(form).get("image");
    const content = [{ type: "text", text: message.value }];
    // The image goes as a data: URL in an image_url part, as a client would send it.
    if (file?.size) content.push({ type: "image_url", image_url: { url: await dataUrl(file) } });
    const turn = { role: "user", content };
    const body = { json: { model: model.value, messages: [...messages, turn] } };
    showAnswer(
      send,
      transcript,
      () => call("/v1/chat/completions", body),
      (answer) => {
        messages.push(turn, { role: "assistant", content: answer.data.choices[0].message.content });
        message.value = "";
        image.reset();
        return messages.map(bubble);
      },
    );
  });
  return h("div", { class: "row" }, form, transcript);
}

function picture(image, index) {
  const caption = image.revised_prompt ? h("figcaption", {}, image.revised_prompt) : null;
  const src = image.b64_json ? `data:image/png;base64,${image.b64_json}` : image.url;
  const where = linkKind(src);
  if (where !== "here") {
    // The console loads images only from the gateway (its CSP): a provider's own link
    // (dall-e's, Azure's `url` answers) is for the reader to open; anything else is text.
    const link =
      where === "web"
        ? h("a", { href: src, target: "_blank", rel: "noopener noreferrer" }, src)
        : h("code", {}, String(src));
    return h(
      "figure",
      { class: "provider-link" },
      h("p", { class: "muted" }, `Image ${index + 1}: the provider's own link, not loaded here.`),
      link,
      caption,
    );
  }
  return h(
    "figure",
    {},
    h(
      "a",
      { href: src, target: "_blank", rel: "noopener", download: `image-${index + 1}.png` },
      h("img", { src, alt: image.revised_prompt || `image ${index + 1}` }),
    ),
    caption,
  );
}

/** "here" for an image the page may show (this gateway's link, a data: URL), "web"
 * for another site's http(s) link, "other" for anything else. */
function linkKind(src) {
  let url;
  try {
    url = new URL(src, window.location.href);
  } catch {
    return "other";
  }
  if (url.protocol === "data:" || url.origin === window.location.origin) return "here";
  return url.protocol === "https:" || url.protocol === "http:" ? "web" : "other";
}

function bubble(message) {
  const parts = Array.isArray(message.content)
    ? message.content
    : [{ type: "text", text: message.content }];
  return h(
    "div",
    { class: `bubble ${message.role}` },
    parts.map((part) =>
      part.type === "image_url"
        ? h("img", { class: "thumb", src: part.image_url.url, alt: "your image" })
        : h("p", {}, part.text),
    ),
  );
}

function modelPicker(names, onchange, label = (n) => n) {
  return h(
    "select",
    { name: "model", onchange },
    names.map((n) => h("option", { value: n }, label(n))),
  );
}
