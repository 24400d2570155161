/** VS Code's side: commands, status bar, settings, SecretStorage, URI handler. */
import * as vscode from "vscode";
import { Controller, type PickItem, type Ui } from "./controller.js";
import { loopbackRedirect, type Redirect } from "./loopback.js";
import { type Action, type Message } from "./messages.js";
import { DEFAULTS, IssuerClient } from "./oauth.js";
import { ReauthRequired, Session, SignInFailed } from "./session.js";

const EXTENSION_ID = "softcodes.softcodes-vscode";

function settings() {
  const config = vscode.workspace.getConfiguration("softcodes");
  return {
    issuerUrl: config.get<string>("issuerUrl", "https://issuer.softcodes.ai"),
    clientId: config.get<string>("clientId", DEFAULTS.clientId),
    organization: config.get<string>("organization", "").trim() || null,
    redirect: config.get<string>("redirect", "auto"),
  };
}

/** The `vscode://…/auth-callback` redirect: the next matching URI the handler receives. */
class UriHandlerRedirects implements vscode.UriHandler {
  #waiting: ((uri: URL) => void) | null = null;

  handleUri(uri: vscode.Uri): void {
    if (uri.path === "/auth-callback" && this.#waiting) this.#waiting(new URL(uri.toString(true)));
  }

  redirect(): Redirect {
    const callback = new Promise<URL>((resolve) => {
      this.#waiting = resolve;
    });
    return {
      redirectUri: `${vscode.env.uriScheme}://${EXTENSION_ID}/auth-callback`,
      callback,
      dispose: () => {
        this.#waiting = null;
      },
    };
  }
}

function isRemote(): boolean {
  return vscode.env.remoteName !== undefined || vscode.env.uiKind === vscode.UIKind.Web;
}

export function activate(context: vscode.ExtensionContext): void {
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 100);
  status.command = "softcodes.switchOrganization";
  status.name = "Softcodes";
  status.show();
  const uriHandler = new UriHandlerRedirects();
  context.subscriptions.push(status, vscode.window.registerUriHandler(uriHandler));

  const ui: Ui = {
    async show(message: Message) {
      const show = message.severity === "error"
        ? vscode.window.showErrorMessage
        : message.severity === "warning"
        ? vscode.window.showWarningMessage
        : vscode.window.showInformationMessage;
      return show<Action>(message.text, ...message.actions);
    },
    openExternal: (url) => vscode.env.openExternal(vscode.Uri.parse(url.toString(), true)),
    async pick<T>(items: PickItem<T>[], placeholder: string) {
      const picked = await vscode.window.showQuickPick(
        items.map((item) => ({ label: item.label, description: item.description, item })),
        { placeHolder: placeholder },
      );
      return picked?.item.value;
    },
    input: (prompt, placeholder) =>
      vscode.window.showInputBox({ prompt, placeHolder: placeholder, ignoreFocusOut: true }),
    setStatus(text, tooltip) {
      status.text = text;
      status.tooltip = tooltip;
    },
    async redirect() {
      const mode = settings().redirect;
      const uriHandler_ = mode === "uri-handler" ||
        (mode === "auto" && vscode.env.remoteName !== undefined &&
          vscode.env.uiKind === vscode.UIKind.Desktop);
      return uriHandler_ ? uriHandler.redirect() : loopbackRedirect();
    },
    isRemote: () => {
      const mode = settings().redirect;
      return mode === "device" || (mode === "auto" && isRemote());
    },
    showDeviceCode(device) {
      const open = "Open the sign-in page";
      const url = device.verificationUriComplete ?? device.verificationUri;
      void vscode.window
        .showInformationMessage(
          `Softcodes sign-in: open ${device.verificationUri} and enter the code ${device.userCode}.`,
          open,
        )
        .then((choice) => {
          if (choice === open) void vscode.env.openExternal(vscode.Uri.parse(url, true));
        });
      return Promise.resolve();
    },
    preferredOrganization: () => settings().organization,
    memento: context.globalState,
  };

  let controller: Controller | null = null;
  const build = (): Controller => {
    controller?.dispose();
    const { issuerUrl, clientId } = settings();
    const issuer = new IssuerClient({ ...DEFAULTS, issuerUrl, clientId });
    controller = new Controller(new Session(issuer, context.secrets), issuer, ui);
    void controller.activate();
    return controller;
  };
  let current = build();

  const run = (work: (c: Controller) => Promise<unknown>) => async () => {
    try {
      await work(current);
    } catch (error) {
      if (error instanceof ReauthRequired) return; // the controller has said so
      const text = error instanceof SignInFailed
        ? `Softcodes sign-in failed: ${error.error}`
        : `Softcodes: ${error instanceof Error ? error.message : String(error)}`;
      void vscode.window.showErrorMessage(text);
    }
  };
  context.subscriptions.push(
    vscode.commands.registerCommand("softcodes.signIn", run((c) => c.signIn())),
    vscode.commands.registerCommand("softcodes.signOut", run((c) => c.signOut())),
    vscode.commands.registerCommand(
      "softcodes.switchOrganization",
      run((c) => c.switchOrganization()),
    ),
    vscode.commands.registerCommand("softcodes.showCredits", run((c) => c.showCredits())),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("softcodes.issuerUrl") ||
        event.affectsConfiguration("softcodes.clientId")) {
        current = build();
      }
    }),
    { dispose: () => controller?.dispose() },
  );
}

export function deactivate(): void {}
