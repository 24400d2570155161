/** What the user reads, and the buttons offered, for each state and refusal. */
import { type OrgScopeDenied } from "./oauth.js";
import { type SessionView } from "./session.js";
import { type UsageOutcome } from "./usage.js";

export type Action = "Switch organization" | "Use personal credits" | "Open dashboard" | "Sign in";

export interface Message {
  severity: "info" | "warning" | "error";
  text: string;
  actions: Action[];
}

/** The status bar: whose credits this session spends. */
export function statusText(view: SessionView | null): { text: string; tooltip: string } {
  if (!view) return { text: "$(account) Softcodes: Sign in", tooltip: "Softcodes: not signed in" };
  if (view.orgLost) {
    return {
      text: `$(warning) Softcodes: ${view.orgLost.clerk_org_id} unavailable`,
      tooltip: "Your organization can no longer be used: choose another, or personal credits",
    };
  }
  const { claims } = view;
  if (claims.pool === "organization") {
    const name = claims.organization_name ?? claims.clerk_org_id ?? "organization";
    return {
      text: `$(organization) ${name} · org pool`,
      tooltip: `Softcodes: usage is charged to ${name}'s pooled credits`,
    };
  }
  return {
    text: "$(account) Personal",
    tooltip: "Softcodes: usage is charged to your personal credits",
  };
}

const REASONS: Record<string, string> = {
  not_a_member: "you are not a member of it",
  no_active_seat: "your seat in it is not active",
  clerk_unavailable: "your membership could not be checked right now",
  org_scope_lost: "your seat or membership is gone",
};

function reason(denied: OrgScopeDenied): string {
  return REASONS[denied.reason] ?? denied.reason;
}

/** After a sign-in or a switch that asked for an org and got personal credits. */
export function deniedMessage(denied: OrgScopeDenied): Message {
  return {
    severity: "warning",
    text: `Organization ${denied.clerk_org_id} was not granted (${reason(denied)}): ` +
      "you are signed in with your personal credits.",
    actions: ["Switch organization", "Open dashboard"],
  };
}

/** L2: the org chosen earlier can no longer be used. Nothing is charged until the user picks. */
export function orgLostMessage(lost: OrgScopeDenied): Message {
  return {
    severity: "warning",
    text: `You can no longer use organization ${lost.clerk_org_id} (${reason(lost)}). ` +
      "Nothing was charged. Choose another organization or your personal credits.",
    actions: ["Switch organization", "Use personal credits", "Open dashboard"],
  };
}

/** A metered call's refusal, worded for the org that refused it. */
export function usageMessage(outcome: UsageOutcome): Message | null {
  switch (outcome.kind) {
    case "charged":
      return null;
    case "insufficient_credits":
      if (outcome.pool === "organization") {
        const name = outcome.orgName ?? outcome.clerkOrgId ?? "Your organization";
        return {
          severity: "error",
          text: `${name} is out of credits. Nothing was charged, and your personal credits ` +
            "are not used instead. Ask an admin to top up, or switch.",
          actions: ["Open dashboard", "Switch organization", "Use personal credits"],
        };
      }
      return {
        severity: "error",
        text: "Your personal credits are used up. Nothing was charged.",
        actions: ["Open dashboard", "Switch organization"],
      };
    case "no_active_seat": {
      const name = outcome.orgName ?? outcome.clerkOrgId ?? "the organization";
      return {
        severity: "error",
        text: `Your seat in ${name} is no longer active. Nothing was charged.`,
        actions: ["Use personal credits", "Switch organization", "Open dashboard"],
      };
    }
    case "forbidden": {
      const name = outcome.orgName ?? outcome.clerkOrgId ?? "Your account";
      const why = outcome.error === "no_active_subscription"
        ? `${name} has no active subscription; an admin has to renew it.`
        : `${name} cannot spend credits now (${outcome.error}).`;
      return {
        severity: "error",
        text: `${why} Nothing was charged.`,
        actions: ["Open dashboard", "Switch organization", "Use personal credits"],
      };
    }
    case "org_scope_lost":
      return orgLostMessage({ clerk_org_id: outcome.clerkOrgId, reason: outcome.reason });
  }
}
