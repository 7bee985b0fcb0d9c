// Talks to its own origin only (CSP connect-src 'self'); every path is relative.

export interface User {
  id: string;
  username: string;
  display_name: string | null;
  email: string | null;
  role: "admin" | "member";
  status: string;
  source: "local" | "ldap" | "proxy";
  groups: string[];
  created_at: string;
  last_login_at: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
  get resetsAt(): string | null {
    const err = (this.body.error ?? {}) as Record<string, unknown>;
    const at = err.resets_at ?? this.body.resets_at;
    return typeof at === "string" ? at : null;
  }
}

let csrfToken = "";
let onSignedOut: () => void = () => undefined;

export function setCsrf(token: string): void {
  csrfToken = token;
}
export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler;
}

async function failure(response: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    /* not JSON: keep the status */
  }
  const err = (body.error ?? {}) as Record<string, unknown>;
  const code = typeof err.code === "string" ? err.code : String(response.status);
  const message = typeof err.message === "string" ? err.message : response.statusText;
  return new ApiError(response.status, code, message, body);
}

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.body !== undefined && !(init.body instanceof FormData) && !headers.has("Content-Type")) {
    headers.set("Content-Type", "application/json");
  }
  if ((init.method ?? "GET") !== "GET" && csrfToken) headers.set("X-CSRF-Token", csrfToken);
  const response = await fetch(path, { ...init, headers, credentials: "same-origin" });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && !path.startsWith("/api/auth/")) onSignedOut();
    throw error;
  }
  return response;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

export async function send<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(path, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.status === 204 ? (undefined as T) : ((await response.json()) as T);
}

export interface StreamEvent {
  type: "content" | "done" | "error";
  content?: string;
  session_id?: string;
  error?: string;
  retryable?: boolean;
}

/** POST a body that answers with server-sent events; one callback per event. */
export async function stream(
  path: string,
  body: unknown,
  signal: AbortSignal,
  onEvent: (event: StreamEvent) => void,
): Promise<Response> {
  const response = await request(path, { method: "POST", body: JSON.stringify(body), signal });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).replace(/\r$/, "");
      buffer = buffer.slice(cut + 1);
      if (line.startsWith("data:")) onEvent(JSON.parse(line.slice(5).trim()) as StreamEvent);
    }
  }
  return response;
}
