#!/usr/bin/env node
// Tiny static server for the built Elements SPA (spa/dist), node:http only.
//
//   node serve-spa.mjs [--port N] [--host H] [--kratos URL] [--dist DIR]
//
// Env fall-backs: SPA_PORT (default 0 = random free port), SPA_HOST
// (default 127.0.0.1), PORTCULLIS_PUBLIC_URL (the Portcullis public base URL
// written into /config.json). Prints one line `SPA_URL=http://HOST:PORT` on
// stdout once listening.
//
// GET /config.json is generated at run time ({kratosUrl, projectName, ...}),
// which is how the SPA learns the Portcullis URL without a rebuild. With
// `clerkUrl`, every request under /__clerk/ is forwarded there with the prefix
// stripped (the same-origin forward Clerk documents for `proxyUrl`). With
// `apiUrl`, every request under /api/ goes there as it came (the app's backend on the
// same origin, as a Vite dev proxy or a reverse proxy puts it). Every
// other path serves a file from the dist folder, and paths that are not
// files fall back to index.html (SPA routing: /login, /registration, /home).
import { createReadStream } from "node:fs"
import { stat } from "node:fs/promises"
import http from "node:http"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
export const DEFAULT_DIST = path.join(here, "spa", "dist")

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
}

/** Forwards `req` to `target` as it came (method, headers with Origin and cookies, body). */
function forward(req, res, target) {
  const t = new URL(target)
  const headers = { ...req.headers, host: t.host }
  const up = http.request(t, { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode || 502, answer.headers)
    answer.pipe(res)
  })
  up.on("error", (e) => res.writeHead(502, { "Content-Type": TYPES[".txt"] }).end(String(e)))
  req.pipe(up)
}

async function isFile(p) {
  try {
    return (await stat(p)).isFile()
  } catch {
    return false
  }
}

/**
 * Starts the server. Resolves to { server, url, port, close() }.
 * @param {{port?: number, host?: string, kratosUrl?: string, distDir?: string,
 *          projectName?: string, recoveryEnabled?: boolean, verificationEnabled?: boolean,
 *          clerkUrl?: string, publishableKey?: string, apiUrl?: string}} opts
 */
export async function startSpaServer(opts = {}) {
  const host = opts.host || "127.0.0.1"
  const distDir = path.resolve(opts.distDir || DEFAULT_DIST)
  const indexHtml = path.join(distDir, "index.html")
  if (!(await isFile(indexHtml))) {
    throw new Error(
      `${indexHtml} not found: build the SPA first (npm run build in tests/browser)`,
    )
  }
  const runtimeConfig = JSON.stringify({
    kratosUrl: (opts.kratosUrl || "").replace(/\/+$/, ""),
    projectName: opts.projectName || "Portcullis",
    recoveryEnabled: !!opts.recoveryEnabled,
    verificationEnabled: !!opts.verificationEnabled,
    publishableKey: opts.publishableKey || "",
  })
  const clerkUrl = (opts.clerkUrl || "").replace(/\/+$/, "")
  const apiUrl = (opts.apiUrl || "").replace(/\/+$/, "")

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url || "/", "http://localhost")
      if (clerkUrl && url.pathname.startsWith("/__clerk/")) {
        forward(req, res, `${clerkUrl}${req.url.slice("/__clerk".length)}`)
        return
      }
      if (apiUrl && url.pathname.startsWith("/api/")) {
        forward(req, res, `${apiUrl}${req.url}`)
        return
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { Allow: "GET, HEAD" }).end()
        return
      }
      if (url.pathname === "/config.json") {
        res.writeHead(200, {
          "Content-Type": TYPES[".json"],
          "Cache-Control": "no-store",
        })
        res.end(req.method === "HEAD" ? undefined : runtimeConfig)
        return
      }

      let file
      let decoded
      try {
        decoded = decodeURIComponent(url.pathname)
      } catch {
        decoded = "/"
      }
      const candidate = path.resolve(distDir, "." + path.posix.normalize(decoded))
      if (candidate.startsWith(distDir + path.sep) && (await isFile(candidate))) {
        file = candidate
      } else if (url.pathname.startsWith("/assets/")) {
        res.writeHead(404, { "Content-Type": TYPES[".txt"] }).end("not found")
        return
      } else {
        file = indexHtml // SPA fallback
      }

      const ext = path.extname(file)
      res.writeHead(200, {
        "Content-Type": TYPES[ext] || "application/octet-stream",
        "Cache-Control": file === indexHtml ? "no-store" : "public, max-age=3600",
      })
      if (req.method === "HEAD") {
        res.end()
        return
      }
      createReadStream(file).pipe(res)
    } catch (err) {
      res.writeHead(500, { "Content-Type": TYPES[".txt"] }).end(String(err))
    }
  })

  await new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(Number(opts.port || 0), host, resolve)
  })
  const { port } = server.address()
  const url = `http://${host}:${port}`
  return {
    server,
    url,
    port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

function parseArgs(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a)
    if (!m) continue
    out[m[1]] = m[2] !== undefined ? m[2] : argv[++i]
  }
  return out
}

const invokedDirectly =
  process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (invokedDirectly) {
  const args = parseArgs(process.argv.slice(2))
  const spa = await startSpaServer({
    port: Number(args.port ?? process.env.SPA_PORT ?? 0),
    host: args.host ?? process.env.SPA_HOST ?? "127.0.0.1",
    kratosUrl: args.kratos ?? process.env.PORTCULLIS_PUBLIC_URL ?? "",
    distDir: args.dist,
  })
  process.stdout.write(`SPA_URL=${spa.url}\n`)
  const stop = () => void spa.close().then(() => process.exit(0))
  process.on("SIGINT", stop)
  process.on("SIGTERM", stop)
}
