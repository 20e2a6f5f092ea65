// Vite config for the Elements test SPA. Build with `npm run build` (or
// `npx vite build --config spa/vite.config.js`) from tests/browser/.
// The Portcullis URL is NOT baked into the build: the page reads it at run
// time (see src/config.js), so one build works with any port.
import { defineConfig } from "vite"
import react from "@vitejs/plugin-react"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL(".", import.meta.url))

export default defineConfig({
  root,
  base: "/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    // elements-react is large; the warning is noise for a test fixture.
    chunkSizeWarningLimit: 10000,
  },
})
