// End-to-end: passkeys and security keys on the pages Portcullis serves (/ui/*), in Debian's
// Chromium with JavaScript on (the only pages that run a script) and Chromium's virtual
// authenticator (the CDP `WebAuthn` domain) as the person's device: a platform authenticator
// with user verification for passkeys, a USB key for the second factor. Screenshots:
// `webauthn-NN-*.png`.
//
// WebAuthn needs a secure context and a relying party that is the page's host, so the server
// under test has its public URL on http://localhost (scripts/test starts one with
// selfservice.methods.passkey and .webauthn enabled; browsers refuse IP addresses as RP ids).
//
// Run: PORTCULLIS_PUBLIC_URL=http://localhost:4433 PORTCULLIS_ADMIN_URL=… node --test webauthn.test.mjs
import { test } from "node:test"
import assert from "node:assert/strict"
import { admin, openBrowser, publicUrl, uniqueSuffix, virtualAuthenticator as authenticator } from "./harness.mjs"

const uniq = uniqueSuffix()
const PASSKEY_EMAIL = `passkey-${uniq}@example.com`
const KEY_EMAIL = `key-${uniq}@example.com`
const PASSWORD = `Pc-${uniq}-marmalade-oboe`

/** The signed-in session, read with the browser's cookies (the pages' CSP allows no fetch). */
const whoami = async (page) => {
  const r = await page.request.get(`${publicUrl()}/sessions/whoami`, { headers: { accept: "application/json" } })
  return { status: r.status(), body: await r.json() }
}

