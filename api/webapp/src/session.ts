/**
 * The signed-in user: bearer token and refresh token (sessionStorage: one tab's session), GET /me
 * (roles, clinic, glucose unit), sign-in and sign-out. The access token is short-lived: it is renewed
 * silently (POST /auth/refresh, which also replaces the refresh token) a minute before it runs out,
 * and once more when a request meets a 401; only when that fails does the session end as "expired":
 * the sign-in page says so and, once signed in again, returns to the page the user was on. Fifteen
 * minutes without input sign out ("idle"). Signing out, by hand or idle, also ends the session on
 * the server (POST /auth/logout), so its tokens are refused from then on.
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
export const REFRESH_KEY = "vitalgate.refresh";
const REFRESH_PATH = "/api/v1/auth/refresh";
const LOGOUT_PATH = "/api/v1/auth/logout";
/** Renew this long before the access token runs out. */
const RENEW_BEFORE_MS = 60 * 1000;
export type SignOutReason = "expired" | "idle" | "signed_out";

interface SessionState {
  token: string | null;
  me: Me | null;
  notice: SignOutReason | null;
}

function stored(key: string): string | null {
  try {
    return globalThis.sessionStorage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function storedToken(): string | null {
  return stored(TOKEN_KEY);
}

export const session = reactive<SessionState>({ token: storedToken(), me: null, notice: null });

type Listener = (reason: SignOutReason) => void;
const signOutListeners = new Set<Listener>();

/** Called when the session ends (router: go to sign-in; live events: stop). */
export function onSignOut(listener: Listener): () => void {
  signOutListeners.add(listener);
  return () => signOutListeners.delete(listener);
}

let refreshToken: string | null = stored(REFRESH_KEY);
/** Counts sign-ins and sign-outs: an answer asked for under an earlier count is another session's. */
let sessionEpoch = 0;
let renewTimer: ReturnType<typeof setTimeout> | null = null;

function keep(key: string, value: string | null): void {
  try {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  } catch {
    // No storage: the token lives in memory for this page.
  }
}

function saveToken(token: string | null): void {
  session.token = token;
  keep(TOKEN_KEY, token);
}

interface TokenAnswer {
  access_token: string;
  expires_in: number;
  refresh_token: string;
}

/** Keep a token pair from the API and plan its silent renewal. */
function saveTokens(answer: TokenAnswer): void {
  saveToken(answer.access_token);
  refreshToken = answer.refresh_token;
  keep(REFRESH_KEY, refreshToken);
  if (renewTimer !== null) clearTimeout(renewTimer);
  const inMs = Math.max(5 * 1000, answer.expires_in * 1000 - RENEW_BEFORE_MS);
  renewTimer = setTimeout(() => void renewSession(), inMs);
}

let renewal: Promise<boolean> | null = null;

/** Trade the refresh token for a new pair (one request at a time: a refresh token works once).
 *  Resolves false when the session cannot be renewed (signed out, expired, revoked). */
export function renewSession(): Promise<boolean> {
  if (!renewal) {
    const token = refreshToken;
    renewal = (async () => {
      if (!token) return false;
      try {
        const response = await fetch(REFRESH_PATH, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: token }),
        });
        if (!response.ok) return false;
        saveTokens((await response.json()) as TokenAnswer);
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      renewal = null;
    });
  }
  return renewal;
}

const idle = new IdleWatch(() => endSession("idle"));

export function endSession(reason: SignOutReason): void {
  if (!session.token && reason !== "signed_out") return;
  idle.stop();
  if (renewTimer !== null) clearTimeout(renewTimer);
  renewTimer = null;
  if (reason !== "expired" && (session.token || refreshToken)) {
    // End it on the server too; the page does not wait for the answer.
    void fetch(LOGOUT_PATH, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        ...(session.token ? { Authorization: `Bearer ${session.token}` } : {}),
      },
      body: JSON.stringify(refreshToken ? { refresh_token: refreshToken } : {}),
      keepalive: true,
    }).catch(() => undefined);
  }
  refreshToken = null;
  keep(REFRESH_KEY, null);
  sessionEpoch += 1;
  saveToken(null);
  session.me = null;
  session.notice = reason;
  for (const listener of signOutListeners) listener(reason);
}

configureAuth({ token: () => session.token, renew: renewSession, unauthorized: () => endSession("expired") });

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
  sessionEpoch += 1;
  saveTokens((await response.json()) as TokenAnswer);
  session.notice = null;
  session.me = null;
  idle.start();
}

export function startIdleWatch(): void {
  if (session.token) idle.start();
  // A reloaded page has tokens but no renewal planned: renew now, which plans the next one.
  if (session.token && refreshToken && renewTimer === null) void renewSession();
}

let meRequest: Promise<Me> | null = null;

/** GET /me once per session (again after a failure). */
export function loadMe(): Promise<Me> {
  if (session.me) return Promise.resolve(session.me);
  if (!meRequest) {
    const signedIn = sessionEpoch;
    meRequest = call(api.GET("/api/v1/me"))
      .then((me) => {
        // A renewal changes the token, not the session: only a sign-out or new sign-in makes it stale.
        if (sessionEpoch === signedIn) session.me = me;
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
