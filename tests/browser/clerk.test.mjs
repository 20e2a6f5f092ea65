// Browser test: the university dashboard, whole, once per SDK generation. Clerk's React SDK,
// unchanged (`@clerk/react` 6.18.0 with the clerk-js 6.40.0 and `@clerk/ui` 1.34.0 bundles, and
// `@clerk/clerk-react` 5.61.11 with clerk-js 5.128.0, which Portcullis serves from the installed
// npm packages), in Chromium, against Portcullis's Frontend API, and the dashboard's
// Django backend (dashboard/dashboard.py: svix-verified webhooks syncing a table, a DRF view
// behind clerk-backend-api's `authenticate_request`, the Backend API SDK setting roles).
//
// The app (clerk-spa/, built per generation) is on another port with `proxyUrl="/__clerk"`; serve-spa.mjs forwards
// `/__clerk/*` to Portcullis and `/api/*` to Django. Nothing may leave 127.0.0.1: any other
// request is aborted and fails the test.
//
// It proves: clerk-js loads its bundles from Portcullis and draws <SignUp/>; a sign-up with the
// mailed code makes the account (the Kratos admin API lists it) and Django's row (`user.created`,
// verified by svix); <UserButton/> shows; the Django API accepts getToken()'s token and serves the
// dashboard; the backend SDK sets `public_metadata.role`, the next `user.updated` carries it, and
// so does the next session token (the session claims are customised to include it); <UserProfile/>
// changes the name (Django's row follows), uploads a picture (served by Portcullis, shown by
// <UserButton/>, named by the Backend API's User) and changes the password; sign-out ends the session; <SignIn/>
// refuses the old password at its field and takes the new one; it signs in by a code mailed to
// the address instead; "Forgot password?" resets the password by a mailed code and signs in;
// <UserProfile/> sets up an authenticator app (the key shown, a wrong code refused) and shows
// the backup codes made with it; <SignIn/> then asks for the app's code after the password,
// refuses a wrong one and takes the right one (aal2), and takes a backup code instead, once.
//
// Run with PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL, PORTCULLIS_CLERK_PUBLISHABLE_KEY
// (`portcullis keys clerk publishable`), PORTCULLIS_CLERK_SECRET_KEY (one of clerk.secret_keys),
// DASHBOARD_PYTHON (the interop venv's python) and SPA_PORT set; Portcullis needs
// clerk.frontend.enabled, clerk.frontend.assets_dir = tests/browser/node_modules,
// clerk.session_claims = {"role": "{{user.public_metadata.role}}"} and the SPA's origin in
// serve.public.cors (scripts/test does all of it).
import { test } from "node:test"
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { createVerify } from "node:crypto"
import net from "node:net"
import path from "node:path"
import { fileURLToPath } from "node:url"
import zlib from "node:zlib"
import { Secret, TOTP } from "otpauth"
import { admin, adminUrl, mailedCode, messageIds, openBrowser, publicUrl } from "./harness.mjs"
import { startSpaServer } from "./serve-spa.mjs"

const KEY = process.env.PORTCULLIS_CLERK_PUBLISHABLE_KEY
const SECRET_KEY = process.env.PORTCULLIS_CLERK_SECRET_KEY
const PYTHON = process.env.DASHBOARD_PYTHON
if (!KEY || !SECRET_KEY || !PYTHON) {
  throw new Error("PORTCULLIS_CLERK_PUBLISHABLE_KEY, PORTCULLIS_CLERK_SECRET_KEY and DASHBOARD_PYTHON must be set")
}
const here = path.dirname(fileURLToPath(import.meta.url))

const STAFF_KEY = `staff-${Math.random().toString(36).slice(2)}`

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer().once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

/** Starts dashboard.py on `port`; resolves once it prints `ready`. */
function startDashboard(port, env) {
  const child = spawn(PYTHON, [path.join(here, "dashboard", "dashboard.py"), String(port)], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  })
  let output = ""
  const ready = new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      output += d
      if (output.includes("ready")) resolve()
    })
    child.stderr.on("data", (d) => (output += d))
    child.once("exit", (code) => reject(new Error(`dashboard.py exited ${code}:\n${output}`)))
  })
  return {
    ready,
    url: `http://127.0.0.1:${port}`,
    log: () => output,
    stop: () => child.kill(),
  }
}

