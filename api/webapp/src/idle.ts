/**
 * Idle sign-out: after IDLE_LIMIT_MS without input (keys, pointer, wheel, touch) the session ends.
 * The check runs on an interval against the time of the last input, so a laptop that slept past the
 * limit signs out as soon as it wakes.
 */
export const IDLE_LIMIT_MS = 15 * 60 * 1000;
const CHECK_EVERY_MS = 15 * 1000;
const INPUT_EVENTS = ["keydown", "pointerdown", "pointermove", "wheel", "touchstart", "scroll"] as const;

export class IdleWatch {
  private lastInput: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly onInput = (): void => {
    this.lastInput = this.now();
  };

  constructor(
    private readonly onIdle: () => void,
    private readonly limitMs: number = IDLE_LIMIT_MS,
    private readonly now: () => number = Date.now,
    private readonly target: Pick<EventTarget, "addEventListener" | "removeEventListener"> | null = globalThis
      .window ?? null,
  ) {
    this.lastInput = now();
  }

  start(): void {
    if (this.timer !== null) return;
    this.lastInput = this.now();
    for (const name of INPUT_EVENTS) this.target?.addEventListener(name, this.onInput, { passive: true, capture: true });
    this.timer = setInterval(() => this.check(), Math.min(CHECK_EVERY_MS, this.limitMs));
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const name of INPUT_EVENTS) this.target?.removeEventListener(name, this.onInput, { capture: true });
  }

  /** Record input now (also what the listeners do). */
  touch(): void {
    this.onInput();
  }

  /** Sign out when the limit has passed since the last input; true if it did. */
  check(): boolean {
    if (this.now() - this.lastInput < this.limitMs) return false;
    this.stop();
    this.onIdle();
    return true;
  }
}
