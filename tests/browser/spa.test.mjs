// Browser test: the official Ory Elements React components (@ory/elements-react)
// running in a Vite SPA on another origin, driving a running Portcullis through
// real Chromium (playwright-core + Debian's /usr/bin/chromium).
//
// Run (from tests/browser, after `npm ci` and `npm run build`):
//   PORTCULLIS_PUBLIC_URL=http://127.0.0.1:4433 SPA_PORT=4455 node --test spa.test.mjs
//
// Env:
//   PORTCULLIS_PUBLIC_URL  public base URL of a running Portcullis (required; the
//                          test is skipped without it). Use the same host as the
//                          SPA (127.0.0.1) so the cookies are same-site.
//   SPA_URL                use an already running serve-spa.mjs instead of
//                          starting one in-process.
//   SPA_PORT / SPA_HOST    where the in-process SPA server listens (default
//                          0 = random / 127.0.0.1). Portcullis must allow the SPA
//                          origin http://SPA_HOST:SPA_PORT for CORS with
//                          credentials, so pick SPA_PORT before starting it.
//   SPA_TEST_RETURN_TO     "1" (default): open the flows with
//                          ?return_to=<spa>/home (Portcullis must allow that URL);
//                          "0": rely on Portcullis' default browser return URL.
//   CHROMIUM_PATH          default /usr/bin/chromium
//   SCREENSHOT_DIR         default <repo>/artifacts/screenshots (git-ignored); a
//                          relative value is resolved against the cwd
//   STEP_TIMEOUT_MS        default 20000
import { test } from "node:test"
import assert from "node:assert/strict"
import { mkdir, writeFile } from "node:fs/promises"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import { startSpaServer } from "./serve-spa.mjs"

const PUBLIC_URL = (process.env.PORTCULLIS_PUBLIC_URL || "").replace(/\/+$/, "")
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.join(REPO_ROOT, "artifacts", "screenshots")
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium"
const TIMEOUT = Number(process.env.STEP_TIMEOUT_MS || 20000)
const USE_RETURN_TO = (process.env.SPA_TEST_RETURN_TO ?? "1") !== "0"

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

const uniq = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
const EMAIL = `spa-${uniq}@example.com`
const PASSWORD = `Pc-${uniq}-correct-horse-battery`

