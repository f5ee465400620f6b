// Messages of the Fleet page, merged into the app's messages under "fleet": t("fleet.<key>").
// Keep the same keys in fleet.en.ts and fleet.zh-CN.ts (src/i18n.test.ts checks).
import type en from "./fleet.en";
import type { DeepStrings } from "./types";

const zhCN: DeepStrings<typeof en> = {
  title: "设备状态",
  intro: "本诊所的网关和血压计、血糖仪最近一次上报的状态，以及尚未归属任何患者的读数。",
  refresh: "刷新",
  updated: "更新于 {when}",
  gateways: {
    heading: "网关",
    caption: "网关超过 {minutes} 分钟没有上报即显示为离线。",
    loading: "正在加载网关…",
    error: "无法加载网关。",
    empty: "本诊所还没有网关。",
    gateway: "网关",
    state: "状态",
    lastSeen: "最近联系",
    outbox: "待发送",
    oldest: "最早未发送",
    meters: "测量设备",
    patients: "患者：{list}",
    lastError: "最近错误：{error}",
    deactivated: "已停用",
    offlineSince: "自 {when} 起离线",
    outboxValue: "{depth} / {capacity}",
    outboxFull: "已满",
    noMeters: "尚无设备上报",
    meterLastSync: "最近同步 {when}",
    neverSynced: "从未同步",
    battery: "电量 {n}%",
    batteryLow: "电量低：{n}%",
    rssi: "信号 {n} 分贝毫瓦",
    meterError: "错误：{error}",
    states: {
      online: "在线",
      offline: "离线",
      unknown: "从未上报",
    },
  },
  unbound: {
    heading: "未归属患者的读数",
    intro:
      "没有绑定覆盖的读数由网关暂存：设备未绑定任何患者、读数测于绑定之前或解绑之后，或设备时钟不可信。此处从不显示数值，请根据设备和日期作出决定。",
    loading: "正在加载暂存的读数…",
    error: "无法加载暂存的读数。",
    empty: "没有网关暂存读数。",
    gateway: "网关 {id}",
    meter: "设备",
    slot: "用户 {n}",
    count: "读数",
    measured: "测量时间",
    span: "{from} 至 {to}",
    why: "原因",
    reported: "上报于 {when}",
    boundNow: "当前绑定给：{list}",
    nobody: "无人",
    actions: "处理",
    reasons: {
      no_binding: "设备未绑定：{n} 条",
      outside_binding: "不在绑定日期内：{n} 条",
      clock_untrusted: "设备时钟不可信：{n} 条",
    },
    patient: "患者",
    choosePatient: "选择患者",
    adopt: "归入患者",
    discard: "删除",
    confirmDiscard: "确定从网关永久删除这 {n} 条读数吗？删除后无法恢复。",
    pending: {
      adopt: "已于 {when} 发送归入 {patient} 的指令，等待网关执行。",
      discard: "已于 {when} 发送删除指令，等待网关执行。",
    },
    done: {
      published: "已发送至网关，网关下次连接时执行。",
      failed: "已记录但尚未发送：网关下次上报时诊所会重新发送。",
      not_configured: "已记录。本服务器未连接消息代理，将由另一台诊所服务器发送。",
    },
    errors: {
      conflict: "这些读数已有一个决定在等待网关执行。",
      not_found: "网关已不再上报这些读数，列表已刷新。",
      patient: "请选择本诊所的在管患者。",
    },
  },
};

export default zhCN;
