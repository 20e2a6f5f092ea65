// Browser test: the official Ory Elements React components (@ory/elements-react) enrol and
// use a passkey against Portcullis, unchanged: Elements loads the `webauthn_script` node
// (/.well-known/ory/webauthn.js, pinned by its integrity hash) and calls the window functions
// its buttons name (`onclickTrigger`); Chromium's virtual authenticator is the device.
//
// The SPA runs on http://localhost:<SPA_PORT> and Portcullis on http://localhost:<port>, so
// the relying party `localhost` covers both; Portcullis must list the SPA's origin in
// `selfservice.methods.passkey.config.rp.origins`, in CORS and in the allowed return URLs
// (scripts/test does).
//
// Run: PORTCULLIS_PUBLIC_URL=http://localhost:4433 SPA_PORT=4455 node --test spa-passkey.test.mjs
import { test } from "node:test"
import assert from "node:assert/strict"
import { admin, openBrowser, publicUrl, uniqueSuffix, virtualAuthenticator } from "./harness.mjs"
import { startSpaServer } from "./serve-spa.mjs"

const EMAIL = `spa-passkey-${uniqueSuffix()}@example.com`

test("Ory Elements SPA: sign up with a passkey, sign out, sign in with it", async (t) => {
  const base = publicUrl()
  assert.equal(new URL(base).hostname, "localhost", "WebAuthn needs the pages on http://localhost")
  const spa = await startSpaServer({ port: Number(process.env.SPA_PORT || 0), host: "localhost", kratosUrl: base })
  const home = `${spa.url}/home`
  const query = `?return_to=${encodeURIComponent(home)}`
  const { page, shot, step, close } = await openBrowser(t, { prefix: "spa-passkey", logUrl: base })
  try {
    const { credentials } = await virtualAuthenticator(page, "internal")
    const signedInAs = async () => {
      await page.waitForURL((u) => u.pathname === "/home")
      const email = page.getByTestId("spa-email")
      await email.waitFor({ state: "visible" })
      return (await email.textContent()).trim()
    }
    let identityId = ""

    await step("Elements' registration form offers a passkey and enrols one", async () => {
      await page.goto(`${spa.url}/registration${query}`)
      const email = page.locator('input[name="traits.email"]')
      await email.waitFor({ state: "visible" })
      await email.fill(EMAIL)
      let button = page.getByRole("button", { name: /passkey/i })
      if ((await button.count()) === 0) {
        // Elements' two-step registration: the traits first, then the methods.
        await page.locator('button[type="submit"]:visible').first().click()
        button = page.getByRole("button", { name: /passkey/i })
      }
      await shot("registration")
      await button.first().click()
      assert.equal(await signedInAs(), EMAIL)
      const creds = await credentials()
      assert.equal(creds.length, 1)
      assert.equal(creds[0].isResidentCredential, true)
      const handle = toUuid(creds[0].userHandle)
      const identities = await admin("GET", `/admin/identities?credentials_identifier=${handle}`)
      assert.equal(identities.length, 1, "the passkey's user handle names the new account")
      identityId = identities[0].id
      await shot("home-after-registration")
    })

    await step("sign out, then sign in with the passkey from Elements' login form", async () => {
      await page.getByTestId("spa-logout").click()
      await page.getByTestId("spa-signed-out").waitFor({ state: "visible" })
      // No autofill: this step is about Elements' passkey button.
      await page.addInitScript(() => {
        PublicKeyCredential.isConditionalMediationAvailable = async () => false
      })
      await page.goto(`${spa.url}/login${query}`)
      const button = page.getByRole("button", { name: /passkey/i })
      await button.first().waitFor({ state: "visible" })
      await shot("login")
      const before = (await credentials())[0].signCount
      await button.first().click()
      assert.equal(await signedInAs(), EMAIL)
      assert.ok((await credentials())[0].signCount > before, "the device signed")
      const identity = await admin("GET", `/admin/identities/${identityId}`)
      assert.equal(identity.traits.email, EMAIL)
    })
  } finally {
    await close()
    await spa.close()
  }
})

/** The UUID whose 16 bytes are the standard-base64 `b64`. */
function toUuid(b64) {
  const hex = Buffer.from(b64, "base64").toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
