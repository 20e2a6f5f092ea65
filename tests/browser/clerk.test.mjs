// Browser test: Clerk's React SDK, unchanged (`@clerk/react` 6.18.0 with the clerk-js 6.40.0 and
// `@clerk/ui` 1.34.0 bundles that Portcullis serves from the installed npm packages), against
// Portcullis's Frontend API, in Chromium. The app (clerk-spa/) is on another port with
// `proxyUrl="/__clerk"`, which serve-spa.mjs forwards to Portcullis. Nothing may leave
// 127.0.0.1: any other request is aborted and fails the test.
//
// It proves that clerk-js loads its bundles from Portcullis, reads the environment and the
// client, draws <SignIn/> and <SignUp/> for an e-mail address and a password, signs in (a wrong
// password refused at its field first), shows the user in <UserButton/>, gets a session token
// for the app's origin with getToken(), and signs out.
//
// Run with PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL, PORTCULLIS_CLERK_PUBLISHABLE_KEY
// (`portcullis keys clerk publishable`) and SPA_PORT set; Portcullis needs
// clerk.frontend.enabled, clerk.frontend.assets_dir = tests/browser/node_modules and the SPA's
// origin in serve.public.cors (scripts/test does all of it).
import { test } from "node:test"
import assert from "node:assert/strict"
import { createVerify } from "node:crypto"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { openBrowser, publicUrl } from "./harness.mjs"
import { startSpaServer } from "./serve-spa.mjs"

const KEY = process.env.PORTCULLIS_CLERK_PUBLISHABLE_KEY
if (!KEY) throw new Error("PORTCULLIS_CLERK_PUBLISHABLE_KEY must be set")
const here = path.dirname(fileURLToPath(import.meta.url))

const EMAIL = `clerk-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`
const PASSWORD = `Pc-${Math.random().toString(36).slice(2)}-correct-horse`

