// End-to-end: passwordless security keys (`selfservice.methods.webauthn.config.passwordless`)
// on the hosted pages, in Chromium with a virtual USB key that verifies its user: sign up with
// the key and no password, then sign in by the identifier followed by the key (the page comes
// back with "Continue" after the identifier), in English and in Korean.
//
// scripts/test starts a Portcullis with passwordless keys on http://localhost for this file.
// Run: PORTCULLIS_PUBLIC_URL=http://localhost:4433 node --test webauthn-passwordless.test.mjs
import { test } from "node:test"
import assert from "node:assert/strict"
import { openBrowser, publicUrl, uniqueSuffix, virtualAuthenticator } from "./harness.mjs"

const EMAIL = `key-only-${uniqueSuffix()}@example.com`

test("hosted UI: a security key instead of a password", async (t) => {
  const base = publicUrl()
  assert.equal(new URL(base).hostname, "localhost", "WebAuthn needs the pages on http://localhost")
  const { page, shot, step, close } = await openBrowser(t, {
    prefix: "webauthn-passwordless",
    contextOptions: { locale: "en-US" },
    logUrl: base,
  })
  try {
    const { credentials } = await virtualAuthenticator(page, "usb")
    const welcomed = async () => {
      await page.waitForURL(`${base}/ui/welcome`)
      assert.equal((await page.getByTestId("email").textContent()).trim(), EMAIL)
    }

    await step("sign up with a named key, no password", async () => {
      await page.goto(`${base}/ui/registration`)
      await page.locator('input[name="traits.email"]').fill(EMAIL)
      await page.locator('input[name="webauthn_register_displayname"]').fill("Desk key")
      await shot("registration")
      await page.getByRole("button", { name: "Sign up with security key" }).click()
      await welcomed()
      assert.equal((await credentials()).length, 1)
    })

    await step("sign in: the identifier, then the key", async () => {
      await page.getByTestId("logout").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      const form = page.locator("form.group-webauthn")
      await form.locator('input[name="identifier"]').fill(EMAIL)
      await form.getByRole("button", { name: "Sign in with hardware key" }).click()
      // The same flow comes back asking for the key.
      await page.locator('[data-message-id="1010012"]').waitFor()
      assert.equal(await page.locator('input[name="password"]').count(), 0, "the key alone is asked for")
      await shot("login-continue-with-key")
      const before = (await credentials())[0].signCount
      await page.getByRole("button", { name: "Continue" }).click()
      await welcomed()
      assert.ok((await credentials())[0].signCount > before, "the key signed")
    })

    await step("the same in Korean", async () => {
      await page.getByTestId("logout").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      await page.goto(`${page.url()}&lang=ko`)
      const form = page.locator("form.group-webauthn")
      await form.locator('input[name="identifier"]').fill(EMAIL)
      await form.getByRole("button", { name: "보안 키로 로그인" }).click()
      await page.locator('[data-message-id="1010012"]').waitFor()
      await shot("login-continue-with-key-ko")
      await page.getByRole("button", { name: "계속" }).click()
      await page.waitForURL(`${base}/ui/welcome`)
    })
  } finally {
    await close()
  }
})
