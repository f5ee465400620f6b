import { describe, expect, it } from "vitest";
import { detectLocale, messages } from "./i18n";

// Values that are the same in both languages on purpose: the product name, the language names
// (each written in its own language), and messages of placeholders, units and punctuation only.
const SAME_IN_BOTH = new Set(["vitalgate", "English", "中文（简体）"]);
const UNITS = /^(mmHg|mmol|mg|dL|L)$/;
// Words allowed in Chinese text: units, upper-case acronyms of the field (GMI, CV, AGP, ESH/ESC),
// the product name, a language's own name, and time-zone identifiers as users type them.
const ALLOWED_WORDS = new Set(["vitalgate", "English", "IANA", "Asia", "Shanghai"]);

function wordsOf(text: string): string[] {
  return [...text.replace(/\{\w+\}/g, "").matchAll(/[A-Za-z]+/g)].map((m) => m[0]);
}

function sameOnPurpose(value: string): boolean {
  return SAME_IN_BOTH.has(value) || wordsOf(value).every((word) => UNITS.test(word));
}

function allowedInChinese(word: string): boolean {
  return UNITS.test(word) || ALLOWED_WORDS.has(word) || /^[A-Z]{1,6}$/.test(word);
}

type Tree = { [key: string]: string | Tree };

function leaves(tree: Tree, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(tree)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (typeof value === "string") out.set(path, value);
    else for (const [k, v] of leaves(value, path)) out.set(k, v);
  }
  return out;
}

const en = leaves(messages.en as unknown as Tree);
const zh = leaves(messages["zh-CN"] as unknown as Tree);

describe("zh-CN and en are complete", () => {
  it("has every English key in Chinese", () => {
    expect([...en.keys()].filter((key) => !zh.has(key))).toEqual([]);
  });

  it("has no Chinese key that English lacks", () => {
    expect([...zh.keys()].filter((key) => !en.has(key))).toEqual([]);
  });

  it("translates every value (no Chinese value left equal to its English one)", () => {
    const untranslated = [...en].filter(([key, value]) => zh.get(key) === value && !sameOnPurpose(value));
    expect(untranslated).toEqual([]);
  });

  it("keeps every placeholder of the English message in the Chinese one", () => {
    // The names used, each once: an English singular | plural form repeats them.
    const names = (text: string) => [...new Set([...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]))].sort();
    const mismatched = [...en].filter(([key, value]) => JSON.stringify(names(value)) !== JSON.stringify(names(zh.get(key) ?? "")));
    expect(mismatched).toEqual([]);
  });

  it("leaves no English word in Chinese text but units, acronyms of the field and allowed names", () => {
    const offenders = [...zh].filter(([, value]) => !wordsOf(value).every(allowedInChinese));
    expect(offenders).toEqual([]);
  });

  it("has a title for every rule of the alert catalogue in both languages", () => {
    const ruleKeys = [...en.keys()].filter((key) => key.startsWith("rules."));
    expect(ruleKeys.length).toBeGreaterThanOrEqual(33);
    for (const key of ruleKeys) expect(zh.get(key), key).toBeTruthy();
  });
});

describe("the first language comes from the browser, a choice is remembered", () => {
  it("takes the remembered choice first", () => {
    expect(detectLocale("en", ["zh-CN"])).toBe("en");
  });
  it("takes Chinese for any zh browser language", () => {
    expect(detectLocale(null, ["zh-TW", "en"])).toBe("zh-CN");
    expect(detectLocale(null, ["fr", "zh"])).toBe("zh-CN");
  });
  it("falls back to English", () => {
    expect(detectLocale("xx", ["fr"])).toBe("en");
  });
});
