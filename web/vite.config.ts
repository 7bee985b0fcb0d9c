import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "../src/llm_api/webapp/static",
    emptyOutDir: true,
    assetsDir: "assets",
    modulePreload: { polyfill: false }, // the polyfill is an inline script: CSP forbids it
    target: "es2022",
    chunkSizeWarningLimit: 800,
  },
});
