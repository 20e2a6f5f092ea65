// Vite config for the Clerk test SPA (`@clerk/react`, unchanged). Build with `npm run build`
// from tests/browser/. The publishable key is not baked in: the page reads it from
// /config.json at run time, so one build works with any port.
import { defineConfig } from "vite"
import react from "@vitejs/plugin-react"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL(".", import.meta.url))

export default defineConfig({
  root,
  base: "/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 10000 },
})
