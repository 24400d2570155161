/**
 * Test assertions (tests only). `jsr:@std/assert` cannot be fetched here
 * (npm: imports only), so these wrap Node's `node:assert`, built into Deno.
 */

import nodeAssert from "node:assert/strict";

export function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message);
}

export function assertEquals<T>(actual: unknown, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertNotEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  nodeAssert.match(actual, pattern, message);
}

// deno-lint-ignore no-explicit-any
type ErrorClass = new (...args: any[]) => Error;

/**
 * Await `fn()`, which must reject with an instance of `errorClass` (default
 * Error) whose message includes `includes`; returns the error.
 */
export async function assertRejects(
  fn: () => Promise<unknown>,
  errorClass: ErrorClass = Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    nodeAssert.ok(
      err instanceof errorClass,
      `expected ${errorClass.name}, got ${err instanceof Error ? err.name : typeof err}: ${err}`,
    );
    if (includes !== undefined) {
      nodeAssert.ok(
        (err as Error).message.includes(includes),
        `expected message to include ${JSON.stringify(includes)}, got ${
          JSON.stringify((err as Error).message)
        }`,
      );
    }
    return err as Error;
  }
  throw new nodeAssert.AssertionError({ message: "expected a rejection, got none" });
}

/** The JSON body of a response, after checking its status. */
export async function expectJson(
  response: Response,
  status: number,
): Promise<Record<string, unknown>> {
  const text = await response.text();
  nodeAssert.equal(response.status, status, `status ${response.status}, body ${text}`);
  return JSON.parse(text);
}
