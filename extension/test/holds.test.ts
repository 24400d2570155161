/**
 * Holds around streamed completions (H1), against a real `issuer serve`
 * (started and seeded by py/tests/test_extension.py): the most a completion
 * may cost is held before it starts, its real cost captured after (the rest
 * released), the hold voided when the stream is cancelled or fails, and a
 * hold the pool cannot cover refused before any work.
 *
 * Seeded: Hana with an active seat in Holds Co (pool 20).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it, before, after } from "node:test";
import { Controller } from "../src/controller.js";
import { Session } from "../src/session.js";
import { arrange, balance, env, issuerClient, StandIn } from "./harness.js";

const HANA = env("HANA");
const HOLDS_CO = env("HOLDS_CO");

function stream(maxAmount: number | string) {
  return { maxAmount, description: "streamed completion", idempotencyKey: randomUUID() };
}

describe("holds around streamed completions", () => {
  const issuer = issuerClient();
  const ui = new StandIn();
  const session = new Session(issuer, ui.secrets);
  const controller = new Controller(session, issuer, ui);

  before(async () => {
    ui.sessionToken = (await arrange<{ token: string }>("session", { user: HANA })).token;
    await controller.activate();
    ui.preferred = HOLDS_CO;
    ui.browserChoices.push({ approve: HOLDS_CO });
    const view = await controller.signIn();
    assert.equal(view?.claims.clerk_org_id, HOLDS_CO);
  });
  after(() => controller.dispose());

  it("holds the most it may cost while streaming, captures the real cost, releases the rest", async () => {
    let seenDuringStream = -1;
    const outcome = await controller.streamCompletion(stream(10), async () => {
      // The hold moved no credit: the balance is untouched while the stream runs.
      seenDuringStream = await balance({ org: HOLDS_CO });
      return { cost: "3.5" };
    });
    assert.equal(seenDuringStream, 20);
    assert.equal(outcome.kind, "captured");
    assert.ok(outcome.kind === "captured");
    assert.equal(outcome.pool, "organization");
    assert.equal(outcome.held, 10);
    assert.equal(outcome.charged, 3.5);
    assert.equal(outcome.remaining, 16.5);
    assert.equal(await balance({ org: HOLDS_CO }), 16.5);
  });

  it("a cancelled stream voids its hold: nothing charged, everything available again", async () => {
    const cancelled = new Error("cancelled by the user");
    await assert.rejects(
      controller.streamCompletion(stream(16.5), () => Promise.reject(cancelled)),
      cancelled,
    );
    assert.equal(await balance({ org: HOLDS_CO }), 16.5);
    // The whole pool can be held again: the void released it.
    const again = await controller.streamCompletion(stream(16.5), () => Promise.resolve({ cost: 0 }));
    assert.equal(again.kind, "released");
    assert.ok(again.kind === "released");
    assert.equal(again.released, 16.5);
  });

  it("a hold the pool cannot cover is refused before the stream starts (402)", async () => {
    let started = false;
    const outcome = await controller.streamCompletion(stream(17), () => {
      started = true;
      return Promise.resolve({ cost: 1 });
    });
    assert.equal(started, false);
    assert.equal(outcome.kind, "insufficient_credits");
    assert.match(ui.shown.at(-1)!.text, /Holds Co/);
  });

  it("a cost above the hold is charged at the hold, never more", async () => {
    const outcome = await controller.streamCompletion(stream(2), () => Promise.resolve({ cost: 5 }));
    assert.ok(outcome.kind === "captured");
    assert.equal(outcome.charged, 2);
    assert.equal(await balance({ org: HOLDS_CO }), 14.5);
  });
});
