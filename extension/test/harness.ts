/**
 * What the logic tests share: the settings py/tests/test_extension.py passes
 * (a real `issuer serve` with the fake Clerk), a stand-in for the few things
 * VS Code itself provides (messages, quick picks, the status bar, SecretStorage,
 * globalState, openExternal), and a "browser" that uses the real
 * /vscode/authorize page the way a user does.
 */
import assert from "node:assert/strict";
import { type Redirect, loopbackRedirect } from "../src/loopback.js";
import { type Memento, type PickItem, type Ui } from "../src/controller.js";
import { type Action, type Message } from "../src/messages.js";
import { DEFAULTS, type DeviceAuthorization, IssuerClient } from "../src/oauth.js";
import { type SecretStore } from "../src/session.js";

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run py/tests/test_extension.py`);
  return value;
}

export function issuerClient(): IssuerClient {
  return new IssuerClient({
    ...DEFAULTS,
    issuerUrl: env("ISSUER_URL"),
    clientId: env("CLIENT_ID"),
    tokenIssuer: env("JWT_ISSUER"),
    audience: env("JWT_AUDIENCE"),
  });
}

/** The pytest side's helpers: change a seat, read a balance, get a Clerk session. */
export async function arrange<T = Record<string, unknown>>(
  what: string,
  body: Record<string, unknown>,
): Promise<T> {
  const response = await fetch(`${env("ARRANGE_URL")}/${what}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as T;
}

export async function balance(who: { org?: string; user?: string }): Promise<number> {
  return Number((await arrange<{ balance: string }>("balance", who)).balance);
}

export class MemorySecrets implements SecretStore {
  readonly values = new Map<string, string>();
  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.values.get(key));
  }
  store(key: string, value: string): Promise<void> {
    this.values.set(key, value);
    return Promise.resolve();
  }
  delete(key: string): Promise<void> {
    this.values.delete(key);
    return Promise.resolve();
  }
}

class MemoryMemento implements Memento {
  readonly values = new Map<string, unknown>();
  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }
  update(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
    return Promise.resolve();
  }
}

/** What the user does in the browser with the authorize page. */
export type BrowserChoice =
  | { approve: string | null } // an org id, or null for "Personal"
  | { deny: true };

/** Something else on this machine calls the loopback redirect with these parameters. */
export type ForgedCallback = { forge: (authorize: URL) => Record<string, string> };

function attributes(tag: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const m of tag.matchAll(/([a-z_-]+)(?:="([^"]*)")?/g)) {
    if (m[1]) found[m[1]] = (m[2] ?? "").replace(/&amp;/g, "&").replace(/&#34;|&quot;/g, '"');
  }
  return found;
}

/**
 * The browser on one of the issuer's pages (/vscode/authorize, /vscode/device):
 * open it with the user's Clerk session cookie, read its form (hidden fields,
 * the code field, the org radios), submit Approve with the chosen org or Deny.
 * Answers the POST's response (not followed).
 */
async function submitPage(url: URL, sessionToken: string, choice: BrowserChoice): Promise<Response> {
  const cookie = `__session=${sessionToken}`;
  const page = await fetch(url, { headers: { cookie } });
  const html = await page.text();
  assert.equal(page.status, 200, html);
  const form = new URLSearchParams();
  for (const tag of html.match(/<input[^>]*>/g) ?? []) {
    const a = attributes(tag);
    if ((a["type"] === "hidden" || a["type"] === "text") && a["name"]) {
      form.set(a["name"], a["value"] ?? "");
    }
  }
  const radios = (html.match(/<input[^>]*type="radio"[^>]*>/g) ?? []).map(attributes);
  if ("deny" in choice) {
    form.set("decision", "deny");
  } else {
    const wanted = choice.approve ?? "";
    const radio = radios.find((r) => r["value"] === wanted);
    assert.ok(radio, `the page offers no choice ${wanted}: ${JSON.stringify(radios)}`);
    assert.ok(!("disabled" in radio), `the page shows ${wanted} disabled`);
    form.set("clerk_org_id", wanted);
    form.set("decision", "approve");
  }
  const action = new URL(/<form method="post" action="([^"]*)"/.exec(html)?.[1] ?? "", url);
  return fetch(action, {
    method: "POST",
    headers: { cookie, "Content-Type": "application/x-www-form-urlencoded" },
    body: form,
    redirect: "manual",
  });
}

