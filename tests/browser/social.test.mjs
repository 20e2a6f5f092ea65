// End-to-end: social sign-in on the hosted pages, in Chromium with JavaScript OFF, against a
// real OpenID provider (oidc-provider, tests/interop/idp/) that signs the next account in
// without a page. English and Korean; each page is saved as a screenshot (`social-NN-*.png`).
//
// Run with PORTCULLIS_PUBLIC_URL and PORTCULLIS_IDP_URL set (scripts/test does).
import { test } from "node:test"
import assert from "node:assert/strict"
import { openBrowser, publicUrl, uniqueSuffix } from "./harness.mjs"

const IDP_URL = process.env.PORTCULLIS_IDP_URL
if (!IDP_URL) throw new Error("PORTCULLIS_IDP_URL must be set")

async function nextAccount(account) {
  const res = await fetch(`${IDP_URL}/test/next`, { method: "POST", body: JSON.stringify(account) })
  assert.equal(res.status, 204)
}

test("hosted UI: sign up and sign in with a provider, and registration completion", async (t) => {
  const base = publicUrl()
  const uniq = uniqueSuffix()
  const email = `social-${uniq}@example.com`
  const account = { sub: `browser-${uniq}`, claims: { email, email_verified: true, given_name: "Grace" } }
  const { page, context, shot, step, close } = await openBrowser(t, {
    prefix: "social",
    contextOptions: { javaScriptEnabled: false, locale: "en-US" },
    logUrl: base,
  })
  try {
    await step("sign up with the provider's button", async () => {
      await page.goto(`${base}/ui/registration`)
      await shot("registration")
      await nextAccount(account)
      await page.getByRole("button", { name: "Sign up with Local IdP" }).click()
      await page.waitForURL(`${base}/ui/welcome`)
      assert.equal((await page.getByTestId("email").textContent()).trim(), email)
      await shot("welcome-after-provider")
      await page.getByTestId("logout").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
    })

    await step("a provider account without an e-mail is asked for it, then signed up", async () => {
      // The provider remembers who signed in there: forget it, so its next account is used.
      await context.clearCookies()
      await page.goto(`${base}/ui/registration`)
      await nextAccount({ sub: `lone-${uniq}`, claims: { given_name: "Ada" } })
      await page.getByRole("button", { name: "Sign up with Local IdP" }).click()
      // Back on the same registration flow (its URL does not change), now asking for the address.
      const field = page.locator('input[name="traits.email"][aria-invalid="true"]')
      await field.waitFor()
      assert.equal(new URL(page.url()).pathname, "/ui/registration")
      assert.equal(await page.locator('[data-message-id="4000002"]').count(), 1)
      await shot("registration-completion")
      assert.equal(await page.locator('input[name="traits.name.first"]').inputValue(), "Ada")
      await field.fill(`lone-${uniq}@example.com`)
      await nextAccount({ sub: `lone-${uniq}`, claims: { given_name: "Ada" } })
      await page.getByRole("button", { name: "Continue" }).click()
      await page.waitForURL(`${base}/ui/welcome`)
      assert.equal((await page.getByTestId("email").textContent()).trim(), `lone-${uniq}@example.com`)
      await page.getByTestId("logout").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
    })

    await step("sign in with the provider, in Korean", async () => {
      await context.clearCookies()
      await page.goto(`${base}/ui/login?lang=ko`)
      await shot("login-ko")
      await nextAccount(account)
      await page.getByRole("button", { name: "Local IdP(으)로 로그인" }).click()
      await page.waitForURL(`${base}/ui/welcome`)
      assert.equal((await page.getByTestId("email").textContent()).trim(), email)
      await shot("welcome-ko")
    })
  } finally {
    await close()
  }
})