/** Waits until `check` returns something truthy (it may throw meanwhile); returns that. */
async function eventually(what, check) {
  let last
  for (let i = 0; i < 100; i++) {
    try {
      const v = await check()
      if (v) return v
    } catch (e) {
      last = e
    }
    await new Promise((done) => setTimeout(done, 100))
  }
  assert.fail(`${what}${last ? `: ${last.message}` : ""}`)
}

/** A `width` × `height` PNG of one colour (RGB, no filter), built with zlib alone. */
function png(width, height) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data])
    const out = Buffer.alloc(body.length + 8)
    out.writeUInt32BE(data.length, 0)
    body.copy(out, 4)
    out.writeUInt32BE(zlib.crc32(body), body.length + 4)
    return out
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header.set([8, 2, 0, 0, 0], 8)
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, Buffer.from([40, 90, 200]))])
  const pixels = zlib.deflateSync(Buffer.concat(Array.from({ length: height }, () => row)))
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  return Buffer.concat([signature, chunk("IHDR", header), chunk("IDAT", pixels), chunk("IEND", Buffer.alloc(0))])
}

const claimsOf = (jwt) => jwt.split(".").slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url")))

/** The generations: the app's build and the bundles clerk-js loads from Portcullis. */
const GENERATIONS = [
  {
    sdk: "@clerk/react 6.18.0",
    dist: "dist",
    bundles: ["/__clerk/npm/@clerk/clerk-js@6/dist/clerk.browser.js", "/__clerk/npm/@clerk/ui@1/dist/ui.browser.js"],
  },
  { sdk: "@clerk/clerk-react 5.61.11", dist: "dist-v5", bundles: ["/__clerk/npm/@clerk/clerk-js@5/dist/clerk.browser.js"] },
]

