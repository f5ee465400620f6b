// Every message key the patient page names literally exists, in both languages: a missing key would
// show its raw name (in English letters) to the user.
import { describe, expect, it } from "vitest";
import { messages } from "../../i18n";

const sources: Record<string, string> = {
  ...import.meta.glob(["./*.vue", "./*.ts", "!./*.test.ts"], { query: "?raw", import: "default", eager: true }),
  ...import.meta.glob("../../views/PatientView.vue", { query: "?raw", import: "default", eager: true }),
};

function leaf(root: unknown, key: string): unknown {
  let node = root;
  for (const part of key.split(".")) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

const KEY = /\bt\(\s*["']((?:patient|app|alertState|alertEvent|rules|severity)\.[\w.]+)["']/g;

describe("patient page messages", () => {
  const keys = new Set<string>();
  for (const text of Object.values(sources)) {
    for (const match of text.matchAll(KEY)) keys.add(match[1] as string);
  }

  it("finds the keys it checks", () => {
    expect(keys.size).toBeGreaterThan(100);
  });

  for (const locale of ["en", "zh-CN"] as const) {
    it(`has every key the page names in ${locale}`, () => {
      const missing = [...keys].filter((key) => typeof leaf(messages[locale], key) !== "string");
      expect(missing).toEqual([]);
    });
  }
});
