// The bundle is embedded in the Go binary (internal/ui) and committed:
// its output must depend on the source only (no sourcemaps holding paths,
// content-hashed names), so CI can rebuild it and compare.
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/",
  build: {
    outDir: "../internal/ui/dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsDir: "assets",
    target: "es2022",
    chunkSizeWarningLimit: 1024,
    modulePreload: { polyfill: false },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
