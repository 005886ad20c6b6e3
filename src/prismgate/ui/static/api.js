// The console calls the same API a client does, signed in by its session cookie; every
// request that changes something carries the session's CSRF token.

let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token;
}

/** An API failure, with the OpenAI error body's message, type and code. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.type = error?.type;
    this.code = error?.code;
    this.param = error?.param;
  }
}

async function call(method, path, { query, json, form } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const headers = { accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
  const response = await fetch(url, { method, headers, body, credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new ApiError(401, { message: "signed out" });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data?.error);
  return data;
}

export const api = {
  get: (path, query) => call("GET", path, { query }),
  post: (path, json, query) => call("POST", path, { json, query }),
  upload: (path, form) => call("POST", path, { form }),
  delete: (path, query) => call("DELETE", path, { query }),
};
