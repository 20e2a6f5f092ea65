// Shared by the browser tests: Debian's Chromium through playwright-core, a screenshot of
// every step into a git-ignored folder, and a log of every request to Portcullis that is
// printed when a step fails.
import assert from "node:assert/strict"
import { mkdir, writeFile } from "node:fs/promises"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.join(REPO_ROOT, "artifacts", "screenshots")
export const TIMEOUT = Number(process.env.STEP_TIMEOUT_MS || 20000)

// The flags TESTING.md gives: without the background-networking ones Chromium keeps trying
// to reach the internet.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]

/** The public URL of the Portcullis under test; the run fails (not skips) without it. */
export function publicUrl() {
  const url = (process.env.PORTCULLIS_PUBLIC_URL || "").replace(/\/+$/, "")
  assert.ok(url, "PORTCULLIS_PUBLIC_URL must name a running Portcullis (scripts/test sets it)")
  return url
}

/** The admin URL of the same Portcullis (tests that read codes or create identities). */
export function adminUrl() {
  const url = (process.env.PORTCULLIS_ADMIN_URL || "").replace(/\/+$/, "")
  assert.ok(url, "PORTCULLIS_ADMIN_URL must name the admin port of that Portcullis (scripts/test sets it)")
  return url
}

/** A JSON request to the admin API; fails the step unless it answers `expect`. */
export async function admin(method, path, body, expect = 200) {
  const r = await fetch(`${adminUrl()}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await r.text()
  assert.equal(r.status, expect, `${method} ${path}: ${r.status} ${text}`)
  return text ? JSON.parse(text) : null
}

/** The ids of the courier's messages to `email` so far. */
export async function messageIds(email) {
  const r = await fetch(`${adminUrl()}/admin/courier/messages?recipient=${encodeURIComponent(email)}`)
  assert.equal(r.status, 200, `GET /admin/courier/messages: ${r.status}`)
  return new Set((await r.json()).map((m) => m.id))
}

/**
 * The code in the first message of `template` (a Kratos `template_type`) to `email` that is
 * not in `seen`, as the courier queued it; waits for it a few seconds.
 */
export async function mailedCode(email, template, seen = new Set()) {
  const path = `/admin/courier/messages?recipient=${encodeURIComponent(email)}`
  for (let i = 0; i < 50; i++) {
    const r = await fetch(`${adminUrl()}${path}`)
    assert.equal(r.status, 200, `GET ${path}: ${r.status}`)
    const m = (await r.json()).find((m) => m.template_type === template && !seen.has(m.id))
    if (m) {
      const code = m.body.match(/(?<!\d)\d{6}(?!\d)/)
      assert.ok(code, `no code in ${JSON.stringify(m.body)}`)
      return code[0]
    }
    await new Promise((done) => setTimeout(done, 200))
  }
  assert.fail(`no ${template} message to ${email}`)
}

export function uniqueSuffix() {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
}

/**
 * Opens Chromium for test `t`. Returns the page plus `step(name, fn)` (a subtest that is
 * skipped once an earlier one failed, and on failure saves a screenshot, the page's HTML
 * and the request log), `shot(name)` and `close()`. With `todo` (a reason) every step runs
 * but is reported as TODO: its failure does not fail the run.
 */
export async function openBrowser(t, { prefix, contextOptions = {}, logUrl, todo }) {
  await mkdir(SCREENSHOT_DIR, { recursive: true })
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
  })
  const context = await browser.newContext({
    viewport: { width: 1000, height: 1000 },
    ...contextOptions,
  })
  context.setDefaultTimeout(TIMEOUT)
  const page = await context.newPage()

  const log = []
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log.push(`console.${m.type()}: ${m.text()}`)
  })
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`))
  page.on("requestfailed", (r) =>
    log.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ""}`),
  )
  page.on("response", (r) => {
    if (!logUrl || r.url().startsWith(logUrl)) {
      log.push(`${r.status()} ${r.request().method()} ${r.url()}`)
    }
  })
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) log.push(`navigated: ${f.url()}`)
  })

  let n = 0
  const shot = async (name) => {
    n += 1
    const file = path.join(SCREENSHOT_DIR, `${prefix}-${String(n).padStart(2, "0")}-${name}.png`)
    await page.screenshot({ path: file, fullPage: true }).catch(() => {})
    return file
  }

  let failed = false
  const step = (name, fn) =>
    t.test(name, { skip: failed ? "an earlier step failed" : false, todo }, async () => {
      try {
        await fn()
      } catch (err) {
        failed = true
        await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, "-")}`)
        await writeFile(
          path.join(SCREENSHOT_DIR, `${prefix}-failure-page.html`),
          await page.content().catch(() => ""),
        ).catch(() => {})
        err.message += `\n  page: ${page.url()}\n  log (last 40):\n    ${log.slice(-40).join("\n    ")}`
        throw err
      }
    })

  const close = async () => {
    await writeFile(path.join(SCREENSHOT_DIR, `${prefix}-network.log`), log.join("\n") + "\n").catch(
      () => {},
    )
    await browser.close().catch(() => {})
  }
  return { browser, context, page, shot, step, close, log }
}

/**
 * A virtual authenticator (Chromium's CDP `WebAuthn` domain) on `page`: `internal` for a
 * passkey device, `usb` for a security key; it verifies its user and answers at once.
 * Returns `credentials()` (what it holds) and `remove()`.
 */
export async function virtualAuthenticator(page, transport) {
  const cdp = await page.context().newCDPSession(page)
  await cdp.send("WebAuthn.enable", { enableUI: false })
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      ctap2Version: "ctap2_1",
      transport,
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  })
  return {
    credentials: async () => (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials,
    remove: () => cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId }),
  }
}
