// Starts Swagger UI (loaded just before this file) over the gateway's /openapi.json.
// The page's Content-Security-Policy allows scripts from this origin only, so this runs
// from a file rather than inline. On a gateway with a master key the document itself needs
// a key: the form asks for one, and the key stays in this page's memory (never stored).
"use strict";

(function () {
  const form = document.getElementById("key-form");
  const problem = document.getElementById("key-problem");

  function start(spec, key) {
    const ui = SwaggerUIBundle({
      spec,
      dom_id: "#swagger-ui",
      deepLinking: true,
      layout: "BaseLayout",
      presets: [SwaggerUIBundle.presets.apis],
      // No badge fetched from validator.swagger.io, and a ?url= or ?configUrl= in this
      // page's address never makes it read another document.
      validatorUrl: null,
      queryConfigEnabled: false,
      persistAuthorization: false,
      displayRequestDuration: true,
    });
    if (key) {
      ui.preauthorizeApiKey("bearer", key);
    }
    window.ui = ui;
  }

  function refuse(message) {
    problem.textContent = message;
    form.hidden = false;
  }

  async function load(key) {
    const headers = key ? { Authorization: "Bearer " + key } : {};
    let answer;
    let body;
    try {
      answer = await fetch("/openapi.json", { headers, cache: "no-store" });
      body = await answer.json();
    } catch (error) {
      refuse("The gateway's /openapi.json could not be read: " + error);
      return;
    }
    if (!answer.ok) {
      const message = body && body.error ? body.error.message : "status " + answer.status;
      refuse("The gateway refused /openapi.json: " + message);
      return;
    }
    form.hidden = true;
    start(body, key);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    load(form.elements.key.value.trim());
  });
  if (document.body.dataset.needsKey === "true") {
    form.hidden = false;
    form.elements.key.focus();
  } else {
    load("");
  }
})();
