// The workflow-queue API, with the token kept for this browser tab only (sessionStorage).

const TOKEN_KEY = "conveyor.token";

export class ApiError extends Error {
  constructor(status, title, description) {
    super(description ? `${title}: ${description}` : title);
    this.status = status;
    this.title = title;
    this.description = description;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  scopes: [],
  get canWrite() { return this.scopes.includes("write"); },
  get canAdmin() { return this.scopes.includes("admin"); },
  onSignedOut: () => {},
};

// Paths are relative, so the dashboard also works behind a proxy that mounts it below `/`.
export async function api(path, { method = "GET", body, token = session.token } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path.replace(/^\//, ""), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "omit",
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = new ApiError(response.status, (data && data.title) || response.statusText,
      data && data.description);
    if (response.status === 401 && token === session.token) {
      session.token = null;
      session.onSignedOut(error);
    }
    throw error;
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