/** The authorization page: submit, then follow the 303 to the redirect URI (the loopback). */
export async function browse(url: URL, sessionToken: string, choice: BrowserChoice): Promise<URL> {
  const posted = await submitPage(url, sessionToken, choice);
  assert.equal(posted.status, 303, await posted.text());
  const location = new URL(posted.headers.get("location") ?? "");
  const landed = await fetch(location); // the loopback listener answers "close this tab"
  assert.equal(landed.status, 200);
  await landed.text();
  return location;
}

/** The device page (RFC 8628 verification_uri_complete): the code is filled in; submit. */
export async function approveDevice(
  url: string,
  sessionToken: string,
  choice: BrowserChoice,
): Promise<string> {
  const posted = await submitPage(new URL(url), sessionToken, choice);
  const html = await posted.text();
  assert.equal(posted.status, 200, html);
  return html;
}

/** VS Code, as far as the controller needs it; every message and answer is recorded. */
export class StandIn implements Ui {
  readonly secrets = new MemorySecrets();
  readonly memento = new MemoryMemento();
  readonly shown: Message[] = [];
  readonly opened: URL[] = [];
  readonly answers: (Action | undefined)[] = [];
  readonly picks: unknown[] = [];
  readonly inputs: string[] = [];
  readonly browserChoices: (BrowserChoice | ForgedCallback)[] = [];
  readonly deviceCodes: DeviceAuthorization[] = [];
  status = { text: "", tooltip: "" };
  remote = false;
  preferred: string | null = null;
  sessionToken = "";
  /** What the user does when a device code is shown (a browser elsewhere). */
  onDeviceCode: (device: DeviceAuthorization) => Promise<void> = () => Promise.resolve();

  show(message: Message): Promise<Action | undefined> {
    this.shown.push(message);
    const answer = this.answers.shift();
    if (answer !== undefined) assert.ok(message.actions.includes(answer), `no ${answer} button`);
    return Promise.resolve(answer);
  }

  async openExternal(url: URL): Promise<boolean> {
    this.opened.push(url);
    if (url.pathname === "/vscode/authorize") {
      const choice = this.browserChoices.shift();
      assert.ok(choice, "the authorization page was opened, no browser choice was queued");
      if ("forge" in choice) {
        const callback = new URL(url.searchParams.get("redirect_uri")!);
        for (const [k, v] of Object.entries(choice.forge(url))) callback.searchParams.set(k, v);
        await (await fetch(callback)).text();
      } else {
        await browse(url, this.sessionToken, choice);
      }
    }
    return true;
  }

  pick<T>(items: PickItem<T>[]): Promise<T | undefined> {
    const wanted = this.picks.shift();
    const item = items.find((i) => JSON.stringify(i.value) === JSON.stringify(wanted));
    assert.ok(wanted === undefined || item, `no pick ${JSON.stringify(wanted)}`);
    return Promise.resolve(item?.value);
  }

  input(): Promise<string | undefined> {
    return Promise.resolve(this.inputs.shift());
  }

  setStatus(text: string, tooltip: string): void {
    this.status = { text, tooltip };
  }

  redirect(): Promise<Redirect> {
    return loopbackRedirect();
  }

  isRemote(): boolean {
    return this.remote;
  }

  async showDeviceCode(device: DeviceAuthorization): Promise<void> {
    this.deviceCodes.push(device);
    await this.onDeviceCode(device);
  }

  preferredOrganization(): string | null {
    return this.preferred;
  }

  lastMessage(): Message {
    const last = this.shown.at(-1);
    assert.ok(last, "no message was shown");
    return last;
  }
}
