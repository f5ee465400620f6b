/**
 * The signed-in user: bearer token (sessionStorage: one tab's session), GET /me (roles, clinic,
 * glucose unit), sign-in and sign-out. A 401 on any request ends the session as "expired": the
 * sign-in page says so and, once signed in again, returns to the page the user was on. Fifteen
 * minutes without input sign out ("idle").
 */
import { reactive } from "vue";
import {
  ApiError,
  SIGN_IN_PATH,
  api,
  apiErrorOf,
  call,
  configureAuth,
  type GlucoseUnit,
  type Me,
  type Role,
} from "./api/client";
import { IdleWatch } from "./idle";

export const TOKEN_KEY = "vitalgate.token";
export type SignOutReason = "expired" | "idle" | "signed_out";

interface SessionState {
  token: string | null;
  me: Me | null;
  notice: SignOutReason | null;
}

function storedToken(): string | null {
  try {
    return globalThis.sessionStorage?.getItem(TOKEN_KEY) ?? null;
  } catch {
    return null;
  }
}

export const session = reactive<SessionState>({ token: storedToken(), me: null, notice: null });

type Listener = (reason: SignOutReason) => void;
const signOutListeners = new Set<Listener>();

/** Called when the session ends (router: go to sign-in; live events: stop). */
export function onSignOut(listener: Listener): () => void {
  signOutListeners.add(listener);
  return () => signOutListeners.delete(listener);
}

function saveToken(token: string | null): void {
  session.token = token;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // No storage: the token lives in memory for this page.
  }
}

const idle = new IdleWatch(() => endSession("idle"));

export function endSession(reason: SignOutReason): void {
  if (!session.token && reason !== "signed_out") return;
  idle.stop();
  saveToken(null);
  session.me = null;
  session.notice = reason;
  for (const listener of signOutListeners) listener(reason);
}

configureAuth({ token: () => session.token, unauthorized: () => endSession("expired") });

/** POST the sign-in form. Throws ApiError with a sign-in code (auth.invalid_credentials, auth.locked,
 *  auth.throttled) or "network". */
export async function signIn(username: string, password: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(SIGN_IN_PATH, {
      method: "POST",
      body: new URLSearchParams({ username, password }),
    });
  } catch {
    throw new ApiError(0, "network");
  }
  if (!response.ok) {
    const error = apiErrorOf(response, await response.json().catch(() => null));
    // A server that sends no code: the sign-in endpoint's statuses (api/routes/auth.py).
    if (error.code === "auth.required") throw new ApiError(401, "auth.invalid_credentials");
    if (error.code === "forbidden") throw new ApiError(403, "auth.locked");
    throw error;
  }
  const body = (await response.json()) as { access_token: string };
  saveToken(body.access_token);
  session.notice = null;
  session.me = null;
  idle.start();
}

export function startIdleWatch(): void {
  if (session.token) idle.start();
}

let meRequest: Promise<Me> | null = null;

/** GET /me once per session (again after a failure). */
export function loadMe(): Promise<Me> {
  if (session.me) return Promise.resolve(session.me);
  if (!meRequest) {
    const token = session.token;
    meRequest = call(api.GET("/api/v1/me"))
      .then((me) => {
        if (session.token === token) session.me = me;
        return me;
      })
      .finally(() => {
        meRequest = null;
      });
  }
  return meRequest;
}

export async function setGlucoseUnitOverride(unit: GlucoseUnit | null): Promise<void> {
  const me = await call(api.PUT("/api/v1/me/preferences", { body: { glucose_unit_override: unit } }));
  session.me = me;
}

export function hasRole(role: Role): boolean {
  return session.me?.roles.includes(role) ?? false;
}

export function glucoseUnit(): GlucoseUnit {
  return session.me?.glucose_unit ?? "mmol/L";
}
