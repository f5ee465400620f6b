import { describe, expect, it } from "vitest";
import { IDLE_LIMIT_MS, IdleWatch } from "./idle";

describe("idle sign-out after 15 minutes without input", () => {
  it("signs out once the limit has passed since the last input, not before", () => {
    let now = 0;
    let signedOut = 0;
    const watch = new IdleWatch(() => signedOut++, IDLE_LIMIT_MS, () => now, null);
    watch.start();
    now = IDLE_LIMIT_MS - 1;
    expect(watch.check()).toBe(false);
    watch.touch();
    now += IDLE_LIMIT_MS - 1;
    expect(watch.check()).toBe(false);
    now += 1;
    expect(watch.check()).toBe(true);
    expect(signedOut).toBe(1);
    expect(IDLE_LIMIT_MS).toBe(15 * 60 * 1000);
  });
});
