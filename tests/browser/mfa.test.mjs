// End-to-end: a person secures their account with an authenticator app and backup codes on the
// pages Portcullis serves (/ui/*), in Debian's Chromium with JavaScript turned OFF, so every
// step proves the second-factor forms work as plain HTML. `otpauth` (pinned in package.json) is
// the authenticator app: it reads the secret shown on the settings page, as a person would type
// it into their phone. Screenshots: `mfa-NN-*.png`.
//
// TOTP codes: the server accepts the current 30 s step ±1 and never the same step twice, so
// the login uses a later step than the enrolment (`freshCode` waits only if it must).
//
// Run: PORTCULLIS_PUBLIC_URL=http://127.0.0.1:4433 node --test mfa.test.mjs
// (scripts/test starts Portcullis with `serve --dev`, which enables TOTP and backup codes).
import { test } from "node:test"
import assert from "node:assert/strict"
import { setTimeout as sleep } from "node:timers/promises"
import { Secret, TOTP } from "otpauth"
import { openBrowser, publicUrl, uniqueSuffix } from "./harness.mjs"

const uniq = uniqueSuffix()
const EMAIL = `mfa-${uniq}@example.com`
const PASSWORD = `Pc-${uniq}-tangerine-violin`

// ------------------------------------------------------------------ the authenticator app

const PERIOD_MS = 30_000
const stepNow = () => Math.floor(Date.now() / PERIOD_MS)
const app = (base32) => new TOTP({ algorithm: "SHA1", digits: 6, period: 30, secret: Secret.fromBase32(base32) })
const codeAt = (totp, step) => totp.generate({ timestamp: step * PERIOD_MS })

/** A code for a step not used yet (later than `lastStep`), waiting for its window if needed. */
async function freshCode(totp, lastStep) {
  const step = Math.max(lastStep + 1, stepNow())
  const wait = (step - 1) * PERIOD_MS - Date.now()
  if (wait > 0) await sleep(wait + 20)
  return { step, code: codeAt(totp, step) }
}

/** Six digits that are none of the codes near now. */
function wrongCode(totp) {
  const near = new Set([-2, -1, 0, 1, 2].map((d) => codeAt(totp, stepNow() + d)))
  let n = 135791
  while (near.has(String(n).padStart(6, "0"))) n = (n + 7919) % 1_000_000
  return String(n).padStart(6, "0")
}

const HANGUL = /[\uac00-\ud7a3]/

