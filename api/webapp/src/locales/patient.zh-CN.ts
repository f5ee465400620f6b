// Messages of the patient page, merged into the app's messages under "patient": t("patient.<key>").
// Keep the same keys in patient.en.ts and patient.zh-CN.ts (src/i18n.test.ts checks).
export default {};
