/** JSON responses with the headers every function sends. */

/** A JSON response; `Cache-Control: no-store` because these answers are per request. */
export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("Content-Type", "application/json; charset=utf-8");
  h.set("Cache-Control", "no-store");
  return new Response(JSON.stringify(body), { status, headers: h });
}

/** `{error, error_description?}` with `status`. */
export function error(
  status: number,
  code: string,
  description?: string,
  headers: HeadersInit = {},
): Response {
  const body: Record<string, string> = { error: code };
  if (description !== undefined) body.error_description = description;
  return json(status, body, headers);
}

/** 405 with the `Allow` header. */
export function methodNotAllowed(allow: string): Response {
  return error(405, "method_not_allowed", undefined, { Allow: allow });
}
