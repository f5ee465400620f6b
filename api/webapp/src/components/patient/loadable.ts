/**
 * One part of the patient page that is loaded from the API: loading, loaded (with its data) or
 * failed (with its error). Each part has its own stale-response guard: starting a load clears what
 * the part showed and aborts the load before it, and a response that arrives after a newer load
 * started (another patient, another range) is dropped. So a part never shows another patient's data,
 * and a failure is an error, never "no data".
 */
import { type ShallowRef, getCurrentInstance, onBeforeUnmount, shallowRef } from "vue";
import { LatestRequest, STALE, isAbort } from "../../api/client";

export type Loadable<T> =
  | { status: "loading" }
  | { status: "ready"; data: T }
  | { status: "error"; error: unknown };

export interface Loader<T> {
  state: ShallowRef<Loadable<T>>;
  /**
   * Load anew: the part shows "loading" at once, then the answer or the error. With `keep` (the same
   * patient's data fetched again, e.g. after its targets changed) it goes on showing what it has
   * until the answer comes.
   */
  load(work: (signal: AbortSignal) => Promise<T>, options?: { keep?: boolean }): Promise<void>;
  /** Forget what was loaded and drop any answer in flight. */
  reset(): void;
}

export function useLoader<T>(): Loader<T> {
  const state = shallowRef<Loadable<T>>({ status: "loading" });
  const guard = new LatestRequest();

  async function load(work: (signal: AbortSignal) => Promise<T>, options: { keep?: boolean } = {}): Promise<void> {
    if (!options.keep || state.value.status !== "ready") state.value = { status: "loading" };
    try {
      const data = await guard.run(work);
      if (data === STALE) return;
      state.value = { status: "ready", data };
    } catch (error) {
      if (isAbort(error)) return;
      state.value = { status: "error", error };
    }
  }

  function reset(): void {
    guard.cancel();
    state.value = { status: "loading" };
  }

  if (getCurrentInstance()) onBeforeUnmount(() => guard.cancel());
  return { state, load, reset };
}

export function dataOf<T>(loadable: Loadable<T>): T | null {
  return loadable.status === "ready" ? loadable.data : null;
}
