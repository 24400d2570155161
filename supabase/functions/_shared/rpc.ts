/**
 * The only module that talks to the database: a tiny interface over the RPCs
 * the functions call, with two implementations.
 *
 * - `PostgresRpc` (npm:postgres): a direct connection. Supabase gives every
 *   edge function `SUPABASE_DB_URL`; tests pass `DATABASE_URL`. Each session
 *   runs as `service_role` (the startup parameter `role`), so the grants that
 *   PostgREST would enforce are enforced here too.
 * - `SupabaseRpc` (npm:@supabase/supabase-js): PostgREST with the service
 *   role key (`SUPABASE_URL` + `SUPABASE_SERVICE_ROLE_KEY`).
 *
 * Both speak the same contract: refusals of `deduct_credits_pooled` are
 * results (`ok = false`, `reason`); errors are `RpcError` with the SQLSTATE
 * (`22023` for bad input) or `retryable = true` when the database could not
 * be reached.
 */

import postgres from "postgres";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { ClerkEventResult } from "./db_types.ts";

/** `public.credit_result`. Numeric values arrive as strings (exact decimals). */
export interface CreditResult {
  ok: boolean;
  pool: string | null;
  reason: string | null;
  transaction_id: string | null;
  amount: string | null;
  balance: string | null;
  replayed: boolean | null;
}

export interface DeductArgs {
  clerkUserId: string;
  /** A decimal string, passed to SQL as `numeric` (never through a float). */
  amount: string;
  description: string;
  /** From the verified token only, never from a request body (A4). */
  clerkOrgId: string | null;
  idempotencyKey: string | null;
  context: unknown;
}

/**
 * `public.extension_token_result` as `validate_extension_token` returns it
 * for a live token (`ok` true); the fields this module's callers read.
 */
export interface ExtensionTokenRow {
  ok: boolean;
  id: string;
  clerk_user_id: string;
  clerk_org_id: string | null;
  expires_at: string;
  jti: string | null;
}

/** A refusal (`ok` false: reason unknown, revoked or expired) is `null` to callers. */
function liveToken(row: ExtensionTokenRow | null | undefined): ExtensionTokenRow | null {
  return row && row.ok === true ? row : null;
}

/**
 * `public.clerk_event_result`, what `apply_clerk_event` returns: generated
 * from the catalog (`make gen`), re-exported for the functions.
 */
export type { ClerkEventResult };

export interface CreditsRpc {
  /** `public.deduct_credits_pooled`. */
  deductCreditsPooled(args: DeductArgs): Promise<CreditResult>;
  /**
   * `public.validate_extension_token`: the row of a live token, or `null` when
   * the database refuses it (`ok` false: revoked, expired or unknown).
   */
  validateExtensionToken(tokenHash: string): Promise<ExtensionTokenRow | null>;
  /**
   * `public.apply_clerk_event`. `rawEvent` is the verified body text, handed
   * to Postgres as is (no re-serialisation).
   */
  applyClerkEvent(svixId: string, rawEvent: string): Promise<ClerkEventResult>;
  close(): Promise<void>;
}

/** An RPC that failed: SQLSTATE `code` when the database answered. */
export class RpcError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "RpcError";
  }

  /** Bad input as the SQL contract defines it (SQLSTATE 22023). */
  get isInvalidParameter(): boolean {
    return this.code === "22023";
  }
}

/** SQLSTATE classes that mean "try again": connection, resources, shutdown, serialization. */
function retryableSqlstate(code: string | null): boolean {
  if (code === null) return true;
  return ["08", "53", "57", "40"].some((cls) => code.startsWith(cls));
}

// -- direct connection --------------------------------------------------------

export interface PostgresRpcOptions {
  /** Role every session runs as; default `service_role`. `null` keeps the login role. */
  role?: string | null;
  /** Pool size per isolate; default 2. */
  max?: number;
}

export class PostgresRpc implements CreditsRpc {
  readonly #sql: postgres.Sql;

  constructor(url: string, options: PostgresRpcOptions = {}) {
    const role = options.role === undefined ? "service_role" : options.role;
    const connection: Record<string, string> = { application_name: "edge-functions" };
    if (role !== null) connection.role = role;
    this.#sql = postgres(url, {
      max: options.max ?? 2,
      // Transaction-mode poolers (Supavisor on port 6543) cannot keep
      // prepared statements across transactions.
      prepare: false,
      connect_timeout: 5,
      idle_timeout: 20,
      onnotice: () => {},
      connection,
    });
  }

  async #run<T>(what: string, query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (err) {
      throw toRpcError(what, err);
    }
  }

  deductCreditsPooled(args: DeductArgs): Promise<CreditResult> {
    const sql = this.#sql;
    return this.#run("deduct_credits_pooled", async () => {
      const rows = await sql<CreditResult[]>`
        select r.ok, r.pool, r.reason, r.transaction_id, r.amount, r.balance, r.replayed
        from public.deduct_credits_pooled(
          p_clerk_user_id => ${args.clerkUserId},
          p_amount => ${args.amount}::numeric,
          p_description => ${args.description},
          p_clerk_org_id => ${args.clerkOrgId},
          p_idempotency_key => ${args.idempotencyKey},
          p_context => ${JSON.stringify(args.context ?? {})}::text::jsonb
        ) as r`;
      return rows[0];
    });
  }

  validateExtensionToken(tokenHash: string): Promise<ExtensionTokenRow | null> {
    const sql = this.#sql;
    return this.#run("validate_extension_token", async () => {
      const rows = await sql<{ row: ExtensionTokenRow | null }[]>`
        select pg_catalog.to_jsonb(r) as row
        from public.validate_extension_token(p_token_hash => ${tokenHash}) as r`;
      return liveToken(rows[0]?.row);
    });
  }

  applyClerkEvent(svixId: string, rawEvent: string): Promise<ClerkEventResult> {
    const sql = this.#sql;
    return this.#run("apply_clerk_event", async () => {
      // As JSON, so both backends hand over the same shape (PostgREST sends
      // a composite as one object).
      const rows = await sql<{ result: ClerkEventResult }[]>`
        select pg_catalog.to_jsonb(r) as result
        from public.apply_clerk_event(
          p_svix_id => ${svixId},
          p_event => ${rawEvent}::text::jsonb
        ) as r`;
      return rows[0].result;
    });
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}