test("hosted UI: sign up and in with a passkey; a security key as the second factor", async (t) => {
  const base = publicUrl()
  assert.equal(new URL(base).hostname, "localhost", "WebAuthn needs the pages on http://localhost")
  const { page, shot, step, close } = await openBrowser(t, {
    prefix: "webauthn",
    contextOptions: { locale: "en-US" },
    logUrl: base,
  })
  const message = (id) => page.locator(`[data-message-id="${id}"]`)
  const welcomed = async (email) => {
    await page.waitForURL(`${base}/ui/welcome`)
    assert.equal((await page.getByTestId("email").textContent()).trim(), email)
  }
  const signOut = async () => {
    await page.goto(`${base}/ui/welcome`)
    await page.getByTestId("logout").click()
    await page.waitForURL((u) => u.pathname === "/ui/login")
  }
  // Records the sign-in requests the pages make, across navigations (sessionStorage).
  await page.addInitScript(() => {
    const get = navigator.credentials.get.bind(navigator.credentials)
    navigator.credentials.get = (options) => {
      const seen = JSON.parse(sessionStorage.getItem("requests") || "[]")
      seen.push({ mediation: options.mediation || "", allow: (options.publicKey.allowCredentials || []).length })
      sessionStorage.setItem("requests", JSON.stringify(seen))
      return get(options)
    }
  })
  /** The sign-in requests since the last call. */
  const requests = () =>
    page.evaluate(() => {
      const seen = JSON.parse(sessionStorage.getItem("requests") || "[]")
      sessionStorage.removeItem("requests")
      return seen
    })

  try {
    let device = await authenticator(page, "internal")
    let identityId = ""

    await step("the registration page loads the ceremony script, pinned and allowed by nonce", async () => {
      const response = await page.goto(`${base}/ui/registration`)
      const csp = response.headers()["content-security-policy"]
      const script = page.locator("script#webauthn_script")
      assert.equal(await script.count(), 1, "one script")
      // Browsers hide a nonce attribute from the DOM once the CSP applied; the property keeps it.
      const nonce = await script.evaluate((el) => el.nonce)
      assert.ok(nonce && csp.includes(`script-src 'nonce-${nonce}'`), `the CSP allows that script only: ${csp}`)
      assert.ok(!csp.includes("unsafe-inline"), csp)
      assert.match(await script.getAttribute("integrity"), /^sha512-[A-Za-z0-9+/]+=*$/)
      assert.equal(await script.getAttribute("src"), `${base}/.well-known/ory/webauthn.js`)
      await page.waitForFunction(() => window.__oryWebAuthnInitialized === true)
      for (const fn of ["oryWebAuthnLogin", "oryWebAuthnRegistration", "oryPasskeyLogin", "oryPasskeyLoginAutocompleteInit", "oryPasskeyRegistration", "oryPasskeySettingsRegistration"]) {
        assert.equal(await page.evaluate((f) => typeof window[f], fn), "function", fn)
      }
      await shot("registration-with-passkey")
    })

    await step("sign up with a passkey: no password, signed in at once", async () => {
      // One form: the traits, then a password or a passkey.
      assert.equal(await page.locator('input[name="traits.email"]').count(), 1)
      const form = page.locator("form.group-password")
      await form.locator('input[name="traits.email"]').fill(PASSKEY_EMAIL)
      await form.getByRole("button", { name: "Sign up with passkey" }).click()
      await welcomed(PASSKEY_EMAIL)
      const creds = await device.credentials()
      assert.equal(creds.length, 1)
      assert.equal(creds[0].isResidentCredential, true, "a discoverable credential")
      assert.equal(creds[0].rpId, "localhost")
      const { status, body } = await whoami(page)
      assert.equal(status, 200)
      assert.deepEqual(body.authentication_methods.map((m) => m.method), ["passkey"])
      identityId = body.identity.id
      const identity = await admin("GET", `/admin/identities/${identityId}?include_credential=passkey`)
      assert.deepEqual(Object.keys(identity.credentials).sort(), ["passkey"], "no password")
      const config = identity.credentials.passkey.config
      assert.equal(config.credentials.length, 1)
      assert.equal(config.credentials[0].display_name, PASSKEY_EMAIL)
      // CDP and the stored credential both write bytes in standard base64.
      assert.equal(config.credentials[0].id, creds[0].credentialId)
      assert.equal(config.user_handle, creds[0].userHandle, "the handle the device keeps")
      await shot("welcome-after-passkey-registration")
    })

    await step("the login page offers the passkey in the identifier's autofill, which signs in", async () => {
      await signOut()
      // The virtual device answers the autofill request at once, as a person picking the
      // passkey from the suggestions would.
      await welcomed(PASSKEY_EMAIL)
      assert.deepEqual(await requests(), [{ mediation: "conditional", allow: 0 }], "one discoverable autofill request")
      const { body } = await whoami(page)
      assert.equal(body.identity.id, identityId)
      assert.deepEqual(body.authentication_methods.map((m) => m.method), ["passkey"])
      assert.equal(body.authenticator_assurance_level, "aal1")
    })

    await step("without autofill support the passkey button signs in", async () => {
      await page.addInitScript(() => {
        PublicKeyCredential.isConditionalMediationAvailable = async () => false
      })
      await signOut()
      assert.equal(await page.locator('input[name="identifier"]').getAttribute("autocomplete"), "username webauthn")
      await shot("login-with-passkey")
      assert.deepEqual(await requests(), [], "no autofill request")
      const before = (await device.credentials())[0].signCount
      await page.getByRole("button", { name: "Sign in with passkey" }).click()
      await welcomed(PASSKEY_EMAIL)
      assert.deepEqual(await requests(), [{ mediation: "", allow: 0 }], "one discoverable request")
      assert.ok((await device.credentials())[0].signCount > before, "the device signed")
      const { body } = await whoami(page)
      assert.equal(body.identity.id, identityId)
    })

    await step("settings: a second passkey is added, the last one cannot be removed", async () => {
      await page.getByRole("link", { name: "Account settings" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      const remove = page.locator('form.group-passkey button[name="passkey_remove"]')
      assert.equal(await remove.count(), 1)
      assert.ok(await remove.isDisabled(), "the only way in cannot be removed")
      // The same device is refused a second passkey (excludeCredentials): another one adds it.
      await device.remove()
      device = await authenticator(page, "internal")
      await page.getByRole("button", { name: "Add passkey" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("1050001").waitFor()
      assert.equal((await device.credentials()).length, 1)
      assert.equal(await remove.count(), 2)
      assert.ok(!(await remove.first().isDisabled()), "with two, either may go")
      await remove.first().click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("1050001").waitFor()
      assert.equal(await remove.count(), 1)
      await shot("settings-passkeys")
    })

    await device.remove()
    const key = await authenticator(page, "usb")

    await step("a password account adds a security key in settings", async () => {
      await signOut()
      await page.goto(`${base}/ui/registration`)
      const form = page.locator("form.group-password")
      await form.locator('input[name="traits.email"]').fill(KEY_EMAIL)
      await form.locator('input[name="password"]').fill(PASSWORD)
      await form.getByRole("button", { name: "Sign up", exact: true }).click()
      await welcomed(KEY_EMAIL)
      await page.getByRole("link", { name: "Account settings" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      const keys = page.locator("form.group-webauthn")
      await keys.getByRole("button", { name: "Add security key" }).click()
      await message("4000002").waitFor() // a key needs a name, asked before the key is touched
      assert.equal((await key.credentials()).length, 0)
      await keys.locator('input[name="webauthn_register_displayname"]').fill("Blue key")
      await keys.getByRole("button", { name: "Add security key" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("1050001").waitFor()
      assert.equal((await key.credentials()).length, 1)
      assert.ok(await page.getByRole("button", { name: 'Remove security key "Blue key"' }).isVisible())
      const { body } = await whoami(page)
      assert.equal(body.authenticator_assurance_level, "aal2", "the enrolling session proved the key")
      await shot("settings-security-key")
    })

    await step("the password alone is not enough: the second step asks for the key", async () => {
      await signOut()
      await page.locator('form.group-password input[name="identifier"]').fill(KEY_EMAIL)
      await page.locator('form.group-password input[name="password"]').fill(PASSWORD)
      await page.getByRole("button", { name: "Sign in with password" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/login" && u.searchParams.has("flow"))
      await message("1010004").waitFor()
      const before = (await key.credentials())[0].signCount
      await shot("login-second-factor-key")
      await page.getByRole("button", { name: "Sign in with hardware key" }).click()
      await welcomed(KEY_EMAIL)
      assert.ok((await key.credentials())[0].signCount > before)
      const { body } = await whoami(page)
      assert.deepEqual(body.authentication_methods.map((m) => m.method), ["password", "webauthn"])
      assert.equal(body.authenticator_assurance_level, "aal2")
    })

    await step("removing the key in settings", async () => {
      await page.getByRole("link", { name: "Account settings" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await page.getByRole("button", { name: 'Remove security key "Blue key"' }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("1050001").waitFor()
      assert.equal(await page.locator('button[name="webauthn_remove"]').count(), 0)
    })
  } finally {
    await close()
  }
})
