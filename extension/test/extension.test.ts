/**
 * The extension's logic against a real `issuer serve` with the fake Clerk
 * (started and seeded by py/tests/test_extension.py): the sign-in state
 * machine through the real authorization page and the loopback redirect,
 * SecretStorage, refresh before expiry, the status text, the org switch, and
 * 402 / 403 / org_scope_lost turned into messages whose buttons work.
 * Only VS Code's own surface is a stand-in (test/harness.ts).
 *
 * Seeded: Alice (personal 5) with an active seat in Acme Inc (pool 10) and in
 * Initech (pool 100), and a suspended seat in Globex (pool 100).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it, before, after } from "node:test";
import * as oauth from "oauth4webapi";
import { Controller } from "../src/controller.js";
import { IssuerClient, IssuerUrlMismatch } from "../src/oauth.js";
import { statusText } from "../src/messages.js";
import { ReauthRequired, Session, SignInFailed, type Stored } from "../src/session.js";
import { approveDevice, arrange, balance, env, issuerClient, StandIn } from "./harness.js";

const ALICE = env("ALICE");
const ACME = env("ACME");
const GLOBEX = env("GLOBEX");
const INITECH = env("INITECH");

function usage(amount: number | string, key = randomUUID()) {
  return { amount, description: "extension test", idempotencyKey: key };
}

async function stored(ui: StandIn): Promise<Stored> {
  const raw = await ui.secrets.get(Session.SECRET_KEY);
  assert.ok(raw, "no tokens in SecretStorage");
  return JSON.parse(raw) as Stored;
}

describe("the extension against issuer serve", () => {
  const issuer = issuerClient();
  const ui = new StandIn();
  const session = new Session(issuer, ui.secrets);
  const controller = new Controller(session, issuer, ui);

  before(async () => {
    ui.sessionToken = (await arrange<{ token: string }>("session", { user: ALICE })).token;
    await controller.activate();
  });
  after(() => controller.dispose());

  it("starts signed out: the status bar offers to sign in", () => {
    assert.equal(session.state, "signed-out");
    assert.equal(ui.status.text, "$(account) Softcodes: Sign in");
  });

  it("signs in with the org from the settings: browser page, loopback, code + PKCE", async () => {
    ui.preferred = ACME;
    ui.browserChoices.push({ approve: ACME });
    const view = await controller.signIn();
    assert.ok(view);
    assert.equal(session.state, "signed-in");
    // The authorize URL carried clerk_org_id, PKCE S256 and a loopback redirect.
    const url = ui.opened.at(-1)!;
    assert.equal(url.searchParams.get("clerk_org_id"), ACME);
    assert.equal(url.searchParams.get("code_challenge_method"), "S256");
    assert.match(url.searchParams.get("redirect_uri")!, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    // The org comes from the VERIFIED token.
    assert.equal(view.claims.clerk_org_id, ACME);
    assert.equal(view.claims.pool, "organization");
    assert.equal(ui.status.text, "$(organization) Acme Inc · org pool");
    const tokens = await stored(ui);
    assert.equal(tokens.clerkOrgId, ACME);
    assert.ok(tokens.expiresAt > Date.now() + 60_000);
  });

  it("charges the org pool, replays with the same idempotency key, shows the balance", async () => {
    const key = randomUUID();
    const first = await controller.recordUsage(usage(2, key));
    assert.deepEqual(first, {
      kind: "charged",
      pool: "organization",
      remaining: 8,
      replayed: false,
      orgName: "Acme Inc",
    });
    const again = await controller.recordUsage(usage(2, key));
    assert.equal(again.kind === "charged" && again.replayed, true);
    assert.equal(await balance({ org: ACME }), 8);
    ui.answers.push(undefined);
    const text = await controller.showCredits();
    assert.match(text, /Acme Inc's pooled credits\. 8 credits were left/);
  });

  it("refreshes before expiry: the new refresh token replaces the old one, which is dead", async () => {
    const old = await stored(ui);
    await ui.secrets.store(
      Session.SECRET_KEY,
      JSON.stringify({ ...old, expiresAt: Date.now() + 30_000 }),
    );
    const fresh = await session.accessToken();
    assert.notEqual(fresh.refreshToken, old.refreshToken);
    assert.notEqual(fresh.accessToken, old.accessToken);
    assert.equal((await stored(ui)).refreshToken, fresh.refreshToken);
    assert.equal(fresh.clerkOrgId, ACME, "the org is asked for again on refresh");
    // A token far from expiry is used as it is.
    assert.equal((await session.accessToken()).accessToken, fresh.accessToken);
    // The rotated-out token is refused (and its reuse revokes the family, O5): use a
    // separate sign-in's token for that, so as not to end this session.
    assert.ok((await session.msUntilRefresh())! > 60 * 60_000 - 3 * 60_000);
  });

  it("402: the org is out of credits; nothing charged; the message names the org", async () => {
    ui.answers.push(undefined);
    const outcome = await controller.recordUsage(usage(50));
    assert.deepEqual(outcome, {
      kind: "insufficient_credits",
      pool: "organization",
      clerkOrgId: ACME,
      orgName: "Acme Inc",
    });
    const message = ui.lastMessage();
    assert.equal(message.severity, "error");
    assert.match(message.text, /^Acme Inc is out of credits\. Nothing was charged/);
    assert.deepEqual(message.actions, ["Open dashboard", "Switch organization", "Use personal credits"]);
    assert.equal(await balance({ org: ACME }), 8);
    assert.equal(await balance({ user: ALICE }), 5, "personal credits are never used instead");
  });

  it("402 → Open dashboard opens the issuer's dashboard", async () => {
    ui.answers.push("Open dashboard");
    await controller.recordUsage(usage(50));
    assert.equal(ui.opened.at(-1)!.toString(), `${env("ISSUER_URL")}/dashboard/tokens`);
  });

  it("switching org is a new sign-in (R5); one without an active seat, cancelled, keeps the current org", async () => {
    ui.picks.push({ kind: "enter" });
    ui.inputs.push(GLOBEX);
    ui.browserChoices.push({ deny: true }); // the page shows Globex refused; the user cancels
    const view = await controller.switchOrganization();
    assert.equal(view, null);
    assert.equal(ui.opened.at(-1)!.searchParams.get("clerk_org_id"), GLOBEX);
    assert.equal((await session.view())!.claims.clerk_org_id, ACME);
    assert.equal(ui.status.text, "$(organization) Acme Inc · org pool");
    assert.equal((await stored(ui)).orgLost, null);
  });

  it("402 → Switch organization: pick another org, the next charge goes to its pool", async () => {
    ui.answers.push("Switch organization");
    ui.picks.push({ kind: "enter" });
    ui.inputs.push(INITECH);
    ui.browserChoices.push({ approve: INITECH }); // a new sign-in: the page confirms the payer
    await controller.recordUsage(usage(50));
    assert.equal(ui.status.text, "$(organization) Initech · org pool");
    assert.equal((await stored(ui)).clerkOrgId, INITECH);
    const charged = await controller.recordUsage(usage(50));
    assert.equal(charged.kind === "charged" && charged.remaining, 50);
    assert.equal(await balance({ org: INITECH }), 50);
    // Acme is now a known org: the quick pick offers it by name.
    ui.picks.push({ kind: "org", id: ACME });
    ui.browserChoices.push({ approve: ACME });
    await controller.switchOrganization();
    assert.equal(ui.status.text, "$(organization) Acme Inc · org pool");
    ui.picks.push({ kind: "org", id: INITECH });
    ui.browserChoices.push({ approve: INITECH });
    await controller.switchOrganization();
    assert.equal(ui.status.text, "$(organization) Initech · org pool");
  });

  it("403 no_active_seat → Use personal credits: a new sign-in choosing Personal", async () => {
    await arrange("seat", { org: INITECH, user: ALICE, status: "suspended" });
    ui.answers.push("Use personal credits");
    ui.browserChoices.push({ approve: null });
    const outcome = await controller.recordUsage(usage(1));
    assert.deepEqual(outcome, { kind: "no_active_seat", clerkOrgId: INITECH, orgName: "Initech" });
    const shown = ui.shown.at(-1)!;
    assert.match(shown.text, /^Your seat in Initech is no longer active\. Nothing was charged/);
    assert.equal(ui.status.text, "$(account) Personal");
    assert.equal(ui.opened.at(-1)!.searchParams.get("clerk_org_id"), null);
    const charged = await controller.recordUsage(usage(1));
    assert.equal(charged.kind === "charged" && charged.pool, "personal");
    assert.equal(await balance({ user: ALICE }), 4);
    assert.equal(await balance({ org: INITECH }), 50);
    await arrange("seat", { org: INITECH, user: ALICE, status: "active" });
  });

  it("org_scope_lost: a refresh that cannot keep the org never switches the payer silently", async () => {
    ui.browserChoices.push({ approve: ACME });
    await controller.signIn({ clerkOrgId: ACME, viaBrowser: true });
    assert.equal(ui.status.text, "$(organization) Acme Inc · org pool");
    await arrange("seat", { org: ACME, user: ALICE, status: "suspended" });
    ui.answers.push(undefined);
    await controller.refreshNow();
    const lost = ui.lastMessage();
    assert.match(lost.text, new RegExp(`no longer use organization ${ACME}`));
    assert.deepEqual(lost.actions, ["Switch organization", "Use personal credits", "Open dashboard"]);
    assert.match(ui.status.text, /unavailable$/);
    // Nothing is sent while the user has not chosen.
    const personalBefore = await balance({ user: ALICE });
    ui.answers.push(undefined);
    const refused = await controller.recordUsage(usage(1));
    assert.equal(refused.kind, "org_scope_lost");
    assert.equal(await balance({ user: ALICE }), personalBefore);
    assert.equal(await balance({ org: ACME }), 8);
    // The user chooses personal credits: now (and only now) usage is charged to them.
    ui.answers.push("Use personal credits");
    ui.browserChoices.push({ approve: null }); // used only if the token is not personal yet
    await controller.recordUsage(usage(1));
    assert.equal(ui.status.text, "$(account) Personal");
    const charged = await controller.recordUsage(usage(1));
    assert.equal(charged.kind === "charged" && charged.pool, "personal");
    assert.equal(await balance({ user: ALICE }), personalBefore - 1);
    ui.browserChoices.length = 0;
    await arrange("seat", { org: ACME, user: ALICE, status: "active" });
  });

  it("Deny on the page: the sign-in is cancelled, the previous session stays", async () => {
    const before = await stored(ui);
    ui.browserChoices.push({ deny: true });
    const view = await controller.signIn({ clerkOrgId: ACME, viaBrowser: true });
    assert.equal(view, null);
    assert.equal(ui.lastMessage().text, "Sign-in was cancelled.");
    assert.equal(session.state, "signed-in");
    assert.equal((await stored(ui)).refreshToken, before.refreshToken);
  });

  it("a forged redirect (wrong state, or another server's iss) is refused; the session stays", async () => {
    const before = await stored(ui);
    const issuerId = new URL(env("ISSUER_URL")).origin;
    for (const forge of [
      () => ({ code: "forged", state: "not-the-state", iss: issuerId }),
      (authorize: URL) => ({ code: "forged", state: authorize.searchParams.get("state")!, iss: "https://evil.example" }),
    ]) {
      ui.browserChoices.push({ forge });
      await assert.rejects(controller.signIn({ clerkOrgId: ACME, viaBrowser: true }), (error) => {
        assert.ok(error instanceof SignInFailed);
        assert.equal(error.error, "invalid_callback");
        return true;
      });
      assert.equal(session.state, "signed-in");
      assert.equal((await stored(ui)).refreshToken, before.refreshToken);
    }
  });

  it("sign out revokes the refresh token (RFC 7009) and clears SecretStorage", async () => {
    const before = await stored(ui);
    await controller.signOut();
    assert.equal(session.state, "signed-out");
    assert.equal(await ui.secrets.get(Session.SECRET_KEY), undefined);
    assert.equal(ui.status.text, "$(account) Softcodes: Sign in");
    await assert.rejects(issuer.refresh(before.refreshToken), (error) => {
      assert.ok(error instanceof oauth.ResponseBodyError);
      assert.equal(error.error, "invalid_grant");
      return true;
    });
  });

  it("a session ended elsewhere: the refresh is refused, the user is asked to sign in", async () => {
    ui.browserChoices.push({ approve: ACME });
    await controller.signIn({ clerkOrgId: ACME });
    const tokens = await stored(ui);
    await issuer.revoke(tokens.refreshToken); // e.g. signed out in another window
    await ui.secrets.store(Session.SECRET_KEY, JSON.stringify({ ...tokens, expiresAt: 0 }));
    ui.answers.push(undefined);
    await assert.rejects(controller.recordUsage(usage(1)), ReauthRequired);
    assert.equal(ui.lastMessage().text, "Your Softcodes session ended. Sign in again.");
    assert.equal(session.state, "signed-out");
    assert.equal(ui.status.text, "$(account) Softcodes: Sign in");
  });

  it("in a remote window: the device grant (RFC 8628), the code approved on the issuer's page", async () => {
    ui.remote = true;
    ui.onDeviceCode = async (device) => {
      assert.match(device.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
      await approveDevice(device.verificationUriComplete!, ui.sessionToken, { approve: ACME });
    };
    const opened = ui.opened.length;
    const view = await controller.signIn({ clerkOrgId: ACME });
    ui.remote = false;
    assert.ok(view);
    assert.equal(ui.opened.length, opened, "no browser redirect was used");
    assert.equal(ui.deviceCodes.length, 1);
    assert.equal(view.claims.clerk_org_id, ACME);
    assert.equal(session.state, "signed-in");
    assert.equal(ui.status.text, "$(organization) Acme Inc · org pool");
    await controller.signOut();
  });

  it("R1: configured as localhost while the issuer is 127.0.0.1: the error names the URL to use", async () => {
    const served = new URL(env("ISSUER_URL"));
    assert.equal(served.hostname, "127.0.0.1");
    const localhost = new URL(served.href);
    localhost.hostname = "localhost";
    const misnamed = new IssuerClient({ ...issuer.config, issuerUrl: localhost.href });
    await assert.rejects(misnamed.metadata(), (error: unknown) => {
      assert.ok(error instanceof IssuerUrlMismatch, String(error));
      const want = served.href.replace(/\/$/, "");
      assert.equal(error.served, want);
      assert.ok(error.message.includes(`set softcodes.issuerUrl to ${want}`), error.message);
      assert.match(error.message, /ISSUER_URL/);
      return true;
    });
  });

  it("the status text: org name and pool, or Personal", () => {
    assert.equal(statusText(null).text, "$(account) Softcodes: Sign in");
  });
});