test("Clerk's React SDK against Portcullis: <SignIn/>, <SignUp/>, the dashboard, getToken() and sign-out", async (t) => {
  const PUBLIC_URL = publicUrl()
  // An account made through the Kratos face: the same identities behind every face.
  const flow = await (await fetch(`${PUBLIC_URL}/self-service/registration/api`)).json()
  const made = await fetch(`${PUBLIC_URL}/self-service/registration?flow=${flow.id}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "password", password: PASSWORD, traits: { email: EMAIL } }),
  })
  assert.equal(made.status, 200)
  const identityId = (await made.json()).identity.id
  let clerkSid
  // On SPA_PORT, the origin Portcullis lists in serve.public.cors: the Frontend API takes
  // POSTs from its own origin and listed ones only.
  const spa = await startSpaServer({
    port: Number(process.env.SPA_PORT || 0),
    kratosUrl: PUBLIC_URL,
    clerkUrl: PUBLIC_URL,
    publishableKey: KEY,
    distDir: path.join(here, "clerk-spa", "dist"),
  })
  const { page, context, shot, step, close } = await openBrowser(t, { prefix: "clerk", logUrl: spa.url })
  const outside = []
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname
    if (host === "127.0.0.1") return route.continue()
    outside.push(route.request().url())
    return route.abort()
  })
  const fapi = []
  page.on("response", (r) => {
    const u = new URL(r.url())
    if (u.pathname.startsWith("/__clerk/")) fapi.push(`${r.status()} ${r.request().method()} ${u.pathname}`)
  })
  try {
    await step("clerk-js comes from Portcullis, reads the environment and the client, and draws <SignIn/>", async () => {
      await page.goto(`${spa.url}/sign-in`)
      await page.getByTestId("clerk-status").filter({ hasText: "loaded" }).waitFor()
      const identifier = page.locator("input#identifier-field")
      await identifier.waitFor({ state: "visible" })
      await shot("sign-in")
      for (const expected of [
        "200 GET /__clerk/npm/@clerk/clerk-js@6/dist/clerk.browser.js",
        "200 GET /__clerk/npm/@clerk/ui@1/dist/ui.browser.js",
        "200 GET /__clerk/v1/environment",
        "200 GET /__clerk/v1/client",
      ]) {
        assert.ok(fapi.includes(expected), `${expected} in\n${fapi.join("\n")}`)
      }
      // Every answer came from Portcullis, and the components asked nobody else.
      assert.deepEqual(fapi.filter((l) => !l.startsWith("200 ")), [])
      assert.deepEqual(outside, [])
    })

    await step("<SignUp/> asks for the e-mail address and the password the environment requires", async () => {
      await page.goto(`${spa.url}/sign-up`)
      await page.locator("input#emailAddress-field").waitFor({ state: "visible" })
      await page.locator("input#password-field").waitFor({ state: "visible" })
      assert.equal(await page.locator("input#phoneNumber-field").count(), 0)
      await shot("sign-up")
      assert.deepEqual(outside, [])
    })

    await step("<SignIn/> refuses a wrong password at the field, then signs in; the dashboard shows the user", async () => {
      await page.goto(`${spa.url}/sign-in`)
      await page.locator("input#identifier-field").fill(EMAIL)
      await page.getByRole("button", { name: "Continue", exact: true }).click()
      const password = page.locator("input#password-field")
      await password.waitFor({ state: "visible" })
      await password.fill(`${PASSWORD}-wrong`)
      await page.getByRole("button", { name: "Continue", exact: true }).click()
      // At the password field (`meta.param_name`).
      await page.locator("#error-password").filter({ hasText: "Password is incorrect" }).waitFor()
      await shot("sign-in-wrong-password")
      await password.fill(PASSWORD)
      await page.getByRole("button", { name: "Continue", exact: true }).click()
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      await page.locator(".cl-userButtonTrigger").waitFor({ state: "visible" })
      await shot("home-signed-in")
      assert.deepEqual(outside, [])
    })

    await step("getToken() gives a token for this origin, signed by the instance's key", async () => {
      await page.getByTestId("get-token").click()
      const token = await page.getByTestId("token").filter({ hasText: "." }).textContent()
      const [header, claims] = token.split(".").slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url")))
      assert.equal(header.alg, "RS256")
      // Signed by the key Clerk's backend SDKs are given (the PEM of /admin/clerk/jwt-key).
      const pem = await (await fetch(`${process.env.PORTCULLIS_ADMIN_URL}/admin/clerk/jwt-key`)).text()
      const [h, p, sig] = token.split(".")
      assert.ok(createVerify("RSA-SHA256").update(`${h}.${p}`).verify(pem, Buffer.from(sig, "base64url")))
      assert.equal(claims.azp, spa.url)
      assert.equal(claims.sub, `user_${identityId.replaceAll("-", "")}`)
      assert.ok(claims.exp - claims.iat <= 60)
      // The session is the one every other face sees.
      const sessions = await (await fetch(`${process.env.PORTCULLIS_ADMIN_URL}/admin/identities/${identityId}/sessions`)).json()
      assert.ok(sessions.some((s) => `sess_${s.id.replaceAll("-", "")}` === claims.sid && s.active), JSON.stringify(sessions))
      clerkSid = claims.sid
    })

    await step("signing out in <UserButton/> ends the session", async () => {
      await page.locator(".cl-userButtonTrigger").click()
      await page.locator(".cl-userButtonPopoverActionButton__signOut").click()
      await page.getByTestId("home-signed-out").waitFor()
      await shot("signed-out")
      const sessions = await (await fetch(`${process.env.PORTCULLIS_ADMIN_URL}/admin/identities/${identityId}/sessions`)).json()
      const ended = sessions.find((s) => `sess_${s.id.replaceAll("-", "")}` === clerkSid)
      assert.equal(ended?.active, false, JSON.stringify(sessions))
      assert.deepEqual(outside, [])
    })
  } finally {
    await close()
    await spa.close()
  }
})
