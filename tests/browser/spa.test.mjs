// Browser test: the official Ory Elements React components (@ory/elements-react)
// running in a Vite SPA on another origin, driving a running Portcullis through
// real Chromium (playwright-core + Debian's /usr/bin/chromium).
//
// Run (from tests/browser, after `npm ci` and `npm run build`):
//   PORTCULLIS_PUBLIC_URL=http://127.0.0.1:4433 SPA_PORT=4455 node --test spa.test.mjs
//
// Env:
//   PORTCULLIS_PUBLIC_URL  public base URL of a running Portcullis (required; the
//                          run fails without it). Use the same host as the
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
import { openBrowser, publicUrl, uniqueSuffix, TIMEOUT } from "./harness.mjs"
import { startSpaServer } from "./serve-spa.mjs"

const USE_RETURN_TO = (process.env.SPA_TEST_RETURN_TO ?? "1") !== "0"
const uniq = uniqueSuffix()
const EMAIL = `spa-${uniq}@example.com`
const PASSWORD = `Pc-${uniq}-correct-horse-battery`

test("Ory Elements SPA: register, see session, log out, sign in again", async (t) => {
    const PUBLIC_URL = publicUrl()
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

    const { page, shot, step, close } = await openBrowser(t, { prefix: "spa", logUrl: PUBLIC_URL })

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
      await close()
      if (spa) await spa.close()
    }
})
