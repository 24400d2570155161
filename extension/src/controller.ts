/**
 * The extension's behaviour, with VS Code itself behind the small `Ui`
 * interface (extension.ts implements it with the `vscode` API; the tests with
 * a stand-in): the commands, the status bar, the refresh timer, and what each
 * message's buttons do.
 */
import { type DeviceAuthorization, type IssuerClient } from "./oauth.js";
import { type Redirect } from "./loopback.js";
import {
  type Action,
  deniedMessage,
  type Message,
  orgLostMessage,
  statusText,
  usageMessage,
} from "./messages.js";
import { ReauthRequired, type Session, type SessionView, SignInFailed } from "./session.js";
import { type HoldOutcome, type StreamEnd, type StreamRequest, withHold } from "./holds.js";
import { recordUsage, type UsageOutcome, type UsageRequest } from "./usage.js";

export interface PickItem<T> {
  label: string;
  description?: string;
  value: T;
}

export interface Memento {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): PromiseLike<void>;
}

export interface Ui {
  show(message: Message): PromiseLike<Action | undefined>;
  openExternal(url: URL): PromiseLike<boolean>;
  pick<T>(items: PickItem<T>[], placeholder: string): PromiseLike<T | undefined>;
  input(prompt: string, placeholder: string): PromiseLike<string | undefined>;
  setStatus(text: string, tooltip: string): void;
  /** Where the browser comes back to: the URI handler or a loopback listener. */
  redirect(): Promise<Redirect>;
  /** A remote window (SSH, Codespaces...): the device grant is offered there. */
  isRemote(): boolean;
  /** Show the device grant's user code while the user approves in a browser. */
  showDeviceCode(device: DeviceAuthorization): PromiseLike<void>;
  /** The org picked in settings (`softcodes.organization`), or null. */
  preferredOrganization(): string | null;
  memento: Memento;
}

interface KnownOrg {
  id: string;
  name: string | null;
}

type Choice = { kind: "org"; id: string } | { kind: "personal" } | { kind: "browser" } | {
  kind: "enter";
};

const KNOWN_ORGS = "softcodes.knownOrganizations";
const SIGN_IN_TIMEOUT_MS = 10 * 60_000; // an authorization code lives at most 600 s

export class Controller {
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastRemaining: { pool: string; remaining: number } | null = null;
  #disposed = false;

  constructor(
    readonly session: Session,
    readonly issuer: IssuerClient,
    readonly ui: Ui,
  ) {
    session.onDidChange(() => void this.updateStatus());
  }

  async activate(): Promise<void> {
    await this.session.restore();
    await this.updateStatus();
    await this.#schedule();
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /** The status bar item: the org's name and pool, or "Personal". */
  async updateStatus(): Promise<SessionView | null> {
    const view = await this.session.view().catch(() => null);
    const { text, tooltip } = statusText(view);
    this.ui.setStatus(text, tooltip);
    if (view?.claims.clerk_org_id) {
      await this.#remember({ id: view.claims.clerk_org_id, name: view.claims.organization_name });
    }
    return view;
  }

  async #remember(org: KnownOrg): Promise<void> {
    const known = this.ui.memento.get<KnownOrg[]>(KNOWN_ORGS) ?? [];
    if (known.some((k) => k.id === org.id && k.name === org.name)) return;
    await this.ui.memento.update(KNOWN_ORGS, [...known.filter((k) => k.id !== org.id), org]);
  }

  /** Refresh a minute before the access token expires (and again after each refresh). */
  async #schedule(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const due = await this.session.msUntilRefresh();
    if (due === null || this.#disposed) return;
    this.#timer = setTimeout(() => void this.refreshNow(), due);
    this.#timer.unref?.();
  }

