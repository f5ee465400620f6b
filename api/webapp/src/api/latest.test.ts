import { describe, expect, it } from "vitest";
import { LatestRequest, STALE } from "./latest";

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("LatestRequest: a response that arrives after the user moved on is dropped", () => {
  it("drops the first patient's answer when it arrives after the second patient's", async () => {
    const guard = new LatestRequest();
    const first = deferred<string>();
    const second = deferred<string>();
    const a = guard.run(() => first.promise);
    const b = guard.run(() => second.promise);
    second.resolve("patient B");
    first.resolve("patient A");
    expect(await b).toBe("patient B");
    expect(await a).toBe(STALE);
  });

  it("aborts the request it replaces", () => {
    const guard = new LatestRequest();
    const first = guard.begin();
    const second = guard.begin();
    expect(first.signal.aborted).toBe(true);
    expect(first.isCurrent()).toBe(false);
    expect(second.signal.aborted).toBe(false);
    expect(second.isCurrent()).toBe(true);
  });

  it("drops an error of a replaced request instead of showing it for the new one", async () => {
    const guard = new LatestRequest();
    const first = deferred<string>();
    const a = guard.run(() => first.promise);
    const b = guard.run(async () => "fresh");
    first.reject(new Error("old failure"));
    expect(await a).toBe(STALE);
    expect(await b).toBe("fresh");
  });

  it("throws the error of the current request, so the view can say it failed", async () => {
    const guard = new LatestRequest();
    await expect(guard.run(async () => Promise.reject(new Error("down")))).rejects.toThrow("down");
  });

  it("drops everything in flight once the view is left", async () => {
    const guard = new LatestRequest();
    const pending = deferred<string>();
    const a = guard.run(() => pending.promise);
    guard.cancel();
    pending.resolve("late");
    expect(await a).toBe(STALE);
  });
});