function toRpcError(what: string, err: unknown): RpcError {
  if (err instanceof postgres.PostgresError) {
    return new RpcError(err.message, err.code, retryableSqlstate(err.code));
  }
  // Network errors, timeouts, closed connections: the database did not answer.
  const message = err instanceof Error ? err.message : String(err);
  return new RpcError(`${what}: database unavailable (${message})`, null, true);
}

// -- PostgREST through supabase-js ---------------------------------------------

interface PostgrestErrorLike {
  code?: string;
  message?: string;
}

export class SupabaseRpc implements CreditsRpc {
  readonly #client: SupabaseClient;

  constructor(url: string, serviceRoleKey: string, fetchImpl?: typeof fetch) {
    this.#client = createClient(url, serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      global: fetchImpl ? { fetch: fetchImpl } : {},
    });
  }

  async #call<T>(fn: string, args: Record<string, unknown>): Promise<T> {
    let response;
    try {
      response = await this.#client.rpc(fn, args);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new RpcError(`${fn}: database unavailable (${message})`, null, true);
    }
    const { data, error, status } = response;
    if (error) {
      const e = error as PostgrestErrorLike;
      // PostgREST reports SQLSTATEs in `code`; its own errors are PGRSTxxx.
      const sqlstate = e.code && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : null;
      const retryable = status === 0 || status >= 500 ||
        (sqlstate !== null && retryableSqlstate(sqlstate));
      throw new RpcError(e.message ?? `${fn} failed`, sqlstate ?? e.code ?? null, retryable);
    }
    return data as T;
  }

  deductCreditsPooled(args: DeductArgs): Promise<CreditResult> {
    return this.#call<CreditResult>("deduct_credits_pooled", {
      p_clerk_user_id: args.clerkUserId,
      // A JSON string keeps the exact decimal; PostgREST casts it to numeric.
      p_amount: args.amount,
      p_description: args.description,
      p_clerk_org_id: args.clerkOrgId,
      p_idempotency_key: args.idempotencyKey,
      p_context: args.context ?? {},
    });
  }

  async validateExtensionToken(tokenHash: string): Promise<ExtensionTokenRow | null> {
    return liveToken(
      await this.#call<ExtensionTokenRow | null>("validate_extension_token", {
        p_token_hash: tokenHash,
      }),
    );
  }

  applyClerkEvent(svixId: string, rawEvent: string): Promise<ClerkEventResult> {
    // PostgREST takes named arguments as one JSON object, so the event is
    // parsed once here; the signature was checked on the raw bytes before.
    return this.#call<ClerkEventResult>("apply_clerk_event", {
      p_svix_id: svixId,
      p_event: JSON.parse(rawEvent),
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

// -- choosing one ---------------------------------------------------------------

export type Env = { get(name: string): string | undefined };

/**
 * The backend the environment asks for. `RPC_BACKEND` = `postgres` or
 * `supabase` forces one; otherwise a database URL (`DATABASE_URL`, then
 * `SUPABASE_DB_URL`) selects the direct connection, and `SUPABASE_URL` with
 * `SUPABASE_SERVICE_ROLE_KEY` selects PostgREST. Throws naming the variables
 * when neither is configured.
 */
export function rpcFromEnv(env: Env = Deno.env): CreditsRpc {
  const forced = env.get("RPC_BACKEND");
  const dbUrl = env.get("DATABASE_URL") || env.get("SUPABASE_DB_URL");
  const url = env.get("SUPABASE_URL");
  const key = env.get("SUPABASE_SERVICE_ROLE_KEY");
  if (forced !== undefined && forced !== "" && forced !== "postgres" && forced !== "supabase") {
    throw new Error("RPC_BACKEND must be 'postgres' or 'supabase'");
  }
  const role = env.get("DB_ROLE");
  if (forced === "postgres" || (forced !== "supabase" && dbUrl)) {
    if (!dbUrl) throw new Error("RPC_BACKEND=postgres needs DATABASE_URL or SUPABASE_DB_URL");
    return new PostgresRpc(dbUrl, { role: role === "" ? null : role });
  }
  if (url && key) return new SupabaseRpc(url, key);
  throw new Error(
    "no database configured: set SUPABASE_DB_URL (or DATABASE_URL), or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY",
  );
}
