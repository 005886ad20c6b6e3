// Form parts the console's pages share: labelled fields, buttons, file inputs with a
// preview, and a modal dialog holding a form whose failures show in the dialog.
import { fill, h } from "./dom.js";

let made = 0; // field ids only need to be unique within the page

/** A label and its control (input, select, textarea), tied by id (not by nesting), so
 * the control's accessible name is the label alone. */
export function field(label, control) {
  if (!control.id) control.id = `field-${++made}`;
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}

/** A plain button (never a form's submit) that runs `onclick`; `kind` adds classes. */
export function button(text, onclick, kind = "") {
  return h("button", { type: "button", class: kind || null, onclick }, text);
}

/** A file input for images, with a thumbnail of the chosen file; `reset()` empties it. */
export function imageInput(name, label, { required = false } = {}) {
  const preview = h("span", { class: "preview" });
  let shown = null;
  const input = h("input", {
    type: "file",
    name,
    accept: "image/png,image/jpeg,image/webp,image/gif",
    required,
    onchange: () => show(input.files[0]),
  });
  function show(file) {
    if (shown) URL.revokeObjectURL(shown);
    shown = file ? URL.createObjectURL(file) : null;
    fill(
      preview,
      shown ? h("img", { class: "thumb", src: shown, alt: `${label}: preview` }) : null,
    );
  }
  return {
    node: h("div", { class: "upload" }, field(label, input), preview),
    reset() {
      input.value = "";
      show(null);
    },
  };
}

/** A file's bytes as a data: URL (an image_url a chat message can carry). */
export function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`Could not read ${file.name}.`));
    reader.readAsDataURL(file);
  });
}

/** `text` as a JSON object ({} when empty); an Error saying what is wanted otherwise. */
export function readJson(text, what) {
  if (!text.trim()) return {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch {
    // the message below says what is wanted
  }
  throw new Error(`${what} must be a JSON object, like {"owner": "ci"}.`);
}

/**
 * Shows a form in `dialog` (a <dialog>): `submit(form)` runs on submit; the dialog closes
 * when it succeeds and shows its error's message when it throws.
 */
export function formDialog(dialog, { title, fields, submitText, kind = "" }, submit) {
  const error = h("p", { class: "notice error", role: "alert" });
  const send = h("button", { type: "submit", class: kind || null }, submitText);
  const form = h(
    "form",
    { class: "editor-form", novalidate: true },
    h("h2", {}, title),
    fields,
    error,
    h(
      "div",
      { class: "form-actions" },
      button("Cancel", () => dialog.close(), "secondary"),
      send,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    send.disabled = true;
    try {
      await submit(form);
      dialog.close();
    } catch (failure) {
      fill(error, failure.message);
    } finally {
      send.disabled = false;
    }
  });
  fill(dialog, form);
  dialog.setAttribute("aria-label", title);
  dialog.showModal();
}