for (const { sdk, dist, bundles } of GENERATIONS) {
  test(`the university dashboard on ${sdk}: sign-up by code, Django sync and API, roles, <UserProfile/>, sign-in`, async (t) => {
    const EMAIL = `clerk-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`
    const PASSWORD = `Pc-${Math.random().toString(36).slice(2)}-correct-horse`
    const NEW_PASSWORD = `${PASSWORD}-and-battery`
    const RESET_PASSWORD = `${PASSWORD}-reset-staple`
    const PUBLIC_URL = publicUrl()
    const spaUrl = `http://127.0.0.1:${process.env.SPA_PORT}`
    // Clerk's dashboard settings, as the deployment has them: the webhook endpoint and the PEM.
    const djangoPort = await freePort()
    const endpoint = await admin(
      "POST",
      "/admin/webhooks",
      { url: `http://127.0.0.1:${djangoPort}/webhooks/clerk/`, format: "clerk", description: "dashboard" },
      201,
    )
    const pem = await (await fetch(`${adminUrl()}/admin/clerk/jwt-key`)).text()
    const django = startDashboard(djangoPort, {
      CLERK_WEBHOOK_SIGNING_SECRET: endpoint.secret,
      CLERK_JWT_KEY: pem,
      CLERK_AUTHORIZED_PARTIES: spaUrl,
      CLERK_SECRET_KEY: SECRET_KEY,
      CLERK_API_URL: `${adminUrl()}/v1`,
      DASHBOARD_STAFF_KEY: STAFF_KEY,
    })
    t.after(async () => {
      django.stop()
      await admin("DELETE", `/admin/webhooks/${endpoint.id}`, undefined, 204)
    })
    await django.ready
    const students = async () => (await fetch(`${django.url}/webhooks/clerk/users/`)).json()

    const spa = await startSpaServer({
      port: Number(process.env.SPA_PORT),
      kratosUrl: PUBLIC_URL,
      clerkUrl: PUBLIC_URL,
      apiUrl: django.url,
      publishableKey: KEY,
      distDir: path.join(here, "clerk-spa", dist),
    })
    t.after(() => spa.close())
    assert.equal(spa.url, spaUrl)
    const { page, context, shot, step, close } = await openBrowser(t, { prefix: `clerk-${dist}`, logUrl: spa.url })
    t.after(close)
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
    const button = (name) => page.getByRole("button", { name, exact: true })
    /** <SignIn/> with the address given: its password field, drawn. */
    const signInAs = async (email) => {
      await page.goto(`${spa.url}/sign-in`)
      await page.locator("input#identifier-field").fill(email)
      await button("Continue").click()
      const password = page.locator("input#password-field")
      await password.waitFor({ state: "visible" })
      return password
    }
    let userId
    let firstSid
    await step("clerk-js comes from Portcullis, reads the environment and the client, and draws <SignUp/>", async () => {
      await page.goto(`${spa.url}/sign-up`)
      await page.getByTestId("clerk-status").filter({ hasText: "loaded" }).waitFor()
      await page.locator("input#emailAddress-field").waitFor({ state: "visible" })
      await page.locator("input#password-field").waitFor({ state: "visible" })
      assert.equal(await page.locator("input#phoneNumber-field").count(), 0)
      await shot("sign-up")
      for (const expected of [...bundles.map((b) => `200 GET ${b}`), "200 GET /__clerk/v1/environment", "200 GET /__clerk/v1/client"]) {
        assert.ok(fapi.includes(expected), `${expected} in\n${fapi.join("\n")}`)
      }
      // Every answer came from Portcullis, and the components asked nobody else.
      assert.deepEqual(fapi.filter((l) => !l.startsWith("200 ")), [])
      assert.deepEqual(outside, [])
    })

    await step("<SignUp/> mails a code; the code makes the account, signed in, in <UserButton/>", async () => {
      await page.locator("input#emailAddress-field").fill(EMAIL)
      await page.locator("input#password-field").fill(PASSWORD)
      await button("Continue").click()
      const code = await mailedCode(EMAIL, "registration_code_valid")
      const otp = page.locator("input[autocomplete='one-time-code']").first()
      await otp.waitFor({ state: "visible" })
      await shot("sign-up-code")
      await otp.pressSequentially(code)
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      await page.locator(".cl-userButtonTrigger").waitFor({ state: "visible" })
      await shot("home-signed-up")
      // The same identity every other face sees, with the address verified by the code.
      const [identity] = await admin("GET", `/admin/identities?credentials_identifier=${encodeURIComponent(EMAIL)}`)
      assert.equal(identity.traits.email, EMAIL)
      assert.equal(identity.verifiable_addresses[0].verified, true)
      userId = `user_${identity.id.replaceAll("-", "")}`
      assert.deepEqual(outside, [])
    })

    await step("Django's receiver gets user.created and session.created, verified by svix, and makes the row", async () => {
      const state = await eventually("the row in Django", async () => {
        const s = await students()
        return s.students[userId] && s.events.includes("session.created") ? s : null
      })
      assert.equal(state.students[userId].email, EMAIL)
      assert.equal(state.students[userId].role, null)
      assert.deepEqual([...state.events].sort(), ["session.created", "user.created"])
    })

    await step("the Django API accepts getToken()'s token and serves the dashboard", async () => {
      await page.getByTestId("load-dashboard").click()
      const answer = await page.getByTestId("dashboard").filter({ hasText: "200 " }).textContent()
      const body = JSON.parse(answer.slice(4))
      assert.equal(body.clerk_id, userId)
      assert.equal(body.student.email, EMAIL)
      assert.equal(body.token_role, null)
      assert.ok(body.courses.length > 0)
      const token = await page.getByTestId("token").textContent()
      const [header, claims] = claimsOf(token)
      assert.equal(header.alg, "RS256")
      // Signed by the key Clerk's backend SDKs are given (the PEM of /admin/clerk/jwt-key).
      const [h, p, sig] = token.split(".")
      assert.ok(createVerify("RSA-SHA256").update(`${h}.${p}`).verify(pem, Buffer.from(sig, "base64url")))
      assert.equal(claims.azp, spa.url)
      assert.equal(claims.sub, userId)
      assert.equal(claims.sid, body.session)
      assert.ok(claims.exp - claims.iat <= 60)
      firstSid = claims.sid
      // Without a token, or with a forged one, the API refuses.
      assert.equal((await fetch(`${spa.url}/api/dashboard/`)).status, 401)
      const forged = await fetch(`${spa.url}/api/dashboard/`, { headers: { Authorization: `Bearer ${h}.${p}.${sig.slice(0, -4)}AAAA` } })
      assert.equal(forged.status, 401)
      await shot("home-dashboard")
    })

    await step("the backend SDK sets public_metadata.role; user.updated carries it to Django, and so does the next token", async () => {
      // A student cannot make herself staff.
      const token = await page.getByTestId("token").textContent()
      const self = await fetch(`${django.url}/api/roles/`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ user_id: userId, role: "staff" }),
      })
      assert.equal(self.status, 403, await self.text())
      const set = await fetch(`${django.url}/api/roles/`, {
        method: "POST",
        headers: { "X-Staff-Key": STAFF_KEY, "content-type": "application/json" },
        body: JSON.stringify({ user_id: userId, role: "teaching-assistant" }),
      })
      const made = await set.text()
      assert.equal(set.status, 200, made)
      assert.deepEqual(JSON.parse(made).public_metadata, { role: "teaching-assistant" })
      await eventually("user.updated with the role in Django", async () => {
        const s = await students()
        return s.students[userId].role === "teaching-assistant" && s.events.includes("user.updated")
      })
      await page.getByTestId("load-dashboard").click()
      const answer = await page.getByTestId("dashboard").filter({ hasText: "teaching-assistant" }).textContent()
      const body = JSON.parse(answer.slice(4))
      assert.equal(body.token_role, "teaching-assistant")
      assert.equal(body.student.role, "teaching-assistant")
      const [, claims] = claimsOf(await page.getByTestId("token").textContent())
      assert.equal(claims.role, "teaching-assistant")
      assert.equal(claims.sid, firstSid)
    })

    await step("<UserProfile/> changes the name; Django's row follows", async () => {
      await page.goto(`${spa.url}/profile`)
      await button("Update profile").click()
      await page.locator("input#firstName-field").fill("Grace")
      await page.locator("input#lastName-field").fill("Hopper")
      await shot("profile-name")
      await button("Save").click()
      await page.getByText("Grace Hopper").first().waitFor()
      await eventually("the new name in Django", async () => (await students()).students[userId].first_name === "Grace")
      const [identity] = await admin("GET", `/admin/identities?credentials_identifier=${encodeURIComponent(EMAIL)}`)
      assert.deepEqual(identity.traits.name, { first: "Grace", last: "Hopper" })
      await shot("profile-named")
    })

    await step("<UserProfile/> uploads a picture: Portcullis serves it, <UserButton/> shows it, and so do the other faces", async () => {
      await page.goto(`${spa.url}/profile`)
      await button("Update profile").click()
      const uploaded = page.waitForResponse((r) => r.url().includes("/v1/me/profile_image"))
      const form = page.locator("form", { has: page.locator("input#firstName-field") })
      await form.waitFor({ state: "visible" })
      await form.locator("input[type='file']").first().setInputFiles({ name: "me.png", mimeType: "image/png", buffer: png(900, 300) })
      const answer = await uploaded
      assert.equal(answer.status(), 200)
      const url = (await answer.json()).response.public_url
      assert.ok(url.startsWith(`${PUBLIC_URL}/clerk/images/img_`), url)
      // The avatar is the served picture, encoded again and shrunk to fit 512 px.
      await page.goto(`${spa.url}/home`)
      const avatar = page.locator(".cl-userButtonTrigger img")
      await avatar.waitFor({ state: "visible" })
      assert.equal(await avatar.getAttribute("src"), url)
      await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await avatar.elementHandle())
      assert.deepEqual(await avatar.evaluate((el) => [el.naturalWidth, el.naturalHeight]), [512, 171])
      await shot("home-with-picture")
      const backend = await fetch(`${adminUrl()}/v1/users/${userId}`, { headers: { Authorization: `Bearer ${SECRET_KEY}` } })
      const user = await backend.json()
      assert.equal(user.image_url, url)
      assert.equal(user.has_image, true)
      assert.deepEqual(outside, [])
    })

    await step("<UserProfile/> refuses a wrong current password, then changes the password", async () => {
      await page.goto(`${spa.url}/profile`)
      await page.locator(".cl-navbarButton__security").click()
      await button("Update password").click()
      await page.locator("input#currentPassword-field").fill(`${PASSWORD}-wrong`)
      await page.locator("input#newPassword-field").fill(NEW_PASSWORD)
      await page.locator("input#confirmPassword-field").fill(NEW_PASSWORD)
      await button("Save").click()
      await page.locator("#error-currentPassword").waitFor()
      await shot("profile-password-wrong")
      await page.locator("input#currentPassword-field").fill(PASSWORD)
      await button("Save").click()
      await page.locator("input#currentPassword-field").waitFor({ state: "detached" })
      await shot("profile-password-changed")
      assert.deepEqual(outside, [])
    })

    await step("signing out in <UserButton/> ends the session", async () => {
      await page.goto(`${spa.url}/home`)
      await page.locator(".cl-userButtonTrigger").click()
      await page.locator(".cl-userButtonPopoverActionButton__signOut").click()
      await page.getByTestId("home-signed-out").waitFor()
      await shot("signed-out")
      const [identity] = await admin("GET", `/admin/identities?credentials_identifier=${encodeURIComponent(EMAIL)}`)
      const sessions = await admin("GET", `/admin/identities/${identity.id}/sessions`)
      const ended = sessions.find((s) => `sess_${s.id.replaceAll("-", "")}` === firstSid)
      assert.equal(ended?.active, false, JSON.stringify(sessions))
      assert.deepEqual(outside, [])
    })

    await step("<SignIn/> refuses the old password at its field, then signs in with the new one", async () => {
      const password = await signInAs(EMAIL)
      await password.fill(PASSWORD)
      await button("Continue").click()
      // At the password field (`meta.param_name`).
      await page.locator("#error-password").filter({ hasText: "Password is incorrect" }).waitFor()
      await shot("sign-in-old-password")
      await password.fill(NEW_PASSWORD)
      await button("Continue").click()
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      await page.getByTestId("load-dashboard").click()
      const answer = await page.getByTestId("dashboard").filter({ hasText: "200 " }).textContent()
      const body = JSON.parse(answer.slice(4))
      assert.equal(body.student.first_name, "Grace")
      assert.notEqual(body.session, firstSid)
      await shot("home-signed-in-again")
      assert.deepEqual(outside, [])
    })

    /** Signs out in <UserButton/>. */
    const signOut = async () => {
      await page.goto(`${spa.url}/home`)
      await page.locator(".cl-userButtonTrigger").click()
      await page.locator(".cl-userButtonPopoverActionButton__signOut").click()
      await page.getByTestId("home-signed-out").waitFor()
    }
    /** The newest active session of the account, as the admin API lists it. */
    const newestSession = async () => {
      const [identity] = await admin("GET", `/admin/identities?credentials_identifier=${encodeURIComponent(EMAIL)}`)
      const sessions = await admin("GET", `/admin/identities/${identity.id}/sessions?active=true`)
      return sessions.sort((a, b) => b.authenticated_at.localeCompare(a.authenticated_at))[0]
    }

    await step("<SignIn/> signs in by a code mailed to the address instead of the password", async () => {
      await signOut()
      const seen = await messageIds(EMAIL)
      await signInAs(EMAIL)
      await page.getByRole("link", { name: "Use another method" }).click()
      // As with "Forgot password?" below: the mail is written before the answer comes.
      const prepared = page.waitForResponse((r) => r.url().includes("/prepare_first_factor"))
      await page.getByRole("button", { name: `Email code to ${EMAIL}` }).click()
      assert.equal((await prepared).status(), 200)
      const code = await mailedCode(EMAIL, "login_code_valid", seen)
      const otp = page.locator("input[autocomplete='one-time-code']").first()
      await otp.waitFor({ state: "visible" })
      await shot("sign-in-email-code")
      await otp.pressSequentially(code)
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      const session = await newestSession()
      assert.deepEqual(session.authentication_methods.map((m) => m.method), ["code"])
      assert.deepEqual(outside, [])
    })

    await step("\"Forgot password?\" in <SignIn/> mails a code; the code and a new password sign in, and the old password is gone", async () => {
      await signOut()
      const seen = await messageIds(EMAIL)
      await signInAs(EMAIL)
      await page.getByText("Forgot password?").click()
      // The mail is written before the answer comes (that takes as long for an address without
      // an account): a person reads it later, the test must wait for the client cookie.
      const prepared = page.waitForResponse((r) => r.url().includes("/prepare_first_factor"))
      await button("Reset your password").click()
      assert.equal((await prepared).status(), 200)
      const code = await mailedCode(EMAIL, "recovery_code_valid", seen)
      const otp = page.locator("input[autocomplete='one-time-code']").first()
      await otp.waitFor({ state: "visible" })
      await shot("forgot-password-code")
      await otp.pressSequentially(code)
      const fresh = page.locator("input#password-field")
      await fresh.waitFor({ state: "visible" })
      await fresh.fill(RESET_PASSWORD)
      await page.locator("input#confirmPassword-field").fill(RESET_PASSWORD)
      await shot("reset-password")
      await button("Reset Password").click()
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      const session = await newestSession()
      assert.deepEqual(session.authentication_methods.map((m) => m.method), ["code_recovery"])
      // The Kratos face agrees: the old password is refused, the new one signs in.
      for (const [password, status] of [[NEW_PASSWORD, 400], [RESET_PASSWORD, 200]]) {
        const flow = await (await fetch(`${publicUrl()}/self-service/login/api`)).json()
        const r = await fetch(`${publicUrl()}/self-service/login?flow=${flow.id}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ method: "password", identifier: EMAIL, password }),
        })
        assert.equal(r.status, status, password === NEW_PASSWORD ? "the old password" : "the new password")
      }
      assert.deepEqual(outside, [])
    })

    let totp
    let linkStep
    let backupCodes
    const codeAt = (step) => totp.generate({ timestamp: step * 30_000 })
    await step("<UserProfile/> sets up an authenticator app: the key shown, a wrong code refused, the right one links it with backup codes", async () => {
      await page.goto(`${spa.url}/profile`)
      await page.locator(".cl-navbarButton__security").click()
      const started = page.waitForResponse((r) => r.url().includes("/v1/me/totp") && r.request().method() === "POST")
      await button("Add two-step verification").click()
      await page.getByText("Authenticator application", { exact: true }).click()
      const key = (await (await started).json()).response
      assert.equal(key.verified, false)
      assert.ok(key.uri.startsWith("otpauth://totp/"), key.uri)
      await page.getByText("Can’t scan QR code?").click()
      // The key and the URI the person copies into the app are the ones the server made.
      await page.locator(`input[value="${key.secret}"]`).waitFor()
      await page.locator(`input[value="${key.uri}"]`).waitFor()
      await shot("profile-totp-key")
      totp = new TOTP({ algorithm: "SHA1", digits: 6, period: 30, secret: Secret.fromBase32(key.secret) })
      await button("Continue").click()
      const otp = page.locator("input[autocomplete='one-time-code']").first()
      await otp.waitFor({ state: "visible" })
      const step = Math.floor(Date.now() / 30_000)
      const near = new Set([-2, -1, 0, 1, 2, 3].map((d) => codeAt(step + d)))
      let wrong = 246802
      while (near.has(String(wrong).padStart(6, "0"))) wrong += 1
      await otp.pressSequentially(String(wrong).padStart(6, "0"))
      await page.locator(".cl-otpCodeFieldErrorText").filter({ hasText: "Incorrect code" }).waitFor()
      await shot("profile-totp-wrong")
      // The previous step's code (within the allowed skew), so that sign-in below can use
      // the current one (a step once used is refused); typed with at least 10 s of the
      // current step left, so the server still counts it as the previous one.
      const into = Date.now() % 30_000
      if (into > 20_000) await new Promise((done) => setTimeout(done, 30_000 - into + 100))
      linkStep = Math.floor(Date.now() / 30_000) - 1
      const linked = page.waitForResponse((r) => r.url().includes("/v1/me/totp/attempt_verification"))
      await otp.pressSequentially(codeAt(linkStep))
      const answer = await linked
      assert.equal(answer.status(), 200)
      backupCodes = (await answer.json()).response.backup_codes
      assert.equal(backupCodes.length, 12)
      // Shown once, on the page, to be written down.
      for (const code of backupCodes) await page.getByText(code, { exact: true }).first().waitFor()
      await shot("profile-totp-backup-codes")
      await button("Finish").click()
      await page.getByText("Authenticator application").first().waitFor()
      await shot("profile-totp-linked")
      // The same credentials the Kratos face checks; the session was raised with the new
      // factor, so its owner is still signed in.
      const [identity] = await admin("GET", `/admin/identities?credentials_identifier=${encodeURIComponent(EMAIL)}`)
      const full = await admin("GET", `/admin/identities/${identity.id}?include_credential=totp`)
      assert.ok(full.credentials.totp && full.credentials.lookup_secret, JSON.stringify(Object.keys(full.credentials)))
      await page.goto(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      assert.deepEqual(outside, [])
    })

    await step("with the app linked, <SignIn/> asks for its code after the password, refuses a wrong one, takes the right one", async () => {
      await signOut()
      const password = await signInAs(EMAIL)
      await password.fill(RESET_PASSWORD)
      await button("Continue").click()
      const otp = page.locator("input[autocomplete='one-time-code']").first()
      await otp.waitFor({ state: "visible" })
      await shot("sign-in-totp")
      const now = Math.floor(Date.now() / 30_000)
      assert.ok(now > linkStep)
      const near = new Set([-1, 0, 1, 2].map((d) => codeAt(now + d)))
      let wrong = 135791
      while (near.has(String(wrong).padStart(6, "0"))) wrong += 1
      await otp.pressSequentially(String(wrong).padStart(6, "0"))
      await page.locator(".cl-otpCodeFieldErrorText").filter({ hasText: "Incorrect code" }).waitFor()
      await shot("sign-in-totp-wrong")
      assert.equal(page.url().startsWith(`${spa.url}/home`), false)
      await otp.pressSequentially(codeAt(now))
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      const session = await newestSession()
      assert.deepEqual(session.authentication_methods.map((m) => m.method), ["password", "totp"])
      assert.equal(session.authenticator_assurance_level, "aal2")
      await shot("home-signed-in-aal2")
      assert.deepEqual(outside, [])
    })

    await step("<SignIn/> takes one of the backup codes <UserProfile/> showed instead of the app's code, once", async () => {
      const signInWithBackupCode = async (code) => {
        const password = await signInAs(EMAIL)
        await password.fill(RESET_PASSWORD)
        await button("Continue").click()
        await page.locator("input[autocomplete='one-time-code']").first().waitFor({ state: "visible" })
        await page.getByRole("link", { name: "Use another method" }).click()
        await page.getByRole("button", { name: "Use a backup code" }).click()
        const field = page.locator("input#code-field")
        await field.waitFor({ state: "visible" })
        await field.fill(code)
        await button("Continue").click()
      }
      await signOut()
      await signInWithBackupCode(backupCodes[0])
      await page.waitForURL(`${spa.url}/home`)
      await page.getByTestId("home-email").filter({ hasText: EMAIL }).waitFor()
      const session = await newestSession()
      assert.deepEqual(session.authentication_methods.map((m) => m.method), ["password", "lookup_secret"])
      assert.equal(session.authenticator_assurance_level, "aal2")
      // A backup code is good once.
      await signOut()
      await signInWithBackupCode(backupCodes[0])
      await page.locator("#error-code").waitFor()
      await shot("sign-in-backup-code-used")
      assert.equal(page.url().startsWith(`${spa.url}/home`), false)
      assert.deepEqual(outside, [])
    })
  })
}