test(
  "Ory Elements SPA: register, see session, log out, sign in again",
  { skip: PUBLIC_URL ? false : "PORTCULLIS_PUBLIC_URL is not set" },
  async (t) => {
    await mkdir(SCREENSHOT_DIR, { recursive: true })

    let spa
    let spaUrl = (process.env.SPA_URL || "").replace(/\/+$/, "")
    if (!spaUrl) {
      spa = await startSpaServer({
        port: Number(process.env.SPA_PORT || 0),
        host: process.env.SPA_HOST || "127.0.0.1",
        kratosUrl: PUBLIC_URL,
      })
      spaUrl = spa.url
    }
    t.diagnostic(`SPA_URL=${spaUrl} PORTCULLIS_PUBLIC_URL=${PUBLIC_URL} email=${EMAIL}`)
    if (new URL(spaUrl).hostname !== new URL(PUBLIC_URL).hostname) {
      t.diagnostic(
        "warning: SPA and Portcullis hosts differ; SameSite=Lax cookies will not be sent on fetch",
      )
    }
    const homeUrl = `${spaUrl}/home`
    const flowQuery = USE_RETURN_TO ? `?return_to=${encodeURIComponent(homeUrl)}` : ""

    const browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: CHROMIUM_ARGS,
    })
    const context = await browser.newContext({ viewport: { width: 1000, height: 1000 } })
    context.setDefaultTimeout(TIMEOUT)
    const page = await context.newPage()

    // Diagnostics: every request to Portcullis, console errors, page errors.
    const log = []
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") log.push(`console.${m.type()}: ${m.text()}`)
    })
    page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`))
    page.on("requestfailed", (r) =>
      log.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ""}`),
    )
    page.on("response", (r) => {
      if (r.url().startsWith(PUBLIC_URL)) log.push(`${r.status()} ${r.request().method()} ${r.url()}`)
    })
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame()) log.push(`navigated: ${f.url()}`)
    })

    let n = 0
    const shot = async (name) => {
      n += 1
      const file = path.join(SCREENSHOT_DIR, `spa-${String(n).padStart(2, "0")}-${name}.png`)
      await page.screenshot({ path: file, fullPage: true }).catch(() => {})
      return file
    }

    let failed = false
    const step = (name, fn) =>
      t.test(name, { skip: failed ? "an earlier step failed" : false }, async () => {
        try {
          await fn()
        } catch (err) {
          failed = true
          await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, "-")}`)
          await writeFile(
            path.join(SCREENSHOT_DIR, "spa-failure-page.html"),
            await page.content().catch(() => ""),
          ).catch(() => {})
          err.message += `\n  page: ${page.url()}\n  log (last 40):\n    ${log.slice(-40).join("\n    ")}`
          throw err
        }
      })

    // Clicks the form's submit button for a given method (name=method,
    // value=<group>), falling back to the first visible submit button.
    const submit = async (method) => {
      const precise = page.locator(`button[type="submit"][name="method"][value="${method}"]`)
      if ((await precise.count()) > 0) {
        await precise.first().click()
        return
      }
      await page.locator('form button[type="submit"]:visible').first().click()
    }

    const expectHomeWithEmail = async () => {
      await page.waitForURL((u) => u.pathname === "/home", { timeout: TIMEOUT })
      const email = page.getByTestId("spa-email")
      await email.waitFor({ state: "visible" })
      assert.equal((await email.textContent()).trim(), EMAIL)
    }

    try {
      await step("registration via Elements lands on /home with a session", async () => {
        await page.goto(`${spaUrl}/registration${flowQuery}`)
        const emailInput = page.locator('input[name="traits.email"]')
        await emailInput.waitFor({ state: "visible" })
        await shot("registration-form")

        await emailInput.fill(EMAIL)
        for (const [name, value] of [
          ["traits.name.first", "Ada"],
          ["traits.name.last", "Lovelace"],
        ]) {
          const input = page.locator(`input[name="${name}"]:visible`)
          if ((await input.count()) > 0) await input.fill(value)
        }

        let password = page.locator('input[name="password"]:visible')
        if ((await password.count()) === 0) {
          // profile_first (two-step) registration: traits first, then password.
          await submit("profile")
          password = page.locator('input[name="password"]:visible')
          await password.waitFor({ state: "visible" })
        }
        await password.fill(PASSWORD)
        await shot("registration-filled")

        await submit("password")
        await expectHomeWithEmail()
        await shot("home-after-registration")
      })

      await step("logout from the SPA ends the session", async () => {
        await page.getByTestId("spa-logout").click()
        await page.getByTestId("spa-signed-out").waitFor({ state: "visible" })
        await shot("home-signed-out")
      })

      await step("login with a wrong password shows an error and stays on the form", async () => {
        await page.goto(`${spaUrl}/login${flowQuery}`)
        const identifier = page.locator('input[name="identifier"]:not([type="hidden"])')
        await identifier.waitFor({ state: "visible" })
        await shot("login-form")
        await identifier.fill(EMAIL)

        let password = page.locator('input[name="password"]:visible')
        if ((await password.count()) === 0) {
          // identifier_first login: identifier, then the password screen.
          await submit("identifier_first")
          password = page.locator('input[name="password"]:visible')
          await password.waitFor({ state: "visible" })
        }
        await password.fill(`${PASSWORD}-wrong`)
        await submit("password")
        // Error messages (4xxxxxx ids) rendered from the 400 flow body.
        await page.locator('[data-testid^="ory/message/4"]').first().waitFor({ state: "visible" })
        assert.equal(new URL(page.url()).pathname, "/login")
        await shot("login-wrong-password")
      })

      await step("login via Elements lands on /home with the same identity", async () => {
        const identifier = page.locator('input[name="identifier"]:not([type="hidden"])')
        if ((await identifier.count()) > 0 && (await identifier.inputValue()) !== EMAIL) {
          await identifier.fill(EMAIL)
        }
        const password = page.locator('input[name="password"]:visible')
        await password.waitFor({ state: "visible" })
        await password.fill(PASSWORD)
        await shot("login-filled")
        await submit("password")
        await expectHomeWithEmail()
        await shot("home-after-login")
      })
    } finally {
      await writeFile(path.join(SCREENSHOT_DIR, "spa-network.log"), log.join("\n") + "\n").catch(
        () => {},
      )
      await browser.close().catch(() => {})
      if (spa) await spa.close()
    }
  },
)
