// Vite config for the Clerk test SPA, built once per SDK generation from tests/browser/
// (`npm run build`): `--mode v6` (`@clerk/react` 6, into dist/) and `--mode v5`
// (`@clerk/clerk-react` 5, into dist-v5/). The publishable key is not baked in: the page
// reads it from /config.json at run time, so one build works with any port.
import { defineConfig } from "vite"
import react from "@vitejs/plugin-react"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL(".", import.meta.url))

export default defineConfig(({ mode }) => {
  if (mode !== "v5" && mode !== "v6") throw new Error(`--mode v5 or --mode v6, not ${mode}`)
  return {
    root,
    base: "/",
    plugins: [react()],
    resolve: { alias: { "#sdk": `${root}src/sdk-${mode}.jsx` } },
    build: {
      outDir: mode === "v6" ? "dist" : "dist-v5",
      emptyOutDir: true,
      sourcemap: true,
      chunkSizeWarningLimit: 10000,
    },
  }
})
