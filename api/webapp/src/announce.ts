/**
 * The app's live regions (App.vue): `announce` speaks a polite status message (a new alert, an action
 * done); `announceAlert` an assertive one. Repeating the same text is still spoken (the region is
 * cleared first).
 */
import { nextTick, reactive } from "vue";

export const liveRegions = reactive({ polite: "", assertive: "" });

async function speak(region: "polite" | "assertive", text: string): Promise<void> {
  liveRegions[region] = "";
  await nextTick();
  liveRegions[region] = text;
}

export function announce(text: string): void {
  void speak("polite", text);
}

export function announceAlert(text: string): void {
  void speak("assertive", text);
}
