import type en from "./en";

/** The shape of a locale's messages: en.ts's keys, every leaf a string. */
export type DeepStrings<T> = { [K in keyof T]: T[K] extends string ? string : DeepStrings<T[K]> };
export type Messages = DeepStrings<typeof en>;
