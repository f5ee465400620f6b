/// <reference types="vitest/config" />
// The web app's build. Served by the API under /app/ (api/app.py), with an index.html fallback for
// deep links. Swagger UI and ReDoc are copied from their npm packages into dist/vendor/, so /docs
// and /redoc load nothing from outside the server.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import vue from "@vitejs/plugin-vue";
import { defineConfig, type Plugin } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");

// The files /docs and /redoc load (api/app.py names them).
const VENDOR_FILES: ReadonlyArray<[string, string]> = [
  ["swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui/swagger-ui-bundle.js"],
  ["swagger-ui-dist/swagger-ui.css", "swagger-ui/swagger-ui.css"],
  ["swagger-ui-dist/favicon-32x32.png", "swagger-ui/favicon-32x32.png"],
  ["redoc/bundles/redoc.standalone.js", "redoc/redoc.standalone.js"],
];

const CDN_URLS = ["https://cdn.redoc.ly/redoc/logo-mini.svg"];

function apiDocsAssets(): Plugin {
  let outDir = "dist";
  return {
    name: "vitalgate-api-docs-assets",
    apply: "build",
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    closeBundle() {
      for (const [from, to] of VENDOR_FILES) {
        const target = join(outDir, "vendor", to);
        mkdirSync(dirname(target), { recursive: true });
        const source = join(modules, from);
        if (!to.endsWith(".js")) {
          cpSync(source, target);
          continue;
        }
        // ReDoc's sidebar shows its maker's logo from a CDN: an empty src loads nothing (and the
        // image hides itself on error), so the page asks no host but ours.
        let text = readFileSync(source, "utf-8");
        for (const url of CDN_URLS) text = text.split(url).join("");
        writeFileSync(target, text);
      }
    },
  };
}

export default defineConfig({
  base: "/app/",
  plugins: [vue(), apiDocsAssets()],
  define: {
    __VUE_OPTIONS_API__: "false",
    __VUE_PROD_DEVTOOLS__: "false",
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
    __VUE_I18N_FULL_INSTALL__: "false",
    __VUE_I18N_LEGACY_API__: "false",
    __INTLIFY_PROD_DEVTOOLS__: "false",
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 700,
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