  /** The timer's work: rotate, then say what changed (a lost org, a forced sign-in). */
  async refreshNow(): Promise<void> {
    try {
      const stored = await this.session.refresh();
      await this.updateStatus();
      if (stored.orgLost) await this.#handle(orgLostMessage(stored.orgLost));
    } catch (error) {
      if (error instanceof ReauthRequired) {
        await this.updateStatus();
        await this.#handle({
          severity: "warning",
          text: "Your Softcodes session ended (signed out elsewhere, or expired). Sign in again.",
          actions: ["Sign in"],
        });
      }
      // 503 / network: keep the tokens; the next call retries.
    }
    await this.#schedule();
  }

  /** Sign in: the browser (authorization code + PKCE), or the device grant in a remote window. */
  async signIn(options: { clerkOrgId?: string | null; viaBrowser?: boolean } = {}): Promise<SessionView | null> {
    const clerkOrgId = options.clerkOrgId === undefined
      ? this.ui.preferredOrganization()
      : options.clerkOrgId;
    let view: SessionView;
    if (!options.viaBrowser && this.ui.isRemote() && (await this.issuer.supportsDeviceGrant())) {
      view = await this.#deviceSignIn(clerkOrgId);
    } else {
      const done = await this.#browserSignIn(clerkOrgId);
      if (!done) return null;
      view = done;
    }
    if (view.orgScopeDenied) await this.#handle(deniedMessage(view.orgScopeDenied));
    await this.updateStatus();
    await this.#schedule();
    return view;
  }

  async #browserSignIn(clerkOrgId: string | null): Promise<SessionView | null> {
    const redirect = await this.ui.redirect();
    try {
      const url = await this.session.beginSignIn(redirect.redirectUri, clerkOrgId);
      if (!(await this.ui.openExternal(url))) {
        await this.session.cancelSignIn();
        return null;
      }
      let timeout: ReturnType<typeof setTimeout> | undefined;
      const expired = new Promise<never>((_, reject) => {
        timeout = setTimeout(() => reject(new SignInFailed("timeout")), SIGN_IN_TIMEOUT_MS);
        timeout.unref?.();
      });
      try {
        const callback = await Promise.race([redirect.callback, expired]);
        try {
          return await this.session.completeSignIn(callback);
        } catch (error) {
          if (error instanceof SignInFailed && error.error === "access_denied") {
            await this.ui.show({ severity: "info", text: "Sign-in was cancelled.", actions: [] });
            return null;
          }
          throw error; // a wrong state or iss, a refused code: this sign-in is over
        }
      } finally {
        clearTimeout(timeout);
      }
    } catch (error) {
      await this.session.cancelSignIn();
      throw error;
    } finally {
      redirect.dispose();
    }
  }

  async #deviceSignIn(clerkOrgId: string | null): Promise<SessionView> {
    const device = await this.issuer.deviceAuthorization(clerkOrgId);
    await this.ui.showDeviceCode(device);
    const tokens = await this.issuer.pollDevice(device, {
      signal: AbortSignal.timeout(device.expiresIn * 1000),
    });
    return this.session.completeDeviceSignIn(tokens, clerkOrgId);
  }

  async signOut(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#lastRemaining = null;
    await this.session.signOut();
    await this.updateStatus();
  }

  /** Switch organization: a known org (refresh grant), personal credits, or the browser's picker. */
  async switchOrganization(): Promise<SessionView | null> {
    if (this.session.state !== "signed-in") return this.signIn();
    const current = await this.session.view().catch(() => null);
    const known = this.ui.memento.get<KnownOrg[]>(KNOWN_ORGS) ?? [];
    const items: PickItem<Choice>[] = [
      ...known.map((org): PickItem<Choice> => ({
        label: org.name ?? org.id,
        description: org.id === current?.claims.clerk_org_id ? "current" : org.id,
        value: { kind: "org", id: org.id },
      })),
      {
        label: "Personal credits",
        description: current?.claims.pool === "personal" ? "current" : "",
        value: { kind: "personal" },
      },
      { label: "Choose in the browser…", value: { kind: "browser" } },
      { label: "Enter an organization id…", value: { kind: "enter" } },
    ];
    const choice = await this.ui.pick(items, "Whose credits should Softcodes use?");
    if (!choice) return null;
    switch (choice.kind) {
      case "personal":
        return this.usePersonalCredits();
      case "browser":
        return this.signIn({ clerkOrgId: null, viaBrowser: true });
      case "enter": {
        const id = await this.ui.input("Clerk organization id", "org_…");
        return id ? this.switchTo(id.trim()) : null;
      }
      case "org":
        return this.switchTo(choice.id);
    }
  }

  /**
   * Another payer is a new sign-in with that org preselected: a refresh never
   * switches who pays (R5). The user confirms (or picks otherwise) on the page.
   */
  async switchTo(clerkOrgId: string): Promise<SessionView | null> {
    this.#lastRemaining = null;
    return this.signIn({ clerkOrgId });
  }

  /** Personal credits: a personal token already held is enough; an org token needs a sign-in. */
  async usePersonalCredits(): Promise<SessionView | null> {
    if (await this.session.usePersonalCredits()) {
      this.#lastRemaining = null;
      return this.updateStatus();
    }
    return this.signIn({ clerkOrgId: null, viaBrowser: true });
  }

  /** Show credits: whose credits, and the balance the last charge left. */
  async showCredits(): Promise<string> {
    const view = await this.updateStatus();
    let text: string;
    if (!view) text = "Not signed in to Softcodes.";
    else if (view.orgLost) text = orgLostMessage(view.orgLost).text;
    else {
      const who = view.claims.pool === "organization"
        ? `${view.claims.organization_name ?? view.claims.clerk_org_id}'s pooled credits`
        : "your personal credits";
      const left = this.#lastRemaining
        ? ` ${this.#lastRemaining.remaining} credits were left after the last charge.`
        : "";
      text = `Usage is charged to ${who}.${left}`;
    }
    await this.#handle({ severity: "info", text, actions: view ? ["Open dashboard"] : ["Sign in"] });
    return text;
  }

  /** A metered call, with the refusal turned into a message and its buttons acted on. */
  async recordUsage(request: UsageRequest): Promise<UsageOutcome> {
    let outcome: UsageOutcome;
    try {
      outcome = await recordUsage(this.session, request);
    } catch (error) {
      if (error instanceof ReauthRequired) {
        await this.updateStatus();
        await this.#handle({
          severity: "warning",
          text: "Your Softcodes session ended. Sign in again.",
          actions: ["Sign in"],
        });
      }
      throw error;
    }
    if (outcome.kind === "charged") {
      this.#lastRemaining = { pool: outcome.pool, remaining: outcome.remaining };
    }
    const message = usageMessage(outcome);
    if (message) await this.#handle(message);
    await this.updateStatus();
    return outcome;
  }

  /**
   * A streamed completion inside a hold (H1): the most it may cost is reserved
   * first, its real cost captured after, the hold voided when `work` throws.
   * A refused hold becomes the same message as a refused charge.
   */
  async streamCompletion(request: StreamRequest, work: () => Promise<StreamEnd>): Promise<HoldOutcome> {
    let outcome: HoldOutcome;
    try {
      outcome = await withHold(this.session, request, work);
    } catch (error) {
      if (error instanceof ReauthRequired) {
        await this.updateStatus();
        await this.#handle({
          severity: "warning",
          text: "Your Softcodes session ended. Sign in again.",
          actions: ["Sign in"],
        });
      }
      throw error;
    }
    if (outcome.kind === "captured") {
      this.#lastRemaining = { pool: outcome.pool, remaining: outcome.remaining };
    } else if (outcome.kind !== "released") {
      const message = usageMessage(outcome);
      if (message) await this.#handle(message);
    }
    await this.updateStatus();
    return outcome;
  }

  async #handle(message: Message): Promise<void> {
    const action = await this.ui.show(message);
    switch (action) {
      case "Switch organization":
        await this.switchOrganization();
        break;
      case "Use personal credits":
        await this.usePersonalCredits();
        break;
      case "Open dashboard":
        await this.ui.openExternal(new URL("/dashboard/tokens", this.issuer.config.issuerUrl));
        break;
      case "Sign in":
        await this.signIn();
        break;
      case undefined:
        break;
    }
  }
}