test("hosted UI: an authenticator app and backup codes as the second factor", async (t) => {
  const base = publicUrl()
  const { page, shot, step, close } = await openBrowser(t, {
    prefix: "mfa",
    contextOptions: { javaScriptEnabled: false, locale: "en-US" },
    logUrl: base,
  })
  const path = () => new URL(page.url()).pathname
  const field = (name) => page.locator(`input[name="${name}"]:not([type="hidden"])`)
  // A message by its Kratos id, on the page (ui.messages) or at a field.
  const message = (id) => page.locator(`[data-message-id="${id}"]`)
  const submit = (name, value) => page.locator(`button[type="submit"][name="${name}"][value="${value}"]`)
  const totpCode = page.locator("#field-totp-code")
  const backupCode = page.locator("#field-lookup-secret")

  /** Signs out from the welcome page and signs in with the password: the second-factor page. */
  const passwordSignIn = async (signInButton = "Sign in with password") => {
    await field("identifier").fill(EMAIL)
    await field("password").fill(PASSWORD)
    await page.getByRole("button", { name: signInButton }).click()
    // Portcullis answers 303 to /self-service/login/browser?aal=aal2, which opens a new flow.
    await page.waitForURL((u) => u.pathname === "/ui/login" && u.searchParams.has("flow"))
    await message("1010004").waitFor()
    assert.equal(await field("password").count(), 0, "the second-factor page asks for no password")
  }
  const signOut = async () => {
    await page.goto(`${base}/ui/welcome`)
    await page.getByTestId("logout").click()
    await page.waitForURL((u) => u.pathname === "/ui/login")
    await field("identifier").waitFor()
  }
  const welcomed = async () => {
    await page.waitForURL(`${base}/ui/welcome`)
    assert.equal((await page.getByTestId("email").textContent()).trim(), EMAIL)
  }

  let totp = null
  let lastStep = 0
  let codes = []

  try {
    await step("sign up", async () => {
      await page.goto(`${base}/ui/registration`)
      await field("traits.email").fill(EMAIL)
      await field("traits.name.first").fill("Ada")
      await field("password").fill(PASSWORD)
      await page.getByRole("button", { name: "Sign up", exact: true }).click()
      await welcomed()
      await shot("welcome-after-registration")
    })

    await step("settings offer an authenticator app: a QR code and the secret, no otpauth URL", async () => {
      await page.getByRole("link", { name: "Account settings" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      const qr = page.locator("form.group-totp img#totp_qr")
      assert.match(await qr.getAttribute("src"), /^data:image\/png;base64,/)
      const secret = (await page.locator("#totp_secret_key code").textContent()).trim()
      assert.match(secret, /^[A-Z2-7]{26,}=*$/, "a base32 secret of at least 128 bits")
      assert.equal(await page.locator("form.group-totp #field-totp-code").count(), 1)
      assert.ok(!(await page.content()).includes("otpauth:"), "the otpauth URL is only inside the QR image")
      await shot("settings-totp-setup")
    })

    await step("a wrong code in settings is refused at the code field", async () => {
      const secret = (await page.locator("#totp_secret_key code").textContent()).trim()
      await totpCode.fill(wrongCode(app(secret)))
      await submit("method", "totp").click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("4000008").waitFor()
      assert.equal(await totpCode.getAttribute("aria-invalid"), "true")
      await shot("settings-totp-wrong-code")
    })

    await step("the right code links the app; settings then offer to unlink it", async () => {
      // Read again: the key to confirm is the one this page shows.
      const secret = (await page.locator("#totp_secret_key code").textContent()).trim()
      totp = app(secret)
      lastStep = stepNow()
      await totpCode.fill(codeAt(totp, lastStep))
      await submit("method", "totp").click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("1050001").waitFor()
      assert.ok(await submit("totp_unlink", "true").isVisible(), "an unlink button")
      assert.equal(await page.locator("#totp_qr").count(), 0, "no new key once linked")
      await shot("settings-totp-linked")
    })

    await step("sign out, sign in with the password: the second-factor page asks for the code", async () => {
      await signOut()
      await passwordSignIn()
      assert.ok(await totpCode.isVisible())
      assert.ok(await submit("method", "totp").isVisible())
      assert.equal(await backupCode.count(), 0, "no backup codes yet")
      await shot("login-second-factor")
    })

    await step("a wrong code is refused with message 4000008", async () => {
      await totpCode.fill(wrongCode(totp))
      await submit("method", "totp").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      await message("4000008").waitFor()
      assert.match(await message("4000008").textContent(), /authentication code is invalid/)
      assert.ok(await totpCode.isVisible(), "still asking for the code")
      await shot("login-wrong-code")
    })

    await step("a fresh code signs in", async () => {
      const next = await freshCode(totp, lastStep)
      lastStep = next.step
      await totpCode.fill(next.code)
      await submit("method", "totp").click()
      await welcomed()
      await shot("welcome-after-totp")
    })

    await step("backup codes: generate, read, confirm", async () => {
      await page.goto(`${base}/ui/settings`)
      await submit("lookup_secret_regenerate", "true").click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      const list = page.locator("#lookup_secret_codes code")
      await list.waitFor()
      codes = (await list.textContent()).trim().split(", ")
      assert.equal(codes.length, 12, `codes: ${codes}`)
      assert.equal(new Set(codes).size, 12)
      for (const c of codes) assert.match(c, /^[a-z0-9]{8}$/)
      await shot("settings-backup-codes-shown")
      await submit("lookup_secret_confirm", "true").click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await message("1050001").waitFor()
      assert.ok(await submit("lookup_secret_reveal", "true").isVisible())
      assert.ok(await submit("lookup_secret_disable", "true").isVisible())
      await shot("settings-backup-codes-saved")
    })

    await step("sign out, sign in with the password and a backup code", async () => {
      await signOut()
      await passwordSignIn()
      assert.ok(await totpCode.isVisible(), "the app still works")
      assert.ok(await backupCode.isVisible(), "and so do backup codes")
      await shot("login-second-factor-both")
      await backupCode.fill(codes[0])
      await submit("method", "lookup_secret").click()
      await welcomed()
      await shot("welcome-after-backup-code")
    })

    await step("in Korean: a used backup code is refused, an unused one signs in", async () => {
      await page.goto(`${base}/ui/welcome?lang=ko`)
      await page.getByRole("link", { name: "로그아웃" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      await passwordSignIn("비밀번호로 로그인")
      assert.equal(await page.locator("html").getAttribute("lang"), "ko")
      assert.match(await message("1010004").textContent(), HANGUL, "the challenge reads in Korean")
      assert.match(await page.locator('label[for="field-lookup-secret"]').textContent(), HANGUL)
      await backupCode.fill(codes[0])
      await submit("method", "lookup_secret").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      await message("4000012").waitFor()
      assert.match(await message("4000012").textContent(), HANGUL)
      await shot("login-ko-used-backup-code")
      await backupCode.fill(codes[1])
      await submit("method", "lookup_secret").click()
      await page.waitForURL(`${base}/ui/welcome`)
      await page.getByRole("heading", { name: "활성 세션" }).waitFor()
      await shot("welcome-ko-after-backup-code")
      assert.equal(path(), "/ui/welcome")
    })
  } finally {
    await close()
  }
})
