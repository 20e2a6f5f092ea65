// Browser test: @ory/elements-react's social sign-in button against Portcullis, in Chromium.
// The SPA (serve-spa.mjs) renders Elements' <Registration> and <Login> from the flows; their
// `oidc` nodes become Elements' provider buttons, whose JSON submit Portcullis answers with
// 422 browser_location_change_required, which Elements follows to the real OpenID provider
// (oidc-provider, tests/interop/idp/, signing the next account in without a page); the
// provider's callback lands back on the SPA with a session.
//
// Run with PORTCULLIS_PUBLIC_URL, PORTCULLIS_IDP_URL and SPA_PORT set (scripts/test does;
// Portcullis must allow the SPA origin for CORS and its /home as a return URL).
import { test } from "node:test"
import assert from "node:assert/strict"
import { openBrowser, publicUrl, uniqueSuffix, TIMEOUT } from "./harness.mjs"
import { startSpaServer } from "./serve-spa.mjs"

const IDP_URL = process.env.PORTCULLIS_IDP_URL
if (!IDP_URL) throw new Error("PORTCULLIS_IDP_URL must be set")

async function nextAccount(account) {
  const res = await fetch(`${IDP_URL}/test/next`, { method: "POST", body: JSON.stringify(account) })
  assert.equal(res.status, 204)
}

test("Ory Elements SPA: sign up and sign in with the provider's button", async (t) => {
  const PUBLIC_URL = publicUrl()
  const spa = await startSpaServer({
    port: Number(process.env.SPA_PORT || 0),
    host: process.env.SPA_HOST || "127.0.0.1",
    kratosUrl: PUBLIC_URL,
  })
  const uniq = uniqueSuffix()
  const email = `elements-social-${uniq}@example.com`
  const account = { sub: `elements-${uniq}`, claims: { email, email_verified: true, given_name: "Hedy" } }
  const home = `${spa.url}/home`
  const query = `?return_to=${encodeURIComponent(home)}`
  const { page, shot, step, close } = await openBrowser(t, { prefix: "spa-social", logUrl: PUBLIC_URL })
  // Every request the provider round trip makes, to show it went through the 422 answer.
  const submits = []
  page.on("response", (r) => {
    if (r.request().method() === "POST" && r.url().startsWith(`${PUBLIC_URL}/self-service/`)) {
      submits.push(r.status())
    }
  })
  const signedInAs = async (expected) => {
    await page.waitForURL((u) => u.href.startsWith(home), { timeout: TIMEOUT })
    const shown = page.getByTestId("spa-email")
    await shown.waitFor({ state: "visible" })
    assert.equal((await shown.textContent()).trim(), expected)
  }
  try {
    await step("Elements renders the provider's button on the registration flow and follows it", async () => {
      await page.goto(`${spa.url}/registration${query}`)
      const button = page.locator('button[name="provider"][value="local"]')
      await button.waitFor({ state: "visible" })
      assert.equal(await button.getAttribute("aria-label"), "Sign up with Local IdP")
      await shot("registration")
      await nextAccount(account)
      await button.click()
      await signedInAs(email)
      assert.deepEqual(submits, [422], "one JSON submit, answered with the provider's location")
      await shot("home-after-sign-up")
      await page.getByTestId("spa-logout").click()
      await page.getByTestId("spa-signed-out").waitFor({ state: "visible" })
    })

    await step("the same provider account signs in from Elements' login", async () => {
      submits.length = 0
      await page.goto(`${spa.url}/login${query}`)
      const button = page.locator('button[name="provider"][value="local"]')
      await button.waitFor({ state: "visible" })
      assert.equal(await button.getAttribute("aria-label"), "Sign in with Local IdP")
      await nextAccount(account)
      await button.click()
      await signedInAs(email)
      assert.deepEqual(submits, [422])
      await shot("home-after-sign-in")
    })
  } finally {
    await close()
    await spa.close()
  }
})
