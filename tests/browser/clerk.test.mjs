// Browser test: Clerk's React SDK, unchanged (`@clerk/react` 6.18.0 with the clerk-js 6.40.0 and
// `@clerk/ui` 1.34.0 bundles that Portcullis serves from the installed npm packages), against
// Portcullis's Frontend API, in Chromium. The app (clerk-spa/) is on another port with
// `proxyUrl="/__clerk"`, which serve-spa.mjs forwards to Portcullis. Nothing may leave
// 127.0.0.1: any other request is aborted and fails the test.
//
// So far it proves that clerk-js loads its bundles from Portcullis, reads the environment and
// the (empty) client, and draws <SignIn/> and <SignUp/> for an e-mail address and a password.
//
// Run with PORTCULLIS_PUBLIC_URL, PORTCULLIS_CLERK_PUBLISHABLE_KEY (`portcullis keys clerk
// publishable`) and SPA_PORT set; Portcullis needs clerk.frontend.enabled and
// clerk.frontend.assets_dir = tests/browser/node_modules (scripts/test does both).
import { test } from "node:test"
import assert from "node:assert/strict"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { openBrowser, publicUrl } from "./harness.mjs"
import { startSpaServer } from "./serve-spa.mjs"

const KEY = process.env.PORTCULLIS_CLERK_PUBLISHABLE_KEY
if (!KEY) throw new Error("PORTCULLIS_CLERK_PUBLISHABLE_KEY must be set")
const here = path.dirname(fileURLToPath(import.meta.url))

test("Clerk's React SDK loads from Portcullis and draws <SignIn/> and <SignUp/>", async (t) => {
  const PUBLIC_URL = publicUrl()
  const spa = await startSpaServer({
    port: 0,
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
  } finally {
    await close()
    await spa.close()
  }
})
