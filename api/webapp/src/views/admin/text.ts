/**
 * What every administration form shares: the wording of the API's `admin.*` error codes (locales/
 * admin.*.ts, "errors"), falling back to the app's wording of every other code (errors.ts); and an
 * action runner that keeps a form's busy state, its error and the field at fault, so the field is
 * marked (aria-invalid) and described by the message.
 */
import { reactive } from "vue";
import { ApiError } from "../../api/client";
import { useDisplay } from "../../composables/useDisplay";
import adminEn from "../../locales/admin.en";

function worded(code: string): boolean {
  const key = code.slice("admin.".length);
  return code.startsWith("admin.") && typeof (adminEn.errors as Record<string, unknown>)[key] === "string";
}

export interface FormState {
  busy: boolean;
  error: string | null;
  field: string | null;
  done: string | null;
}

export function useAdminText() {
  const display = useDisplay();
  const { t } = display;

  /** The error in the user's language: an administration code's own words, else the app's. */
  function errorOf(error: unknown): string {
    if (error instanceof ApiError && worded(error.code)) {
      return t(`admin.errors.${error.code.slice("admin.".length)}`);
    }
    return display.errorMessage(error);
  }

  /** A form's state and `run(action, done?)`: busy while it runs, then the done message or the error. */
  function form() {
    const state = reactive<FormState>({ busy: false, error: null, field: null, done: null });
    async function run<T>(action: () => Promise<T>, done?: (result: T) => string | null): Promise<T | null> {
      if (state.busy) return null;
      state.busy = true;
      state.error = null;
      state.field = null;
      state.done = null;
      try {
        const result = await action();
        state.done = done ? done(result) : null;
        return result;
      } catch (error) {
        state.error = errorOf(error);
        state.field = error instanceof ApiError ? (error.field ?? error.errors[0]?.field ?? null) : null;
        return null;
      } finally {
        state.busy = false;
      }
    }
    /** Attributes of an input the API may name as the field at fault: marked invalid and described
     * by the error while it is, else by its hint (if it has one). */
    function fieldAttrs(field: string, errorId: string, hintId?: string) {
      const invalid = state.field === field;
      return {
        "aria-invalid": invalid ? ("true" as const) : undefined,
        "aria-describedby": invalid ? errorId : hintId,
      };
    }
    return { state, run, fieldAttrs };
  }

  return { ...display, errorOf, form };
}

/** A time typed in a datetime-local input (the browser's zone) as ISO 8601 with its offset. */
export function localInputToIso(value: string): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** IANA time zones the browser knows, for the time zone field's suggestions. */
export function knownTimeZones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  try {
    return intl.supportedValuesOf?.("timeZone") ?? [];
  } catch {
    return [];
  }
}
