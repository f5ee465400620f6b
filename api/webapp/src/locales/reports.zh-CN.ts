// Messages of the report actions and the Monthly report page, merged into the app's messages under
// "reports": t("reports.<key>"). Keep the same keys in reports.en.ts and reports.zh-CN.ts
// (src/i18n.test.ts checks).
import type en from "./reports.en";
import type { DeepStrings } from "./types";

const zhCN: DeepStrings<typeof en> = {
  actions: {
    label: "报告与导出",
    pdf: "打印 / PDF 报告",
    pdfHint: "当前时间范围（{days} 天）的就诊报告，采用当前语言和血糖单位。",
    csv: "导出 CSV",
    csvHint: "当前时间范围内的全部读数，含错误读数及其原因。",
    working: "正在生成…",
    ready: "已下载 {name}。",
    failed: "无法生成文件。",
  },
  monthly: {
    title: "月度报告",
    intro: "每位患者在本月结束的 30 天监测期内有读数的天数（16 天为远程监测达标线）、读数，以及新预警和已处理的预警。",
    month: "月份",
    show: "查看",
    loading: "正在加载报告…",
    error: "无法加载报告。",
    empty: "本月没有在组患者。",
    downloadCsv: "下载 CSV",
    downloadPdf: "下载 PDF",
    caption: "{clinic}，{month}：{patients} 位患者，{meeting} 个监测期达到 {threshold} 天",
    patient: "患者",
    period: "30 天监测期",
    days: "有读数的天数",
    meets: "达到 {threshold} 天",
    readings: "读数",
    monthDays: "本月有读数的天数",
    opened: "新预警",
    handled: "已处理的预警",
    yes: "是",
    no: "否",
    inProgress: "进行中",
    noPeriod: "本月无结束的监测期",
  },
};

export default zhCN;
